/**
 * ipush: the main thread is the front door (client port: handshake, then 303 to the owning
 * shard), the admin API, and the supervisor of the shard workers, the pid file and the
 * signals.
 *
 * Run: `deno task start --flagfile=conf/default.conf`. Stop: `kill $(cat ipush_server.pid)`.
 *
 * @module
 */

import { Admission } from "./src/admin/admission.ts";
import { adminHandler } from "./src/admin/api.ts";
import { createAuthenticator } from "./src/auth/auth.ts";
import { ClusterBus } from "./src/cluster/bus.ts";
import { closeRedis, connectRedis, type RedisClient } from "./src/cluster/redis.ts";
import { Peers } from "./src/cluster/peers.ts";
import { Presence } from "./src/cluster/presence.ts";
import type { PresenceChange } from "./src/core/presence.ts";
import { Router } from "./src/cluster/router.ts";
import { type Topology, topology } from "./src/cluster/topology.ts";
import { type Config, FlagError, helpText, parseFlags } from "./src/config/flags.ts";
import { createLog, type Log } from "./src/core/log.ts";
import { openMallocTrim } from "./src/node/malloc_trim.ts";
import { perTurn } from "./src/thread/batch.ts";
import { ShardPool } from "./src/node/pool.ts";
import { defaultSocketLimit, SocketBudget } from "./src/transport/budget.ts";
import { listen } from "./src/transport/client_port.ts";
import { CHANNEL_BUS } from "./src/shard/ops.ts";
import type { ChannelRequest } from "./src/core/requests.ts";
import { StatsBook } from "./src/stats/report.ts";
import { prepareStore } from "./src/storage/open.ts";

/** How long a forwarded op may wait for another node. */
const PEER_TIMEOUT_MS = 5_000;

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
  const log = createLog(`main ${config.node_id}`, config.log_level);
  let shape: Topology;
  try {
    shape = topology(config);
    claimPidFile(config.pid_file);
    createAuthenticator(config); // fail now, not in every worker, on a bad users file
  } catch (error) {
    log("error", (error as Error).message);
    return 1;
  }
  try {
    return await serve(config, shape, log);
  } catch (error) {
    log("error", (error as Error).message);
    return 1;
  } finally {
    removePidFile(config.pid_file);
  }
}

async function serve(config: Config, shape: Topology, log: Log): Promise<number> {
  // Listen for signals first: a stop that arrives during start-up still drains.
  const { promise: stop, resolve } = Promise.withResolvers<string>();
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    Deno.addSignalListener(signal, () => resolve(signal));
  }
  await prepareStore(config);
  const self = shape.self;
  const stats = new StatsBook();
  const budget = SocketBudget.create(
    1 + self.workers,
    config.max_connections || defaultSocketLimit(),
  );
  let redis: RedisClient | undefined;
  let presence: Presence | undefined;
  if (config.redis_url !== "") {
    redis = await connectRedis(config.redis_url, log);
    presence = new Presence(redis, self.id, config.presence_ttl_sec * 1000);
    await presence.start();
  }
  const recordPresence = perTurn<PresenceChange>((changes) =>
    presence?.record(changes).catch((error) => {
      // An outage is logged once by the connection; not once a connect.
      if (redis?.isReady) log("warn", `presence: ${error.message}`);
    })
  );
  // The router needs the pool and the pool's shards need the router (for their forwards).
  const routes: { router?: Router } = {};
  const pool = new ShardPool({
    config,
    topology: shape,
    stats,
    log,
    onRequest: (op) => routes.router!.toOwner(op.request.to, op),
    onNote: (note) => {
      if (note.type === "presence" || note.type === "presence-channel") recordPresence(note);
    },
    budget,
  });
  const bus = redis
    ? await ClusterBus.join(
      redis,
      config.redis_url,
      self.id,
      shape.nodes.length - 1,
      (request) => {
        pool.toAll({ op: "cpub", request }).catch((error) =>
          log("warn", `channel message to ${request.channel} from the bus: ${error.message}`)
        );
      },
      log,
    )
    : undefined;
  const peers = shape.clustered
    ? new Peers(shape.nodes.filter((node) => node !== self), PEER_TIMEOUT_MS)
    : undefined;
  const router = routes.router = new Router(pool, { peers, bus, presence });
  await pool.start();
  // Clients' channel messages: the shards of this process exchange them over the
  // BroadcastChannel; the main thread hears them there too and relays them to other nodes.
  const clientChannels = bus ? new BroadcastChannel(CHANNEL_BUS) : undefined;
  if (clientChannels) {
    clientChannels.onmessage = (event: MessageEvent<ChannelRequest[]>) => {
      router.relayChannel(event.data).catch((error) =>
        log("warn", `channel message to other nodes: ${error.message}`)
      );
    };
  }
  let draining = false;

  const frontDoor = await listen(
    {
      handshake: {
        maxHeadBytes: config.max_head_bytes,
        timeoutMs: config.handshake_timeout_sec * 1000,
        authenticate: createAuthenticator(config),
      },
      context: {
        counters: stats.frontDoor,
        maxFrameBytes: config.max_frame_bytes,
        maxOutputBytes: config.max_output_bytes,
      },
      budget: new SocketBudget(budget, 0),
      draining: () => draining,
      redirectFor: (uid) => router.shardOf(uid),
      open: () => {
        throw new Error("the front door owns no uids");
      },
    },
    config.host,
    self.clientPort,
  );

  const admin = Deno.serve(
    { hostname: config.admin_host, port: self.adminPort, onListen: () => {} },
    adminHandler({
      routes: router,
      stats,
      refreshStats: () => pool.refreshStats(),
      crashShard: config.debug_api ? (k) => pool.toLocal(k, { op: "crash" }) : undefined,
      maxBodyBytes: config.max_frame_bytes,
      msgLimit: config.msg_limit,
      defaultHost: self.host || "127.0.0.1",
      draining: () => draining,
      log,
      admission: new Admission({ targetMs: config.overload_ms, maxInFlight: config.max_inflight }),
    }),
  );
  const sampler = setInterval(() => stats.sample(), 1000);
  const trimmer = startMallocTrim(config.malloc_trim_sec, log);
  log(
    "info",
    `pid ${Deno.pid}: clients on ${config.host}:${frontDoor.port}, admin on ` +
      `${config.admin_host}:${admin.addr.port}, shards on ports ${
        pool.map.shards.slice(shape.firstShard, shape.firstShard + self.workers)
          .map((s) => s.port).join(",")
      }`,
  );

  log("info", `${await stop}: draining`);
  draining = true;
  // Whatever hangs (a store or peer that never answers), the process ends in bounded time.
  const deadline = setTimeout(() => {
    log("error", `not drained after --drain_timeout_sec=${config.drain_timeout_sec}: exiting`);
    removePidFile(config.pid_file);
    Deno.exit(1);
  }, config.drain_timeout_sec * 1000);
  clearInterval(sampler);
  clearInterval(trimmer);
  frontDoor.close();
  clientChannels?.close();
  await pool.drain();
  await admin.shutdown();
  await bus?.close();
  // Best effort: with Redis gone, the liveness key expires on its own.
  await presence?.stop().catch((error) => log("warn", `presence not withdrawn: ${error.message}`));
  if (redis) await closeRedis(redis);
  clearTimeout(deadline);
  log("info", "stopped");
  return 0;
}

/**
 * Trims the heap every `intervalSec` (0: never). One process-wide call covers the workers'
 * arenas too, so only the main thread does it.
 */
function startMallocTrim(
  intervalSec: number,
  log: Log,
): ReturnType<typeof setInterval> | undefined {
  if (intervalSec === 0) return undefined;
  const trim = openMallocTrim();
  if (!trim) {
    log("debug", "no glibc malloc_trim here (or no --allow-ffi): heap trimming is off");
    return undefined;
  }
  return setInterval(trim, intervalSec * 1000);
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
