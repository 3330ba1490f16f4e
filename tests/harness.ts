/**
 * Starts the real daemon as a subprocess from `conf/default.conf`, on ephemeral ports with
 * its own pid file and data directory, for end-to-end tests.
 *
 * @module
 */

import { freePorts } from "../scripts/local_server.ts";
import { DAEMON_ENV, DAEMON_V8_FLAGS } from "../scripts/runtime.ts";

const ROOT = new URL("../", import.meta.url);
const READY = /clients on [^:]+:(\d+), admin on [^:]+:(\d+), shards on ports ([\d,]+)/;

/** A running daemon. */
export interface Daemon {
  pid: number;
  clientPort: number;
  adminPort: number;
  shardPorts: number[];
  dir: string;
  pidFile: string;
  /** Everything the daemon wrote to stderr so far. */
  log(): string;
  /** A request to the admin API (with the admin token, if any); answers status and parsed JSON. */
  admin(
    path: string,
    init?: RequestInit,
  ): Promise<{ status: number; body: Record<string, unknown> }>;
  /** Sends a signal and waits for the exit code. */
  stop(signal?: Deno.Signal): Promise<number>;
  /** Resolves with the exit code when the process ends. */
  exited: Promise<number>;
}

/** Options beyond the flags. */
export interface DaemonOptions {
  /** Reuse a directory (restart over the same data and pid file). */
  dir?: string;
  /** Run under this descriptor limit (soft and hard), through `prlimit`. */
  nofile?: number;
  /** Start with `--admin_token=` this; `admin()` then sends it. */
  adminToken?: string;
  /** Run the daemon of another source tree (a benchmark's baseline); this one by default. */
  root?: URL;
  /** Its `--workers` (2 by default). */
  workers?: number;
}

/** Starts the daemon with `conf/default.conf` plus `flags`; resolves once it serves. */
export async function startDaemon(
  flags: string[] = [],
  options: DaemonOptions = {},
): Promise<Daemon> {
  const dir = options.dir ?? await Deno.makeTempDir({ prefix: "ipush-test-" });
  const pidFile = `${dir}/ipush_server.pid`;
  const deno = [Deno.execPath()];
  if (options.nofile) deno.unshift("prlimit", `--nofile=${options.nofile}:${options.nofile}`);
  const child = new Deno.Command(deno[0], {
    args: [
      ...deno.slice(1),
      "run",
      // As `deno task start` runs it (deno.json): memory is returned as it is in production.
      DAEMON_V8_FLAGS,
      "--allow-all",
      "main.ts",
      "--flagfile=conf/default.conf",
      "--host=127.0.0.1",
      "--client_port=0",
      "--admin_port=0",
      "--shard_port_base=0",
      `--workers=${options.workers ?? 2}`,
      `--pid_file=${pidFile}`,
      `--data_dir=${dir}/data`,
      "--log_level=info",
      ...(options.adminToken === undefined ? [] : [`--admin_token=${options.adminToken}`]),
      ...flags,
    ],
    cwd: options.root ?? ROOT,
    env: DAEMON_ENV,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let text = "";
  const ready = Promise.withResolvers<RegExpExecArray>();
  const exited = (async () => {
    const decoder = new TextDecoder();
    for await (const bytes of child.stderr) {
      text += decoder.decode(bytes, { stream: true });
      const match = READY.exec(text);
      if (match) ready.resolve(match);
    }
    const status = await child.status;
    ready.reject(new Error(`daemon exited (${status.code}) before serving:\n${text}`));
    return status.code;
  })();
  const timer = setTimeout(() => ready.reject(new Error(`daemon did not start:\n${text}`)), 20_000);
  let match: RegExpExecArray;
  try {
    match = await ready.promise;
  } catch (error) {
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
    await exited;
    throw error;
  } finally {
    clearTimeout(timer);
  }
  const adminPort = Number(match[2]);
  return {
    pid: child.pid,
    clientPort: Number(match[1]),
    adminPort,
    shardPorts: match[3].split(",").map(Number),
    dir,
    pidFile,
    log: () => text,
    async admin(path, init) {
      const headers = new Headers(init?.headers);
      if (options.adminToken !== undefined && !headers.has("authorization")) {
        headers.set("authorization", `Bearer ${options.adminToken}`);
      }
      const response = await fetch(`http://127.0.0.1:${adminPort}${path}`, { ...init, headers });
      return { status: response.status, body: await response.json() };
    },
    async stop(signal = "SIGTERM") {
      try {
        child.kill(signal);
      } catch { /* already gone */ }
      return await exited;
    },
    exited,
  };
}

/** Descriptors the process `pid` holds open. */
export function openDescriptors(pid: number): number {
  return [...Deno.readDirSync(`/proc/${pid}/fd`)].length;
}

/** Polls `condition` every 100 ms until it holds; false if `ms` pass first. */
export async function eventually(condition: () => boolean | Promise<boolean>, ms: number) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await condition()) return true;
    if (Date.now() > deadline) return false;
    await delay(100);
  }
}

/** A promise that resolves after `ms`. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Uids with `prefix` that live on `count` different shards, as `/shard` says. */
export async function uidsOnDistinctShards(
  daemon: Daemon,
  prefix: string,
  count: number,
): Promise<string[]> {
  const byShard = new Map<unknown, string>();
  for (let i = 0; byShard.size < count; i++) {
    if (i > 1000) throw new Error(`no ${count} distinct shards for ${prefix}*`);
    const uid = `${prefix}${i}`;
    const shard = (await daemon.admin(`/shard?uid=${uid}`)).body.result;
    if (!byShard.has(shard)) byShard.set(shard, uid);
  }
  return [...byShard.values()];
}

/** POSTs a message to `/pub`; `target` is a query such as `to=u1` or `channel=c1`. */
export function publish(
  daemon: Daemon,
  target: string,
  body: string,
  extra = "",
): Promise<{ status: number; body: Record<string, unknown> }> {
  return daemon.admin(`/pub?${target}&from=op${extra}`, { method: "POST", body });
}

/**
 * A static cluster on loopback: a daemon a node of `ids` (`options.workers` each, 2 by default),
 * every one told of all (`--cluster_nodes`), started in order with `flags(id, index)` too. If
 * one cannot start, those started already are stopped.
 */
export async function startStaticCluster(
  ids: readonly string[],
  flags: (id: string, index: number) => string[],
  options: DaemonOptions = {},
): Promise<Daemon[]> {
  return await whilePortTaken(async () => {
    const bases = ids.map(() => freePortRun(4));
    const clusterNodes = ids.map((id, i) =>
      `${id}=127.0.0.1:${bases[i]}:${bases[i] + 1}:${bases[i] + 2}:${options.workers ?? 2}`
    ).join(",");
    const nodes: Daemon[] = [];
    try {
      for (const [i, id] of ids.entries()) {
        nodes.push(
          await startDaemon([
            `--node_id=${id}`,
            `--cluster_nodes=${clusterNodes}`,
            ...flags(id, i),
          ], options),
        );
      }
      return nodes;
    } catch (error) {
      for (const node of nodes) await node.stop("SIGKILL");
      throw error;
    }
  });
}

/** `count` uids of `prefix` + a number that `owner` owns, as `asked`'s `/shard` says. */
export async function uidsOwnedBy(
  asked: Daemon,
  owner: Daemon,
  prefix: string,
  count = 1,
): Promise<string[]> {
  const found: string[] = [];
  for (let i = 0; found.length < count; i++) {
    if (i > 10_000) throw new Error(`no ${count} uids of ${prefix}* on that node`);
    const shard = String((await asked.admin(`/shard?uid=${prefix}${i}`)).body.result);
    if (owner.shardPorts.some((port) => shard.endsWith(`:${port}`))) found.push(`${prefix}${i}`);
  }
  return found;
}

/** A run of `length` consecutive free loopback ports (for a node's shard ports). */
export function freePortRun(length: number): number {
  return freePorts(length)[0];
}

/**
 * `start()` again, up to 5 times in all, while it fails because a port it was told was taken
 * before the daemon bound it (EADDRINUSE): a port checked free is only free until then, and a
 * machine whose ephemeral range starts low lets any outgoing connection take it (CI saw it).
 * `start` draws its ports afresh on each call and leaves nothing running when it throws.
 */
export async function whilePortTaken<T>(start: () => Promise<T>): Promise<T> {
  for (let attempt = 1;; attempt++) {
    try {
      return await start();
    } catch (error) {
      if (attempt === 5 || !/EADDRINUSE/.test(String(error))) throw error;
    }
  }
}
