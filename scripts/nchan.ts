/**
 * nchan, the peer ipush is measured against: Debian's `nginx-light` with
 * `libnginx-mod-nchan` (installed with apt-get when absent), on a free loopback port, with
 * `bench/peers/nchan-nginx.conf` (the configuration of `../shared/peers/`: one worker unless
 * `workers` says more, 19,000 connections each, no message buffer) in a temp dir.
 *
 * ```ts
 * const nchan = await startNchan();
 * // GET  `${nchan.url}/sub/<id>` with `TE: chunked`: an http-chunked subscriber
 * // POST `${nchan.url}/pub/<id>`: publishes one message to it
 * await nchan.stop();
 * ```
 *
 * nginx does not outlive the process that started it (`spawnWatched`, ending it with SIGTERM
 * so that the master stops its worker). CLI, in the foreground until Ctrl-C:
 * `deno run -A scripts/nchan.ts [--port=N] [--workers=N]` (more than 19,000 subscribers need
 * more workers), until SIGINT or SIGTERM.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { aptInstall, freePorts, spawnWatched, tail, whenReady } from "./local_server.ts";

/** A running nchan. */
export interface NchanHandle {
  port: number;
  /** `http://127.0.0.1:PORT` */
  url: string;
  /** The nginx master's pid, whose worker is the process to measure (RSS, CPU). */
  pid(): Promise<number>;
  /** The pid of the nginx worker (the first, with `workers`), which holds the subscribers. */
  workerPid(): Promise<number>;
  /** Stops nginx, waits for it and deletes its directory. Idempotent. */
  stop(): Promise<void>;
}

const HOST = "127.0.0.1";
const MODULE = "/usr/lib/nginx/modules/ngx_nchan_module.so";
const CONFIG = new URL("../bench/peers/nchan-nginx.conf", import.meta.url);
const START_TIMEOUT_MS = 10_000;

/** Starts nginx with nchan; resolves once a publisher's status request answers. */
export async function startNchan(
  options: { port?: number; workers?: number } = {},
): Promise<NchanHandle> {
  await ensureNchan();
  const port = options.port ?? freePorts(1)[0];
  const dir = await Deno.makeTempDir({ prefix: "ipush-nchan-" });
  const config = (await Deno.readTextFile(CONFIG))
    .replaceAll("NCHAN_DIR", dir)
    .replaceAll("NCHAN_PORT", String(port))
    .replaceAll("NCHAN_WORKERS", String(options.workers ?? 1));
  await Deno.writeTextFile(`${dir}/nginx.conf`, config);
  const server = spawnWatched(
    ["nginx", "-c", `${dir}/nginx.conf`, "-p", dir, "-g", "daemon off;"],
    { logFile: `${dir}/stderr.log`, exitSignal: "SIGTERM" },
  );
  const stop = await whenReady(server, dir, () => waitForNchan(port, dir, server.status));
  const pid = async () => Number((await Deno.readTextFile(`${dir}/nginx.pid`)).trim());
  return {
    port,
    url: `http://${HOST}:${port}`,
    pid,
    workerPid: async () => workerOf(await pid()),
    stop,
  };
}

/** The first worker of the nginx master `master` (the only one, unless `workers` said more). */
async function workerOf(master: number): Promise<number> {
  const children = await Deno.readTextFile(`/proc/${master}/task/${master}/children`);
  const [worker] = children.trim().split(/\s+/).map(Number);
  if (!(worker > 0)) throw new Error(`nginx master ${master} has no worker`);
  return worker;
}

async function ensureNchan(): Promise<void> {
  try {
    await Deno.stat(MODULE);
  } catch {
    await aptInstall("nginx-light", "libnginx-mod-nchan");
  }
}

/** Polls `GET /pub/probe` (a channel's status) until nchan answers it. */
async function waitForNchan(
  port: number,
  dir: string,
  exited: Promise<Deno.CommandStatus>,
): Promise<void> {
  let status: Deno.CommandStatus | undefined;
  exited.then((s) => status = s);
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (status) throw new Error(`nginx exited with code ${status.code}; ${await logTail(dir)}`);
    try {
      const response = await fetch(`http://${HOST}:${port}/pub/probe`);
      await response.body?.cancel();
      // 404: no such channel yet, which only nchan's publisher location answers so.
      if (response.status === 404 || response.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(
    `nchan did not answer within ${START_TIMEOUT_MS / 1000} s; ${await logTail(dir)}`,
  );
}

async function logTail(dir: string): Promise<string> {
  const logs = await Promise.all(
    ["stderr.log", "error.log"].map((name) =>
      Deno.readTextFile(`${dir}/${name}`).then((text) => `${name}:\n${tail(text, 20)}`, () => "")
    ),
  );
  return logs.filter(Boolean).join("\n") || `no log in ${dir}`;
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: { port: { type: "string" }, workers: { type: "string" } },
  });
  const nchan = await startNchan({
    port: values.port === undefined ? undefined : Number(values.port),
    workers: values.workers === undefined ? undefined : Number(values.workers),
  });
  console.log(`nchan on ${nchan.url} (GET /sub/<id> with TE: chunked, POST /pub/<id>)`);
  // SIGTERM too: a background job of a non-interactive shell ignores SIGINT.
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => nchan.stop().then(() => Deno.exit(0)));
  }
}
