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
import { adminHandler } from "../admin/api.ts";
import { createAuthenticator } from "../auth/auth.ts";
import { ClusterBus } from "../cluster/bus.ts";
import { CLUSTER_OPS_PATH, Peers, serveClusterOps } from "../cluster/ops.ts";
import { Presence } from "../cluster/presence.ts";
import { closeRedis, connectRedis, type RedisClient } from "../cluster/redis.ts";
import { Router } from "../cluster/router.ts";
import type { Topology } from "../cluster/topology.ts";
import type { Config } from "../config/flags.ts";
import type { Log } from "../core/log.ts";
import type { PresenceChange } from "../core/presence.ts";
import type { ChannelRequest } from "../core/requests.ts";
import { CHANNEL_BUS } from "../shard/ops.ts";
import { StatsBook } from "../stats/report.ts";
import { prepareStore } from "../storage/registry.ts";
import { perTurn } from "../thread/batch.ts";
import { defaultSocketLimit, SocketBudget } from "../transport/budget.ts";
import { listen } from "../transport/client_port.ts";
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
    ? new Peers(shape.nodes.filter((node) => node !== self), PEER_TIMEOUT_MS)
    : undefined;
  const router = new Router(pool, { peers, bus, presence });

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
  const frontDoor = await listen(
    {
      handshake: {
        maxHeadBytes: config.max_head_bytes,
        maxBodyBytes: config.max_send_bytes,
        timeoutMs: config.handshake_timeout_sec * 1000,
        authenticate: createAuthenticator(config),
      },
      corsOrigins: config.cors_origins,
      context: {
        counters: stats.frontDoor,
        maxFrameBytes: config.max_frame_bytes,
        maxOutputBytes: config.max_output_bytes,
      },
      budget: new SocketBudget(budget, 0),
      draining: () => draining,
      redirectFor: (uid) => router.shardOf(uid),
      shardOf: (uid) => router.shardOf(uid),
      open: () => {
        throw new Error("the front door owns no uids");
      },
      submit: () => {
        throw new Error("the front door owns no uids");
      },
    },
    config.host,
    self.clientPort,
  );
  const limits = { maxBodyBytes: config.max_frame_bytes, msgLimit: config.msg_limit };
  const admin = Deno.serve(
    { hostname: config.admin_host, port: self.adminPort, onListen: () => {} },
    adminHandler({
      routes: router,
      stats,
      refreshStats: () => pool.refreshStats(),
      crashShard: config.debug_api ? (k) => pool.toLocal(k, { op: "crash" }) : undefined,
      ...limits,
      defaultHost: self.host || "127.0.0.1",
      draining: () => draining,
      log,
      admission: new Admission({ targetMs: config.overload_ms, maxInFlight: config.max_inflight }),
      mounts: {
        [CLUSTER_OPS_PATH]: {
          name: "ClusterOps",
          methods: ["POST"],
          work: true,
          handle: (request, _url, _options, work) =>
            serveClusterOps(request, { ...limits, run: (op) => router.run(op) }, work.add),
        },
      },
    }),
  );
  const sampler = setInterval(() => stats.sample(), 1000);
  const trimmer = startMallocTrim(config.malloc_trim_sec, log);

  return {
    clientPort: frontDoor.port,
    adminPort: admin.addr.port,
    shardPorts: pool.map.shards.slice(shape.firstShard, shape.firstShard + self.workers)
      .map((shard) => shard.port),
    async drain() {
      draining = true;
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
