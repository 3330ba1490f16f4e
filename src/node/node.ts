/**
 * A node: the process that hosts a front door (the client port that redirects every client
 * to its shard), the admin API, this node's shard workers, and its part of the cluster
 * (Redis presence and bus, the other nodes' `/cluster/ops`). {@linkcode startNode} brings it
 * up; {@linkcode RunningNode.drain} takes it down in the one order that loses nothing:
 *
 * 1. stop taking work: client ports and the admin API answer `503 draining`, the front door
 *    stops accepting, the bus takes no more channel messages;
 * 2. drain the shards: every session gets its last chunk, every journal is flushed, every
 *    store closed;
 * 3. close the admin API (requests in flight are answered);
 * 4. leave the cluster: the bus, presence, Redis (each bounded: Redis may be gone).
 *
 * Under `--cluster=redis` a step comes before all of these: leave the membership, so that the
 * other members take this node's uids while its front door still redirects to them (its shards
 * tell their sessions `moved` and flush first; docs/cluster.md).
 *
 * @module
 */

import { Admission } from "../admin/admission.ts";
import { adminHandler, type Endpoint } from "../admin/api.ts";
import { dashboardEndpoints } from "../admin/dashboard.ts";
import { healthEndpoints } from "../admin/health.ts";
import { ClusterBus } from "../cluster/bus.ts";
import { MapKeeper } from "../cluster/map_keeper.ts";
import { Membership } from "../cluster/membership.ts";
import { CLUSTER_OPS_PATH, Peers, serveClusterOps } from "../cluster/ops.ts";
import { Presence } from "../cluster/presence.ts";
import { closeRedis, connectRedis, duplicateRedis, type RedisClient } from "../cluster/redis.ts";
import { Router } from "../cluster/router.ts";
import { shardsOf, type Topology } from "../cluster/topology.ts";
import type { Config } from "../config/flags.ts";
import { badRequest } from "../core/errors.ts";
import { Fence } from "../core/fence.ts";
import type { Log } from "../core/log.ts";
import { isLoopback } from "../core/loopback.ts";
import type { PresenceChange } from "../core/presence.ts";
import { CRASH_POINTS, type CrashPoint } from "../shard/ops.ts";
import { StatsBook } from "../stats/report.ts";
import { backendOf, prepareStore } from "../storage/registry.ts";
import { perTurn } from "../thread/batch.ts";
import { defaultSocketLimit, SocketBudget } from "../transport/budget.ts";
import { listen } from "../transport/client_port.ts";
import { clusterEndpoint } from "./cluster_view.ts";
import { Health } from "./health.ts";
import { startMallocTrim } from "./malloc_trim.ts";
import { quietCollector } from "./quiet_gc.ts";
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
  if (shape.dynamic && !backendOf(config).shared) {
    log(
      "warn",
      `--storage=${config.storage} under --cluster=redis: a planned join or leave hands each ` +
        "moving uid's state to its new owner, but a node that dies (kill -9, a crash, a lost " +
        "lease) keeps its uids' state: the others refuse those uids (503 state lost) until it " +
        "is back with its files (docs/cluster.md). For failover, use --storage=cassandra" +
        (config.storage === "memory" ? "; memory loses everything when the process dies" : ""),
    );
  }
  await prepareStore(config, shardsOf(self).map((shard) => shard.id), log);
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
    presence = new Presence(redis, config.cluster_name, self.id, config.presence_ttl_sec * 1000);
    await presence.start();
  }
  // A Redis-managed member writes only under its lease (closed until it has joined).
  const fence = Fence.create(shape.dynamic ? 0 : Infinity);
  // Only a cluster has other nodes to tell.
  const hasBus = redis !== undefined && shape.clustered;
  const pool = new ShardPool({ config, topology: shape, stats, log, budget, fence, bus: hasBus });
  const bus = redis && hasBus
    ? await ClusterBus.join(redis, config.redis_url, {
      cluster: config.cluster_name,
      nodeId: self.id,
      retentionSec: config.bus_retention_sec,
      fromNow: shape.dynamic && backendOf(config).shared,
      deliver: (entries, streamTop) => pool.publishBusEntries(entries, streamTop),
      log,
    })
    : undefined;
  if (bus && shape.dynamic) pool.replayFrom(bus);
  const peers = shape.clustered
    ? new Peers(
      shape.nodes.filter((node) => node.id !== self.id),
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
    request: (op) => {
      switch (op.op) {
        case "publish":
          return router.publish(op.request);
        case "publish_channel":
          return router.publishChannel(op.request);
        case "import":
          return router.importUsers(op.uid, op.users);
      }
    },
    note: (note) => {
      if (note.type === "presence" || note.type === "presence-channel") recordPresence(note);
    },
  });

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
  let membership: Membership | undefined;
  let keeper: MapKeeper | undefined;
  let changes: RedisClient | undefined;
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
        ...clusterEndpoint({
          topology: shape,
          members: () => pool.members,
          map: () => pool.map,
          managed: () => membership && keeper && { membership, keeper },
        }),
        ...(config.debug_api ? debugEndpoints(pool) : {}),
      },
    }),
  );
  // Joins once everything listens: the others may send it clients and ops at once.
  if (shape.dynamic && redis) {
    membership = new Membership(redis, {
      cluster: config.cluster_name,
      // Where the others reach it: the ports it actually listens on.
      self: {
        ...self,
        clientPort: frontDoor.port,
        adminPort: admin.addr.port,
        shardPorts: pool.ports,
      },
      ttlMs: config.presence_ttl_sec * 1000,
      fence: new Fence(fence),
      log,
    });
    const members = keeper = new MapKeeper(membership, pool, {
      selfId: self.id,
      graceMs: config.storage_timeout_ms,
      localState: !backendOf(config).shared,
      onMembers: (nodes) => {
        const others = nodes.filter((node) => node.id !== self.id);
        peers?.setNodes(others);
      },
      counters: stats.frontDoor,
      log,
    });
    changes = await duplicateRedis(redis, config.redis_url, log);
    await changes.subscribe(membership.changes, () => void members.refresh());
    await keeper.start();
  }
  const sampler = setInterval(() => {
    stats.sample();
    health.sample();
  }, 1000);
  const trimmer = startMallocTrim(config.malloc_trim_sec, log, quietCollector());

  return {
    clientPort: frontDoor.port,
    adminPort: admin.addr.port,
    shardPorts: pool.ports,
    async drain() {
      let left = false;
      if (keeper) {
        // Bounded like the rest: with Redis gone, the lease expires on its own.
        await keeper.leave().then(
          () => left = true,
          (error) => log("warn", `cluster not left (the lease will expire): ${error.message}`),
        );
        keeper.stop();
      }
      draining = true;
      // The other nodes' /nodes hear of it with the next beat.
      health.sample();
      clearInterval(sampler);
      clearInterval(trimmer);
      frontDoor.close();
      // The bus stops reading before the shards drain: an entry delivered to a drained shard
      // is never answered. What it has not read waits in its group for the next start (gone
      // without handing off, it must catch up when it is back); a node that left has none.
      if (left) {
        await bus?.leave().catch((error) =>
          log("warn", `cluster bus group kept (a restart will read on from it): ${error.message}`)
        );
      } else await bus?.close();
      await pool.drain();
      await admin.shutdown();
      // Best effort: with Redis gone, the liveness key expires on its own.
      await presence?.stop().catch((error) =>
        log("warn", `presence not withdrawn: ${error.message}`)
      );
      if (changes) await closeRedis(changes);
      if (redis) await closeRedis(redis);
    },
  };
}

/**
 * `--debug_api` only: drills for supervision and storage. `POST /debug/crash?shard=k`
 * throws from local shard k's event loop, as a bug would; with `&after=bus_commit`, right
 * after its next commit of bus entries' copies, before the node's `XACK` (the bus mark's
 * drill, docs/cluster.md); with `&after=pub_commit`, right after its next commit of a `/pub`
 * to a uid, before it answers (what a `503` after a crash promises, docs/protocol-notes.md).
 * `POST /debug/compact` runs every local shard's compaction now and answers how many
 * messages went.
 */
function debugEndpoints(pool: ShardPool): Record<string, Endpoint> {
  return {
    "/debug/crash": {
      name: "DebugCrash",
      methods: ["POST"],
      async handle(_request, url) {
        const shard = Number(url.searchParams.get("shard"));
        if (!Number.isSafeInteger(shard) || shard < 0) throw badRequest("invalid shard");
        const after = url.searchParams.get("after");
        if (after !== null && !CRASH_POINTS.includes(after as CrashPoint)) {
          throw badRequest("invalid after");
        }
        await pool.toLocal(
          shard,
          after === null ? { op: "crash" } : { op: "crash", after: after as CrashPoint },
        );
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
