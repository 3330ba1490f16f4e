/**
 * A real Redis on loopback, for tests and local runs: Debian's `redis-server` (installed with
 * apt-get when it is not on PATH), on a free port, without persistence, in a temp dir.
 *
 * ```ts
 * const redis = await startRedis();
 * // ... connect to redis.url ("redis://127.0.0.1:PORT")
 * await redis.stop();
 * ```
 *
 * The server does not outlive the process that started it (`spawnWatched`).
 *
 * CLI, for a server that outlives the command:
 *
 * ```sh
 * deno run -A scripts/redis.ts start    # prints the URL; idempotent
 * deno run -A scripts/redis.ts status   # exit code 0 when it answers PING
 * deno run -A scripts/redis.ts stop
 * ```
 *
 * @module
 */

import {
  aptInstall,
  freePorts,
  onPath,
  readState,
  runCli,
  spawnWatched,
  tail,
  whenReady,
} from "./local_server.ts";

/** A running Redis server. */
export interface RedisHandle {
  host: string;
  port: number;
  /** `redis://127.0.0.1:PORT`, as the `redis` package's `createClient({url})` takes it. */
  url: string;
  /** Kills the server, waits for it and deletes its directory. Idempotent. */
  stop(): Promise<void>;
}

const HOST = "127.0.0.1";
const START_TIMEOUT_MS = 30_000;
const CLI_STATE = decodeURIComponent(
  new URL("../.cache/redis/cli-server.json", import.meta.url).pathname,
);

/**
 * Starts a fresh server; resolves once it answers PING. `port` brings one back where a stopped
 * one was (for clients that reconnect to the same address); a free port by default.
 */
export async function startRedis(options: { port?: number } = {}): Promise<RedisHandle> {
  await ensureRedisServer();
  const port = options.port ?? freePorts(1)[0];
  const dir = await Deno.makeTempDir({ prefix: "ipush-redis-" });
  const server = spawnWatched(["redis-server", ...serverArgs(dir, port)]);
  const stop = await whenReady(server, dir, () => waitForPing(port, dir, server.status));
  return { host: HOST, port, url: `redis://${HOST}:${port}`, stop };
}

/** Only loopback, no RDB snapshots and no AOF: a cache-like server that leaves nothing. */
function serverArgs(dir: string, port: number): string[] {
  return [
    "--bind",
    HOST,
    "--port",
    String(port),
    "--dir",
    dir,
    "--save",
    "",
    "--appendonly",
    "no",
    "--logfile",
    `${dir}/redis.log`,
  ];
}

/** Installs Debian's `redis-server` unless it is on PATH. */
async function ensureRedisServer(): Promise<void> {
  if (!await onPath("redis-server")) await aptInstall("redis-server");
}

/** Polls until PING answers; fails early if `exited` (the server's own exit) resolves first. */
async function waitForPing(
  port: number,
  dir: string,
  exited?: Promise<Deno.CommandStatus>,
): Promise<void> {
  let status: Deno.CommandStatus | undefined;
  exited?.then((s) => status = s);
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (status) {
      throw new Error(`redis-server exited with code ${status.code}; ${await logTail(dir)}`);
    }
    if (await ping(port)) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(
    `redis-server did not answer PING within ${START_TIMEOUT_MS / 1000} s; ${await logTail(dir)}`,
  );
}

/** Whether a server on `port` answers an inline PING with +PONG. */
async function ping(port: number): Promise<boolean> {
  let conn: Deno.TcpConn | undefined;
  try {
    conn = await Deno.connect({ hostname: HOST, port });
    await conn.write(new TextEncoder().encode("PING\r\n"));
    const buffer = new Uint8Array(16);
    const read = await conn.read(buffer);
    return read !== null && new TextDecoder().decode(buffer.subarray(0, read)).startsWith("+PONG");
  } catch {
    return false;
  } finally {
    conn?.close();
  }
}

async function logTail(dir: string): Promise<string> {
  try {
    const log = await Deno.readTextFile(`${dir}/redis.log`);
    return `last lines of ${dir}/redis.log:\n${tail(log, 20)}`;
  } catch {
    return `no log in ${dir}`;
  }
}

// ---------------------------------------------------------------------------------------------
// CLI: a server that outlives the command (redis-server daemonizes itself), tracked in
// .cache/redis/cli-server.json.

interface CliState {
  port: number;
  dir: string;
}

async function cliStart(): Promise<void> {
  const state = await cliState();
  if (state && await ping(state.port)) {
    console.log(`redis://${HOST}:${state.port}`);
    return;
  }
  await ensureRedisServer();
  const [port] = freePorts(1);
  const dir = await Deno.makeTempDir({ prefix: "ipush-redis-" });
  const daemon = await new Deno.Command("redis-server", {
    args: [...serverArgs(dir, port), "--daemonize", "yes", "--pidfile", `${dir}/redis.pid`],
  }).output();
  if (!daemon.success) throw new Error(`redis-server failed to start; ${await logTail(dir)}`);
  await waitForPing(port, dir);
  await Deno.mkdir(CLI_STATE.slice(0, CLI_STATE.lastIndexOf("/")), { recursive: true });
  await Deno.writeTextFile(CLI_STATE, JSON.stringify({ port, dir } satisfies CliState));
  console.log(`redis://${HOST}:${port}`);
}

async function cliStop(): Promise<void> {
  const state = await cliState();
  if (!state) return;
  const pid = (await Deno.readTextFile(`${state.dir}/redis.pid`).catch(() => "")).trim();
  // Only our server: redis-server names its address in its command line.
  const ours = async () =>
    pid !== "" &&
    (await Deno.readTextFile(`/proc/${pid}/cmdline`).catch(() => "")).includes(`:${state.port}`);
  if (await ours()) {
    Deno.kill(Number(pid), "SIGKILL");
    while (await ours()) await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await Deno.remove(state.dir, { recursive: true }).catch(() => {});
  await Deno.remove(CLI_STATE);
}

function cliState(): Promise<CliState | undefined> {
  return readState<CliState>(CLI_STATE);
}

if (import.meta.main) {
  await runCli("scripts/redis.ts", {
    start: cliStart,
    stop: cliStop,
    async status() {
      const state = await cliState();
      return state && await ping(state.port) ? `redis://${HOST}:${state.port}` : null;
    },
  });
}
