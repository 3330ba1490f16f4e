/**
 * ipush: the main thread is the front door (client port: handshake, then 303 to the owning
 * shard), the admin API, and the supervisor of the shard workers, the pid file and the
 * signals.
 *
 * Run: `deno task start --flagfile=conf/default.conf`. Stop: `kill $(cat ipush_server.pid)`.
 *
 * @module
 */

import { adminHandler } from "./src/admin/api.ts";
import { createAuthenticator } from "./src/auth/auth.ts";
import { type Config, FlagError, helpText, parseFlags } from "./src/config/flags.ts";
import { createLog, type Log } from "./src/log.ts";
import { ShardPool } from "./src/routing/pool.ts";
import { createConnectServer, listen } from "./src/session/connect_server.ts";
import { StatsBook } from "./src/stats/report.ts";

const NODE_ID = "node1";

async function main(args: string[]): Promise<number> {
  let config: Config;
  try {
    const parsed = parseFlags(args);
    if (parsed.help) {
      console.log(helpText());
      return 0;
    }
    config = parsed.config;
  } catch (error) {
    if (!(error instanceof FlagError)) throw error;
    console.error(`ipush: ${error.message} (see --help)`);
    return 2;
  }
  const log = createLog("main", config.log_level);
  try {
    claimPidFile(config.pid_file);
    createAuthenticator(config); // fail now, not in every worker, on a bad users file
  } catch (error) {
    log("error", (error as Error).message);
    return 1;
  }
  try {
    return await serve(config, log);
  } finally {
    removePidFile(config.pid_file);
  }
}

async function serve(config: Config, log: Log): Promise<number> {
  // Listen for signals first: a stop that arrives during start-up still drains.
  const { promise: stop, resolve } = Promise.withResolvers<string>();
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    Deno.addSignalListener(signal, () => resolve(signal));
  }
  const stats = new StatsBook();
  const pool = new ShardPool(config, NODE_ID, stats, log);
  await pool.start();
  let draining = false;

  const frontDoor = createConnectServer({
    handshake: {
      maxHeadBytes: config.max_head_bytes,
      timeoutMs: config.handshake_timeout_sec * 1000,
      authenticate: createAuthenticator(config),
    },
    counters: stats.frontDoor,
    draining: () => draining,
    redirectFor: (uid) => pool.map.shardOf(uid),
    admit: () => {
      throw new Error("the front door owns no uids");
    },
  });
  const clientPort = await listen(frontDoor, config.host, config.client_port);

  const admin = Deno.serve(
    {
      hostname: config.admin_host,
      port: config.admin_port,
      onListen: () => {},
    },
    adminHandler({
      routes: {
        toOwner: (uid, op) => pool.toOwner(uid, op),
        toAll: (op) => pool.toAll(op),
        shardOf: (uid) => pool.map.shardOf(uid),
      },
      stats,
      maxBodyBytes: config.max_frame_bytes,
      msgLimit: config.msg_limit,
      defaultHost: config.advertise_host || "127.0.0.1",
      draining: () => draining,
    }),
  );
  const sampler = setInterval(() => stats.sample(), 1000);
  log(
    "info",
    `pid ${Deno.pid}: clients on ${config.host}:${clientPort}, admin on ` +
      `${config.admin_host}:${admin.addr.port}, shards on ports ${
        pool.map.shards.map((s) => s.port).join(",")
      }`,
  );

  log("info", `${await stop}: draining`);
  draining = true;
  clearInterval(sampler);
  frontDoor.close();
  await pool.drain();
  await admin.shutdown();
  log("info", "stopped");
  return 0;
}

/** Writes the pid file, refusing while a live process holds it. */
function claimPidFile(path: string): void {
  let held: string | null = null;
  try {
    held = Deno.readTextFileSync(path).trim();
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  if (held && /^\d+$/.test(held) && isAlive(Number(held))) {
    throw new Error(`${path} names pid ${held}, which is running: another ipush is up`);
  }
  Deno.writeTextFileSync(path, `${Deno.pid}\n`);
}

function isAlive(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

function removePidFile(path: string): void {
  try {
    if (Deno.readTextFileSync(path).trim() === String(Deno.pid)) Deno.removeSync(path);
  } catch {
    // Already gone: nothing to undo.
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
