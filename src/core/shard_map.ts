/**
 * The shard map: uid → shard, by rendezvous (highest-random-weight) hashing. Every node
 * computes the same map from the same shard list; adding or removing a shard moves only the
 * uids that shard gains or loses. With tens of shards a lookup is a handful of integer
 * mixes, and the spread is as even as the hash, with no virtual-node tables to tune.
 *
 * @module
 */

/** Where a shard listens for its clients. */
export interface ShardAddress {
  /** Stable identity, `node/index`: what the hash uses, so addresses can change freely. */
  id: string;
  host: string;
  port: number;
}

/** The id of the node a shard belongs to. */
export function nodeOf(shard: ShardAddress): string {
  return shard.id.slice(0, shard.id.lastIndexOf("/"));
}

/** The uid → shard map over a fixed list of shards. */
export class ShardMap {
  readonly shards: readonly ShardAddress[];
  #seeds: Uint32Array;

  constructor(shards: readonly ShardAddress[]) {
    if (shards.length === 0) throw new Error("a shard map needs at least one shard");
    if (new Set(shards.map((s) => s.id)).size !== shards.length) {
      throw new Error("shard ids must be unique");
    }
    this.shards = shards;
    this.#seeds = Uint32Array.from(shards, (s) => hash32(s.id));
  }

  /** The index (into {@linkcode shards}) of the shard that owns `uid`. */
  indexOf(uid: string): number {
    const key = hash32(uid);
    let best = 0;
    let bestScore = -1;
    for (let i = 0; i < this.#seeds.length; i++) {
      const score = mix32(key ^ this.#seeds[i]);
      if (score > bestScore) {
        bestScore = score;
        best = i;
      }
    }
    return best;
  }

  /** The shard that owns `uid`. */
  shardOf(uid: string): ShardAddress {
    return this.shards[this.indexOf(uid)];
  }
}

/**
 * A node lost with the state of its uids (it died without handing them off, with an embedded
 * store): its id, and the shard ids of the map it died in, which say which uids it held.
 * `floor`: an operator accepted the loss (`DELETE /cluster/lost`): those uids are served, and
 * numbered above it (docs/cluster.md); without, they are refused.
 */
export interface LostNode {
  node: string;
  shards: string[];
  floor?: number;
}

/** Whether `uid` was held by one of `lost` when it was lost, and the loss is not accepted. */
export function lostWith(lost: readonly LostMap[], uid: string): boolean {
  return lost.some((entry) => entry.floor === undefined && heldBy(entry, uid));
}

/** The floor of every accepted loss of `uid` (0: none): its `s` are numbered above it. */
export function seqFloor(lost: readonly LostMap[], uid: string): number {
  let floor = 0;
  for (const entry of lost) {
    if (entry.floor !== undefined && entry.floor > floor && heldBy(entry, uid)) floor = entry.floor;
  }
  return floor;
}

/** A {@linkcode LostNode} with its map, for {@linkcode lostWith} and {@linkcode seqFloor}. */
export interface LostMap {
  node: string;
  map: ShardMap;
  floor?: number;
}

function heldBy({ node, map }: LostMap, uid: string): boolean {
  return map.shardOf(uid).id.startsWith(`${node}/`);
}

/** The maps of `lost`. */
export function lostMaps(lost: readonly LostNode[]): LostMap[] {
  return lost.map(({ node, shards, floor }) => ({
    node,
    map: new ShardMap(shards.map((id) => ({ id, host: "", port: 0 }))),
    floor,
  }));
}

/** FNV-1a over UTF-16 code units, finished with {@linkcode mix32} for avalanche. */
export function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return mix32(h);
}

/** MurmurHash3's 32-bit finaliser: every input bit affects every output bit. */
function mix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
