/**
 * Presence in Redis: which uids are online (with their connection count) and which of a
 * channel's members are. Each node keeps a liveness key that expires after
 * `--presence_ttl_sec` unless refreshed; a uid counts as online only while its owner node's
 * key lives, so a node that dies stops showing its users online within that bound.
 *
 * Keys, under `ipush:presence:{--cluster_name}:` so that clusters sharing a Redis do not see
 * each other's users: `node:{node}` (liveness, holding the node's last {@linkcode NodeBeat} as
 * JSON, which every node's `/nodes` reads), `online:{node}` (hash uid →
 * `connections,devices`), `channel-online:{cid}` (set of uids online in the channel).
 *
 * @module
 */

import type { NodeBeat, NodeStatus, PresenceChange, UserPresence } from "../core/presence.ts";
import type { RedisClient } from "./redis.ts";

/** This node's presence writer, and the cluster's presence reader. */
export class Presence {
  #client: RedisClient;
  #nodeId: string;
  #ttlMs: number;
  #prefix: string;
  #timer: ReturnType<typeof setInterval> | undefined;
  #status: NodeStatus = { notReady: ["starting"], connections: 0, users: 0 };

  constructor(client: RedisClient, cluster: string, nodeId: string, ttlMs: number) {
    this.#client = client;
    this.#prefix = `ipush:presence:${cluster}:`;
    this.#nodeId = nodeId;
    this.#ttlMs = ttlMs;
  }

  #nodeKey(node: string): string {
    return `${this.#prefix}node:${node}`;
  }

  #onlineKey(node: string): string {
    return `${this.#prefix}online:${node}`;
  }

  #channelKey(channel: string): string {
    return `${this.#prefix}channel-online:${channel}`;
  }

  /** Starts this node's liveness key and clears what an earlier run of it left. */
  async start(): Promise<void> {
    await this.#client.del(this.#onlineKey(this.#nodeId));
    await this.#beat();
    this.#timer = setInterval(() => this.#beat().catch(() => {}), this.#ttlMs / 3);
  }

  /** What the following beats say of this node. */
  report(status: NodeStatus): void {
    this.#status = status;
  }

  /** The last beat of each node of `ids` that is alive (null for one that is not). */
  async beats(ids: readonly string[]): Promise<(NodeBeat | null)[]> {
    const values = await this.#client.mGet(ids.map((id) => this.#nodeKey(id)));
    return values.map((value) => {
      if (value === null) return null;
      try {
        const beat = JSON.parse(value);
        if (typeof beat === "object" && beat !== null && typeof beat.at === "number") return beat;
      } catch { /* an earlier version's beat, its time alone: alive, nothing more known */ }
      return { at: Number(value) || 0, notReady: [], connections: 0, users: 0 };
    });
  }

  /** Records shard reports (node-redis pipelines the commands of one turn). */
  async record(changes: PresenceChange[]): Promise<void> {
    const c = this.#client;
    const online = this.#onlineKey(this.#nodeId);
    await Promise.all(changes.flatMap((change) => {
      if (change.type === "presence-channel") {
        return change.joined
          ? [c.sAdd(this.#channelKey(change.channel), change.uid)]
          : [c.sRem(this.#channelKey(change.channel), change.uid)];
      }
      if (change.connections > 0) {
        return [
          c.hSet(online, change.uid, `${change.connections},${change.devices}`),
          ...change.channels.map((channel) => c.sAdd(this.#channelKey(channel), change.uid)),
        ];
      }
      return [
        c.hDel(online, change.uid),
        ...change.channels.map((channel) => c.sRem(this.#channelKey(channel), change.uid)),
      ];
    }));
  }

  /** The status of `uid`, owned by node `owner`. */
  async user(uid: string, owner: string): Promise<UserPresence> {
    return (await this.users([uid], () => owner))[0];
  }

  /** The online members of `channel`; `ownerOf` names each uid's node. */
  async channel(channel: string, ownerOf: (uid: string) => string): Promise<UserPresence[]> {
    const uids = (await this.#client.sMembers(this.#channelKey(channel))).sort();
    return (await this.users(uids, ownerOf)).filter((user) => user.status === "online");
  }

  /** The status of each uid; a dead owner node means offline. */
  async users(uids: string[], ownerOf: (uid: string) => string): Promise<UserPresence[]> {
    const owners = uids.map(ownerOf);
    const nodes = [...new Set(owners)];
    const [alive, counts] = await Promise.all([
      Promise.all(nodes.map((node) => this.#client.exists(this.#nodeKey(node)))),
      Promise.all(uids.map((uid, i) => this.#client.hGet(this.#onlineKey(owners[i]), uid))),
    ]);
    const live = new Set(nodes.filter((_, i) => alive[i] === 1));
    return uids.map((uid, i) => {
      // "connections,devices"
      const [connections = 0, devices = 0] = live.has(owners[i])
        ? (counts[i] ?? "").split(",").map(Number)
        : [];
      return { uid, status: connections > 0 ? "online" : "offline", connections, devices };
    });
  }

  /** Stops the liveness key and withdraws this node's users (a clean shutdown). */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#client.del([this.#nodeKey(this.#nodeId), this.#onlineKey(this.#nodeId)]);
  }

  #beat(): Promise<unknown> {
    const beat: NodeBeat = { at: Date.now(), ...this.#status };
    return this.#client.set(this.#nodeKey(this.#nodeId), JSON.stringify(beat), {
      expiration: { type: "PX", value: this.#ttlMs },
    });
  }
}
