/**
 * A node: the process that hosts a front door (the client port that redirects every client
 * to its shard), the admin API, this node's shard workers, and its part of the cluster
 * (Redis presence and bus, the other nodes' `/cluster/ops`). {@linkcode startNode} brings it
 * up; {@linkcode RunningNode.drain} takes it down in the one order that loses nothing:
 *
 * 1. stop taking work: client ports and the admin API answer `503 draining`, the front door
 *    stops accepting, clients' channel messages stop being relayed;
 * 2. drain the shards: every session gets its last chunk, every journal is flushed, every
 *    store closed;
 * 3. close the admin API (requests in flight are answered);
 * 4. leave the cluster: the bus, presence, Redis (each bounded: Redis may be gone).
 *
 * @module
 */

import { Admission } from "../admin/admission.ts";
import { adminHandler, type Endpoint } from "../admin/api.ts";
import { dashboardEndpoints } from "../admin/dashboard.ts";
import { healthEndpoints } from "../admin/health.ts";
import { ClusterBus } from "../cluster/bus.ts";
import { CLUSTER_OPS_PATH, Peers, serveClusterOps } from "../cluster/ops.ts";
import { Presence } from "../cluster/presence.ts";
import { closeRedis, connectRedis, type RedisClient } from "../cluster/redis.ts";
import { Router } from "../cluster/router.ts";
import type { Topology } from "../cluster/topology.ts";
import type { Config } from "../config/flags.ts";
import { badRequest } from "../core/errors.ts";
import type { Log } from "../core/log.ts";
import { isLoopback } from "../core/loopback.ts";
import type { PresenceChange } from "../core/presence.ts";
import type { ChannelRequest } from "../core/requests.ts";
import { CHANNEL_BUS } from "../shard/ops.ts";
import { StatsBook } from "../stats/report.ts";
import { prepareStore } from "../storage/registry.ts";
import { perTurn } from "../thread/batch.ts";
import { defaultSocketLimit, SocketBudget } from "../transport/budget.ts";
import { listen } from "../transport/client_port.ts";
import { Health } from "./health.ts";
import { startMallocTrim } from "./malloc_trim.ts";
import { ShardPool } from "./pool.ts";

/** How long a forwarded op may wait for another node. */
const PEER_TIMEOUT_MS = 5_000;

/** A node that serves; {@linkcode RunningNode.drain} stops it. */
export interface RunningNode {
  clientPort: number;
  adminPort: number;
  /** This node's shards' client ports. */
  shardPorts: number[];
  drain(): Promise<void>;
}

/** Starts a node: store ready, cluster joined, shards listening, front door and admin up. */
export async function startNode(config: Config, shape: Topology, log: Log): Promise<RunningNode> {
  // A bearer token is one word of visible ASCII (RFC 6750's b64token and more): one with white
  // space could never be sent back.
  if (!/^[\x21-\x7e]*$/.test(config.admin_token)) {
    throw new Error("--admin_token must be visible ASCII without white space");
  }
  // An admin port others can reach publishes to anyone: it needs a credential.
  if (config.admin_token === "" && !isLoopback(config.admin_host)) {
    throw new Error(
      `--admin_host=${config.admin_host} is reachable from other machines: give --admin_token ` +
        "(best in a flagfile only the daemon reads), or bind the admin API to loopback",
    );
  }
  const self = shape.self;
  const local = shape.shards.slice(shape.firstShard, shape.firstShard + self.workers);
  await prepareStore(config, local.map((shard) => shard.id), log);
  const stats = new StatsBook();
  const budget = SocketBudget.create(
    1 + self.workers,
    config.max_connections || defaultSocketLimit(),
  );
  let redis: RedisClient | undefined;
  let presence: Presence | undefined;
  if (config.redis_url !== "") {
    redis = await connectRedis(config.redis_url, log);
    redis.on("error", () => stats.frontDoor.redis_errors++);
    presence = new Presence(redis, self.id, config.presence_ttl_sec * 1000);
    await presence.start();
  }
  const pool = new ShardPool({ config, topology: shape, stats, log, budget });
  const bus = redis
    ? await ClusterBus.join(
      redis,
      config.redis_url,
      self.id,
      shape.nodes.length - 1,
      (request) => {
        pool.publishChannel(request).catch((error) =>
          log("warn", `channel message to ${request.channel} from the bus: ${error.message}`)
        );
      },
      log,
    )
    : undefined;
  const peers = shape.clustered
    ? new Peers(
      shape.nodes.filter((node) => node !== self),
      PEER_TIMEOUT_MS,
      config.admin_token,
      stats.frontDoor,
    )
    : undefined;
  const router = new Router(pool, { peers, bus, presence, counters: stats.frontDoor });

  const recordPresence = perTurn<PresenceChange>((changes) =>
    presence?.record(changes).catch((error) => {
      // An outage is logged once by the connection; not once a connect.
      if (redis?.isReady) log("warn", `presence: ${error.message}`);
    })
  );
  await pool.start({
    request: (op) => router.publish(op.request),
    note: (note) => {
      if (note.type === "presence" || note.type === "presence-channel") recordPresence(note);
    },
  });
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
  // The front door redirects every client; the owning shard checks it, once.
  const ownsNone = (): never => {
    throw new Error("the front door owns no uids");
  };
  const frontDoor = await listen(
    {
      handshake: {
        maxHeadBytes: config.max_head_bytes,
        maxBodyBytes: config.max_send_bytes,
        timeoutMs: config.handshake_timeout_sec * 1000,
        authenticate: ownsNone,
      },
      corsOrigins: config.cors_origins,
      context: {
        counters: stats.frontDoor,
        maxFrameBytes: config.max_frame_bytes,
        maxOutputBytes: config.max_output_bytes,
      },
      budget: new SocketBudget(budget, 0),
      perAddress: {
        handshakes: config.max_handshakes_per_address,
        headsPerSec: config.max_heads_per_sec_per_address,
      },
      draining: () => draining,
      redirectFor: (uid) => router.shardOf(uid),
      admit: ownsNone,
      shardOf: (uid) => router.shardOf(uid),
      open: ownsNone,
      submit: ownsNone,
    },
    config.host,
    self.clientPort,
  );
  const limits = { maxBodyBytes: config.max_frame_bytes, msgLimit: config.msg_limit };
  const admission = new Admission({
    targetMs: config.overload_ms,
    maxInFlight: config.max_inflight,
  });
  const health = new Health({
    topology: shape,
    pool,
    stats,
    redis,
    presence,
    inFlight: () => admission.inFlight,
    draining: () => draining,
  });
  const dashboard = await dashboardEndpoints();
  const admin = Deno.serve(
    { hostname: config.admin_host, port: self.adminPort, onListen: () => {} },
    adminHandler({
      routes: router,
      stats,
      refreshStats: () => health.refresh(),
      ...limits,
      defaultHost: self.host || "127.0.0.1",
      draining: () => draining,
      log,
      admission,
      adminToken: config.admin_token,
      mounts: {
        ...healthEndpoints(health),
        ...dashboard,
        [CLUSTER_OPS_PATH]: {
          name: "ClusterOps",
          methods: ["POST"],
          work: true,
          handle: (request, _url, _options, work) =>
            serveClusterOps(request, { ...limits, run: (op) => router.run(op) }, work.add),
        },
        ...(config.debug_api ? debugEndpoints(pool) : {}),
      },
    }),
  );
  const sampler = setInterval(() => {
    stats.sample();
    health.sample();
  }, 1000);
  const trimmer = startMallocTrim(config.malloc_trim_sec, log);

  return {
    clientPort: frontDoor.port,
    adminPort: admin.addr.port,
    shardPorts: pool.map.shards.slice(shape.firstShard, shape.firstShard + self.workers)
      .map((shard) => shard.port),
    async drain() {
      draining = true;
      // The other nodes' /nodes hear of it with the next beat.
      health.sample();
      clearInterval(sampler);
      clearInterval(trimmer);
      frontDoor.close();
      clientChannels?.close();
      await pool.drain();
      await admin.shutdown();
      await bus?.close();
      // Best effort: with Redis gone, the liveness key expires on its own.
      await presence?.stop().catch((error) =>
        log("warn", `presence not withdrawn: ${error.message}`)
      );
      if (redis) await closeRedis(redis);
    },
  };
}

/**
 * `--debug_api` only: drills for supervision and storage. `POST /debug/crash?shard=k`
 * throws from local shard k's event loop, as a bug would; `POST /debug/compact` runs every
 * local shard's compaction now and answers how many messages went.
 */
function debugEndpoints(pool: ShardPool): Record<string, Endpoint> {
  return {
    "/debug/crash": {
      name: "DebugCrash",
      methods: ["POST"],
      async handle(_request, url) {
        const shard = Number(url.searchParams.get("shard"));
        if (!Number.isSafeInteger(shard) || shard < 0) throw badRequest("invalid shard");
        await pool.toLocal(shard, { op: "crash" });
        return "ok";
      },
    },
    "/debug/compact": {
      name: "DebugCompact",
      methods: ["POST"],
      async handle() {
        const removed = await pool.toAll({ op: "compact" }) as number[];
        return removed.reduce((sum, n) => sum + n, 0);
      },
    },
  };
}
