/**
 * Routing on the main thread: an op for a uid goes to its owning shard — a worker of this
 * process, or another node — and a channel message goes to every local shard and, over the
 * cluster bus, to every other node. Intra-node and inter-node routing are one decision made
 * on one map.
 *
 * @module
 */

import type { AdminRoutes } from "../admin/api.ts";
import type { ShardAddress } from "../core/shard_map.ts";
import { ServiceError } from "../core/errors.ts";
import type { ShardPool } from "../node/pool.ts";
import type { ShardOp } from "../shard/ops.ts";
import type { ChannelRequest } from "../core/requests.ts";
import type { ClusterBus } from "./bus.ts";
import type { Peers } from "./peers.ts";
import type { UserPresence } from "../core/presence.ts";
import type { Presence } from "./presence.ts";
import { nodeOf } from "./topology.ts";

/** Ops that name one uid, and so one owner. */
export type UnicastOp = Extract<ShardOp, { op: "pub" | "sub" | "unsub" | "msg" }>;

/** The cluster parts a router uses; all absent for a single node without Redis. */
export interface ClusterParts {
  peers?: Peers;
  bus?: ClusterBus;
  presence?: Presence;
}

/** Routes ops to owners. */
export class Router implements AdminRoutes {
  #pool: ShardPool;
  #cluster: ClusterParts;

  constructor(pool: ShardPool, cluster: ClusterParts) {
    this.#pool = pool;
    this.#cluster = cluster;
  }

  shardOf(uid: string): ShardAddress {
    return this.#pool.map.shardOf(uid);
  }

  /** Sends `op` to the shard that owns `uid`, wherever it runs. */
  toOwner(uid: string, op: ShardOp): Promise<unknown> {
    const index = this.#pool.map.indexOf(uid);
    if (this.#pool.isLocal(index)) return this.#pool.toShard(index, op);
    const node = nodeOf(this.#pool.map.shards[index]);
    if (!this.#cluster.peers) throw new Error(`uid ${uid} maps to node ${node} without peers`);
    return this.#cluster.peers.request(node, op);
  }

  /** Runs an op that another node forwarded: its uid must be owned here. */
  toLocalOwner(op: UnicastOp): Promise<unknown> {
    const uid = op.op === "pub" ? op.request.to : op.uid;
    const index = this.#pool.map.indexOf(uid);
    if (!this.#pool.isLocal(index)) {
      return Promise.reject(new ServiceError(`uid ${uid} is not owned by this node`, 421));
    }
    return this.#pool.toShard(index, op);
  }

  /** A channel message: every shard here stores its members' copies; other nodes via the bus. */
  async toAll(op: ShardOp): Promise<unknown[]> {
    const local = this.#pool.toAll(op);
    if (op.op === "cpub" && this.#cluster.bus) {
      const [results] = await Promise.all([local, this.#cluster.bus.publish([op.request])]);
      return results;
    }
    return await local;
  }

  /** A channel message a local client sent (its own node's shards already have it). */
  relayChannel(requests: ChannelRequest[]): Promise<void> {
    return this.#cluster.bus?.publish(requests) ?? Promise.resolve();
  }

  /** A uid's presence. */
  userPresence(uid: string): Promise<UserPresence> {
    return this.#presence().user(uid, nodeOf(this.shardOf(uid)));
  }

  /** A channel's online members. */
  channelPresence(channel: string): Promise<UserPresence[]> {
    return this.#presence().channel(channel, (uid) => nodeOf(this.shardOf(uid)));
  }

  #presence(): Presence {
    if (!this.#cluster.presence) throw new ServiceError("presence needs --redis_url", 503);
    return this.#cluster.presence;
  }
}
