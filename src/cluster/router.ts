/**
 * Routing on the main thread: an operation for a uid goes to its owning shard — a worker of
 * this process, or another node — and a channel message goes over the cluster bus to every
 * node, this one included (alone, to every local shard). Intra-node and inter-node routing
 * are one decision made on one map. The admin API routes through this; it does not know where a shard runs.
 *
 * @module
 */

import { errorAnswer, ServiceError } from "../core/errors.ts";
import type { UserPresence } from "../core/presence.ts";
import type { HandedUser } from "../core/messages.ts";
import {
  addReceipt,
  type ChannelReceipt,
  type ChannelRequest,
  noReceipt,
  ownerOf,
  type OwnerOp,
  type PubResult,
  type Receipt,
  type UnicastRequest,
} from "../core/requests.ts";
import type { ShardAddress, ShardMap } from "../core/shard_map.ts";
import type { ShardCounters } from "../stats/counters.ts";
import type { ClusterBus } from "./bus.ts";
import type { Peers } from "./ops.ts";
import type { Presence } from "./presence.ts";
import { nodeOf } from "../core/shard_map.ts";

/** How long an op for a uid that is moving is tried again, and how often. */
const MOVING_RETRY_MS = 5_000;
const MOVING_PAUSE_MS = 50;

/** This node's shards, as the router reaches them (the worker pool). */
export interface LocalShards {
  /** The uid → shard map of the whole cluster. */
  readonly map: ShardMap;
  /** True when the shard at `index` of the map runs in this process. */
  isLocal(index: number): boolean;
  toShard(index: number, op: OwnerOp): Promise<unknown>;
  /** A channel message to every shard of this node; each shard's receipt. */
  publishChannel(request: ChannelRequest): Promise<ChannelReceipt[]>;
}

/** The cluster parts a router uses; all absent for a single node without Redis. */
export interface ClusterParts {
  peers?: Peers;
  bus?: ClusterBus;
  presence?: Presence;
  /** Where the bus's messages and failures are counted. */
  counters: ShardCounters;
}

/** Routes operations to owners. */
export class Router {
  #local: LocalShards;
  #cluster: ClusterParts;

  constructor(local: LocalShards, cluster: ClusterParts) {
    this.#local = local;
    this.#cluster = cluster;
  }

  /** The shard a client with this uid should connect to. */
  shardOf(uid: string): ShardAddress {
    return this.#local.map.shardOf(uid);
  }

  /** Stores and delivers a message to one uid; resolves with its receipt. */
  async publish(request: UnicastRequest): Promise<Receipt> {
    return await this.#toOwner({ op: "publish", request }) as Receipt;
  }

  /**
   * Many messages for uids of one shard (that of `uid`), stored in one journal batch. A line
   * the shard answered 421 (its uid moved away while the batch travelled; nothing of it was
   * stored) is sent again to its owner by the map as it is then, as a single op would be.
   */
  async publishMany(uid: string, requests: UnicastRequest[]): Promise<PubResult[]> {
    const deadline = Date.now() + MOVING_RETRY_MS;
    const results = await this.#toOwner({ op: "publish_many", uid, requests }) as PubResult[];
    for (;;) {
      const moved = results.flatMap((result, i) => isMoved(result) ? [i] : []);
      if (moved.length === 0 || Date.now() > deadline) return results;
      await new Promise((resolve) => setTimeout(resolve, MOVING_PAUSE_MS));
      const byShard = new Map<string, number[]>();
      for (const i of moved) {
        const shard = this.shardOf(requests[i].to).id;
        const group = byShard.get(shard);
        if (group) group.push(i);
        else byShard.set(shard, [i]);
      }
      await Promise.all([...byShard.values()].map(async (group) => {
        const again = group.map((i) => requests[i]);
        const answers = await this.#toOwner({
          op: "publish_many",
          uid: again[0].to,
          requests: again,
        })
          .then((value) => value as PubResult[], (error) => again.map(() => errorAnswer(error)));
        group.forEach((i, k) => results[i] = answers[k]);
      }));
    }
  }

  /**
   * A channel message, from a back end or a client: in a cluster, to the bus, whose entry every
   * node's shards (this node's too) store their members' copies of, so that every copy is
   * decided in the stream's order (docs/cluster.md). It resolves once this node's are stored;
   * one the bus refuses (503) is stored nowhere, so that the publisher's retry stores no copy
   * twice. Alone, every shard here stores its members' copies. Its receipt counts this node's
   * members (the bus does not say how many other nodes have).
   */
  async publishChannel(request: ChannelRequest): Promise<ChannelReceipt> {
    const { bus, counters } = this.#cluster;
    if (bus) {
      counters.bus_published++;
      try {
        return await bus.publish(request);
      } catch (error) {
        counters.bus_errors++;
        throw error;
      }
    }
    const total = noReceipt();
    for (const receipt of await this.#local.publishChannel(request)) addReceipt(total, receipt);
    return total;
  }

  async subscribe(uid: string, channel: string): Promise<void> {
    await this.#toOwner({ op: "subscribe", uid, channel });
  }

  async unsubscribe(uid: string, channel: string): Promise<void> {
    await this.#toOwner({ op: "unsubscribe", uid, channel });
  }

  /** The offline messages of the uid's `device`, in the `/msg` form. */
  async offline(uid: string, device: string, limit: number): Promise<string[]> {
    return await this.#toOwner({ op: "offline", uid, device, limit }) as string[];
  }

  /**
   * A hand-off's batch to the shard that owns `uid` (and every uid of `users`), wherever it
   * runs; resolves with the uids it kept its own state of.
   */
  async importUsers(uid: string, users: HandedUser[]): Promise<string[]> {
    return await this.#toOwner({ op: "import", uid, users }) as string[];
  }

  /** Runs an op another node forwarded: its uid must be owned here. */
  run(op: OwnerOp): Promise<unknown> {
    const uid = ownerOf(op);
    const index = this.#local.map.indexOf(uid);
    if (!this.#local.isLocal(index)) {
      return Promise.reject(new ServiceError(`uid ${uid} is not owned by this node`, 421));
    }
    return this.#local.toShard(index, op);
  }

  /** A uid's presence. */
  userPresence(uid: string): Promise<UserPresence> {
    return this.#presence().user(uid, nodeOf(this.shardOf(uid)));
  }

  /** A channel's online members. */
  channelPresence(channel: string): Promise<UserPresence[]> {
    return this.#presence().channel(channel, (uid) => nodeOf(this.shardOf(uid)));
  }

  /**
   * Sends `op` to the shard that owns its uid, wherever it runs. While the map changes, the
   * shard asked may already have let the uid go (421): asked again, by the map as it is then,
   * for a while.
   */
  async #toOwner(op: OwnerOp): Promise<unknown> {
    const deadline = Date.now() + MOVING_RETRY_MS;
    for (;;) {
      try {
        return await this.#toOwnerOnce(op);
      } catch (error) {
        if (!(error instanceof ServiceError && error.status === 421) || Date.now() > deadline) {
          throw error;
        }
        await new Promise((resolve) => setTimeout(resolve, MOVING_PAUSE_MS));
      }
    }
  }

  #toOwnerOnce(op: OwnerOp): Promise<unknown> {
    const uid = ownerOf(op);
    const index = this.#local.map.indexOf(uid);
    if (this.#local.isLocal(index)) return this.#local.toShard(index, op);
    const node = nodeOf(this.#local.map.shards[index]);
    const peers = this.#cluster.peers;
    if (!peers) return Promise.reject(new Error(`uid ${uid} maps to node ${node} without peers`));
    return peers.request(node, op);
  }

  #presence(): Presence {
    if (!this.#cluster.presence) throw new ServiceError("presence needs --redis_url", 503);
    return this.#cluster.presence;
  }
}

/** A line its shard no longer owns: not stored, to be asked of the owner. */
function isMoved(result: PubResult): boolean {
  return "error" in result && result.status === 421;
}
