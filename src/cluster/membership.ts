/**
 * Membership of a Redis-managed cluster (`--cluster=redis`), the Redis half: who is in, under
 * which lease, at which version, and which version each member has applied. No consensus of our
 * own: every change is one atomic Redis transaction or script, and every node reads the same
 * versioned list.
 *
 * Keys, under `ipush:cluster:{name}:`:
 * - `members`: hash id → the member's {@linkcode NodeInfo} as JSON (host, ports, workers);
 * - `lease:{id}`: a key per member with `PX` = the lease; renewed every third of it;
 * - `version`: incremented by every join, leave and expiry (the map's version);
 * - `applied`: hash id → the highest version that member has applied (let go of what that
 *   version took from it, and flushed), {@linkcode LEFT} once it has left for good;
 * - `lost`: hash id → the shard ids of the map a member died in without handing off its uids'
 *   state (an embedded store): those uids have no state anywhere else, and are refused until it
 *   joins again (with its files) and applies a map, or an operator accepts the loss;
 * - `lost_at`: hash id → when its `lost` entry was written (ms, Redis's clock);
 * - `accepted`: hash id → every accepted loss of that member (`DELETE /cluster/lost`), a JSON
 *   list of its map's shard ids, the floor its uids are numbered above, the version and time
 *   of the acceptance; kept for good (a uid of it never used since still needs the floor);
 * - `positions`: hash id → where the member stood on the bus at its last few `applied`s (a JSON
 *   list of `BusPosition`): what a node taking its uids over replays after;
 * - `changes`: the pub/sub channel on which every change is announced.
 *
 * A member whose lease key is gone is removed (and the version bumped) by whichever node reads
 * the list next ({@linkcode READ_SCRIPT}): the list a node reads holds only members whose lease
 * was alive at that instant, and the same version always means the same list.
 *
 * The lease also fences this node's writes ({@linkcode Fence}): a renewal that Redis confirmed
 * moves the fence to the moment it was *sent* plus 90% of the lease, which is always before the
 * key can expire in Redis. A renewal that finds the key gone means the others may have taken
 * this node's uids: it is reported as lost, never silently re-created.
 *
 * @module
 */

import { type BusPosition, isEntryId } from "../core/bus_entry.ts";
import type { Fence } from "../core/fence.ts";
import type { Log } from "../core/log.ts";
import type { LostNode } from "../core/shard_map.ts";
import { isValidName } from "../core/names.ts";
import type { RedisClient } from "./redis.ts";
import type { NodeInfo } from "./topology.ts";

/** The `applied` value of a member that has left: it holds nothing of any version. */
export const LEFT = Number.MAX_SAFE_INTEGER;
/** The share of the lease the fence may use (the rest covers the renewal's trip and skew). */
const FENCE_SHARE = 0.9;

/** The membership as one read saw it. */
export interface View {
  version: number;
  /** The live members, sorted by id: the input of the shard map. */
  members: NodeInfo[];
  /**
   * Milliseconds left of each member's lease, and of each leaving one's (out of the list,
   * handing off its uids, not yet left); negative once gone.
   */
  leaseLeftMs: Map<string, number>;
  /** The version each member (and each member that left) has applied. */
  applied: Map<string, number>;
  /** The members lost with their uids' state (`lost`), by id. */
  lost: LostNode[];
  /** When each `lost` entry was written (ms since the epoch), where known. */
  lostAt: Map<string, number>;
  /** The accepted losses (`accepted`). */
  accepted: AcceptedLoss[];
}

/** A loss an operator accepted: its uids are served, numbered above `floor`. */
export interface AcceptedLoss {
  node: string;
  shards: string[];
  /** Redis's clock at the acceptance, in microseconds since the epoch (docs/cluster.md). */
  floor: number;
  /** The membership version then: every map the lost member was in is older. */
  version: number;
  /** When, in ms since the epoch. */
  at: number;
}

/** Why {@linkcode Membership.acceptLoss} refused. */
export type AcceptRefusal = "member" | "unknown";

/**
 * Reaps members whose lease is gone (one version bump for all of them), then reads the
 * version, the members, what each applied and each lease's time left, in one atomic step.
 * The leases of those in `applied` are read too: a member that is leaving (out of the list,
 * not yet left) still has one while it hands off its uids.
 */
const READ_SCRIPT = `
local ids = redis.call('HKEYS', KEYS[1])
local reaped = 0
for _, id in ipairs(ids) do
  if redis.call('EXISTS', ARGV[1] .. id) == 0 then
    redis.call('HDEL', KEYS[1], id)
    redis.call('HDEL', KEYS[3], id)
    reaped = reaped + 1
  end
end
if reaped > 0 then
  redis.call('INCR', KEYS[2])
  redis.call('PUBLISH', ARGV[2], 'expired')
end
local members = redis.call('HGETALL', KEYS[1])
local leases = {}
for i = 1, #members, 2 do leases[#leases + 1] = redis.call('PTTL', ARGV[1] .. members[i]) end
local applied = redis.call('HGETALL', KEYS[3])
local appliedLeases = {}
for i = 1, #applied, 2 do
  appliedLeases[#appliedLeases + 1] = redis.call('PTTL', ARGV[1] .. applied[i])
end
return {redis.call('GET', KEYS[2]) or '0', members, applied, leases, appliedLeases,
  redis.call('HGETALL', KEYS[4]), redis.call('HGETALL', KEYS[5]), redis.call('HGETALL', KEYS[6])}
`;

/**
 * `TIME` as decimal text, without Lua's numbers (doubles printed with 14 digits): microseconds
 * and milliseconds since the epoch.
 */
const LUA_CLOCK = `
local t = redis.call('TIME')
local micros = t[1] .. string.format('%06d', tonumber(t[2]))
local millis = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
`;

/**
 * Records a member as lost (the first record stays, with its time), unless that loss was
 * accepted already: an acceptance at a version at or above the map it was recorded from came
 * after every map that member was in. Returns 1 if the member is (now) recorded, 0 if not.
 * KEYS: lost, lost_at, accepted; ARGV: id, shards (JSON), version of that map, the channel.
 */
const MARK_SCRIPT = `
local accepted = redis.call('HGET', KEYS[3], ARGV[1])
if accepted then
  for v in string.gmatch(accepted, '"version":(%d+)') do
    if tonumber(v) >= tonumber(ARGV[3]) then return 0 end
  end
end
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  ${LUA_CLOCK}
  redis.call('HSET', KEYS[2], ARGV[1], millis)
  redis.call('PUBLISH', ARGV[4], 'lost ' .. ARGV[1])
end
return 1
`;

/**
 * Accepts the loss of a member's state: refused for a member whose lease lives ('member'), or
 * one without a `lost` entry ('unknown'); else moves its entry to `accepted` with the floor
 * (Redis's clock in microseconds) and the version, and announces it.
 * KEYS: lost, lost_at, accepted, version; ARGV: id, lease key prefix, the channel.
 */
const ACCEPT_SCRIPT = `
if redis.call('EXISTS', ARGV[2] .. ARGV[1]) == 1 then return {'member'} end
local shards = redis.call('HGET', KEYS[1], ARGV[1])
if not shards then return {'unknown'} end
${LUA_CLOCK}
local version = redis.call('GET', KEYS[4]) or '0'
local entry = '{"floor":' .. micros .. ',"version":' .. version .. ',"at":' .. millis ..
  ',"shards":' .. shards .. '}'
local before = redis.call('HGET', KEYS[3], ARGV[1])
if before then entry = string.sub(before, 1, -2) .. ',' .. entry .. ']'
else entry = '[' .. entry .. ']' end
redis.call('HSET', KEYS[3], ARGV[1], entry)
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[3], 'accepted ' .. ARGV[1])
return {'ok', micros, version, millis, shards}
`;

/** One node's part in the membership. */
export class Membership {
  #client: RedisClient;
  #self: NodeInfo;
  #ttlMs: number;
  #fence: Fence;
  #log: Log;
  #keys: {
    members: string;
    version: string;
    applied: string;
    changes: string;
    lease: string;
    lost: string;
    lostAt: string;
    accepted: string;
    positions: string;
  };
  /** The positions this node said with its last `applied`s, newest last. */
  #positions: BusPosition[] = [];
  #renewer: ReturnType<typeof setInterval> | undefined;

  constructor(
    client: RedisClient,
    options: { cluster: string; self: NodeInfo; ttlMs: number; fence: Fence; log: Log },
  ) {
    if (!parseMember(options.self.id, JSON.stringify(options.self))) {
      throw new Error(`cluster member ${JSON.stringify(options.self)} is incomplete`);
    }
    this.#client = client;
    this.#self = options.self;
    this.#ttlMs = options.ttlMs;
    this.#fence = options.fence;
    this.#log = options.log;
    const prefix = `ipush:cluster:${options.cluster}:`;
    this.#keys = {
      members: `${prefix}members`,
      version: `${prefix}version`,
      applied: `${prefix}applied`,
      changes: `${prefix}changes`,
      lease: `${prefix}lease:`,
      lost: `${prefix}lost`,
      lostAt: `${prefix}lost_at`,
      accepted: `${prefix}accepted`,
      positions: `${prefix}positions`,
    };
  }

  /** The pub/sub channel every change is announced on. */
  get changes(): string {
    return this.#keys.changes;
  }

  /** The lease, in milliseconds. */
  get leaseMs(): number {
    return this.#ttlMs;
  }

  /** Reads the membership (removing the members whose lease expired). */
  async read(): Promise<View> {
    const k = this.#keys;
    const reply = await this.#client.eval(READ_SCRIPT, {
      keys: [k.members, k.version, k.applied, k.lost, k.lostAt, k.accepted],
      arguments: [k.lease, k.changes],
    }) as [string, string[], string[], number[], number[], string[], string[], string[]];
    const [version, flatMembers, flatApplied, leases, appliedLeases, flatLost] = reply;
    const [flatLostAt, flatAccepted] = reply.slice(6) as string[][];
    const members: NodeInfo[] = [];
    const leaseLeftMs = new Map<string, number>();
    for (let i = 0; i < flatMembers.length; i += 2) {
      const info = parseMember(flatMembers[i], flatMembers[i + 1]);
      if (!info) {
        this.#log("warn", `cluster member ${flatMembers[i]}: unreadable entry ignored`);
        continue;
      }
      members.push(info);
      leaseLeftMs.set(info.id, Number(leases[i / 2]));
    }
    members.sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
    const applied = new Map<string, number>();
    for (let i = 0; i < flatApplied.length; i += 2) {
      applied.set(flatApplied[i], Number(flatApplied[i + 1]) || 0);
      if (!leaseLeftMs.has(flatApplied[i])) {
        leaseLeftMs.set(flatApplied[i], Number(appliedLeases[i / 2]));
      }
    }
    const lost: LostNode[] = [];
    for (let i = 0; i < flatLost.length; i += 2) {
      const entry = parseLost(flatLost[i], flatLost[i + 1]);
      if (entry) lost.push(entry);
      else this.#log("warn", `cluster lost entry ${flatLost[i]}: unreadable, ignored`);
    }
    const lostAt = new Map<string, number>();
    for (let i = 0; i < flatLostAt.length; i += 2) {
      const at = Number(flatLostAt[i + 1]);
      if (Number.isSafeInteger(at)) lostAt.set(flatLostAt[i], at);
    }
    const accepted: AcceptedLoss[] = [];
    for (let i = 0; i < flatAccepted.length; i += 2) {
      const entries = parseAccepted(flatAccepted[i], flatAccepted[i + 1]);
      // Unreadable, its uids would be numbered from 1 again: say so loudly.
      if (entries) accepted.push(...entries);
      else this.#log("error", `cluster accepted entry ${flatAccepted[i]}: unreadable, ignored`);
    }
    return {
      version: Number(version) || 0,
      members,
      leaseLeftMs,
      applied,
      lost,
      lostAt,
      accepted,
    };
  }

  /**
   * Records that `lost.node` died without handing off its uids' state (the first record of it
   * stays), and announces it; `version`: of the last map it was in. Cleared when that node,
   * joined again, has applied a map. False if an operator accepted this loss already (after
   * every map it was in): then it is not recorded again.
   */
  async markLost(lost: LostNode, version: number): Promise<boolean> {
    const k = this.#keys;
    const recorded = await this.#client.eval(MARK_SCRIPT, {
      keys: [k.lost, k.lostAt, k.accepted],
      arguments: [lost.node, JSON.stringify(lost.shards), String(version), k.changes],
    });
    return recorded === 1;
  }

  /**
   * Accepts the loss of `node`'s uids' state: its record goes, and its uids are served,
   * numbered above the floor this returns. Refused (`"member"`) while `node` has a lease, and
   * (`"unknown"`) when there is no record of it.
   */
  async acceptLoss(node: string): Promise<AcceptedLoss | AcceptRefusal> {
    const k = this.#keys;
    const reply = await this.#client.eval(ACCEPT_SCRIPT, {
      keys: [k.lost, k.lostAt, k.accepted, k.version],
      arguments: [node, k.lease, k.changes],
    }) as string[];
    if (reply[0] !== "ok") return reply[0] as AcceptRefusal;
    const [, floor, version, at, shards] = reply;
    return {
      node,
      // Unreadable, the record was ignored already (read logs it): its uids were not refused.
      shards: parseLost(node, shards)?.shards ?? [],
      floor: Number(floor),
      version: Number(version),
      at: Number(at),
    };
  }

  /**
   * Registers this node (with its lease, a version bump and a notice) and starts renewing the
   * lease; `lost` hears when a renewal finds the lease gone. Resolves with the new version.
   */
  async join(lost: () => void): Promise<number> {
    const k = this.#keys;
    const id = this.#self.id;
    const sentAt = Date.now();
    const [, , , version] = await this.#client.multi()
      .hSet(k.members, id, JSON.stringify(this.#self))
      .set(k.lease + id, String(sentAt), { expiration: { type: "PX", value: this.#ttlMs } })
      .hSet(k.applied, id, "0")
      .incr(k.version)
      .publish(k.changes, `join ${id}`)
      .exec() as unknown as [number, string, number, number, number];
    this.#fence.set(sentAt + this.#ttlMs * FENCE_SHARE);
    clearInterval(this.#renewer);
    this.#renewer = setInterval(() => this.#renew(lost), this.#ttlMs / 3);
    return Number(version);
  }

  /**
   * Says that this node has applied `version` (let go of what it no longer owns, flushed, handed
   * off), and where it stood on the bus then (`positions`: the last few, for whoever takes
   * its uids over at a settle; `positions()`). A record of it as lost goes: back with its
   * files, it has handed on what it held.
   */
  async applied(version: number, position: BusPosition | null = null): Promise<void> {
    const k = this.#keys;
    if (position) {
      this.#positions = [...this.#positions.filter((p) => p.version < position.version), position]
        .slice(-POSITIONS_KEPT);
    }
    await this.#client.multi()
      .hSet(k.positions, this.#self.id, JSON.stringify(this.#positions))
      .hSet(k.applied, this.#self.id, String(version))
      .hDel(k.lost, this.#self.id)
      .hDel(k.lostAt, this.#self.id)
      .publish(k.changes, `applied ${this.#self.id} ${version}`)
      .exec();
  }

  /**
   * Takes this node out of the list (a version bump and a notice); its lease stays, and is
   * renewed, until {@linkcode left}. Resolves with the new version.
   */
  async leave(): Promise<number> {
    const k = this.#keys;
    const [, version] = await this.#client.multi()
      .hDel(k.members, this.#self.id)
      .incr(k.version)
      .publish(k.changes, `leave ${this.#self.id}`)
      .exec() as unknown as [number, number, number];
    return Number(version);
  }

  /** This node holds nothing any more: its lease goes and the others need not wait for it. */
  async left(): Promise<void> {
    clearInterval(this.#renewer);
    const k = this.#keys;
    await this.#client.multi()
      .hSet(k.applied, this.#self.id, String(LEFT))
      .del(k.lease + this.#self.id)
      .publish(k.changes, `left ${this.#self.id}`)
      .exec();
  }

  /** Where each member stood on the bus at its last few `applied`s, oldest first. */
  async positions(): Promise<Map<string, BusPosition[]>> {
    const flat = await this.#client.hGetAll(this.#keys.positions);
    const positions = new Map<string, BusPosition[]>();
    for (const [id, text] of Object.entries(flat)) {
      const list = parsePositions(text);
      if (list) positions.set(id, list);
      else this.#log("warn", `cluster positions of ${id}: unreadable, ignored`);
    }
    return positions;
  }

  /** Stops renewing (the lease then expires on its own). */
  stop(): void {
    clearInterval(this.#renewer);
  }

  async #renew(lost: () => void): Promise<void> {
    const sentAt = Date.now();
    let answer: string | null;
    try {
      answer = await this.#client.set(this.#keys.lease + this.#self.id, String(sentAt), {
        expiration: { type: "PX", value: this.#ttlMs },
        condition: "XX",
      });
    } catch {
      // Redis unreachable: the fence closes on its own when this lease share runs out (the
      // connection logs the outage).
      return;
    }
    if (answer === null) {
      clearInterval(this.#renewer);
      this.#fence.set(0);
      lost();
      return;
    }
    this.#fence.set(sentAt + this.#ttlMs * FENCE_SHARE);
  }
}

/** A `lost` entry, checked as a member's is. */
function parseLost(node: string, text: string): LostNode | null {
  try {
    const shards = JSON.parse(text);
    if (
      !isValidName(node) || !Array.isArray(shards) || shards.length === 0 ||
      !shards.every((id) => typeof id === "string")
    ) return null;
    return { node, shards };
  } catch {
    return null;
  }
}

/** An `accepted` entry (every acceptance of `node`), checked as a member's is. */
function parseAccepted(node: string, text: string): AcceptedLoss[] | null {
  try {
    const list = JSON.parse(text);
    if (!isValidName(node) || !Array.isArray(list)) return null;
    const entries: AcceptedLoss[] = [];
    for (const { floor, version, at, shards } of list) {
      if (
        ![floor, version, at].every((n) => Number.isSafeInteger(n) && n >= 0) || floor === 0 ||
        !Array.isArray(shards) || shards.length === 0 ||
        !shards.every((id) => typeof id === "string")
      ) return null;
      entries.push({ node, shards, floor, version, at });
    }
    return entries;
  } catch {
    return null;
  }
}

/** A member's entry, checked (anything that can write to Redis can write here). */
function parseMember(id: string, text: string): NodeInfo | null {
  try {
    const value = JSON.parse(text);
    const ports = [value.clientPort, value.adminPort, ...(value.shardPorts ?? [])];
    if (
      value.id !== id || !isValidName(id) || typeof value.host !== "string" ||
      !Number.isInteger(value.workers) || value.workers < 1 ||
      !Array.isArray(value.shardPorts) || value.shardPorts.length !== value.workers ||
      ports.some((port) => !Number.isInteger(port) || port < 1 || port > 65535)
    ) return null;
    return {
      id,
      host: value.host,
      clientPort: value.clientPort,
      adminPort: value.adminPort,
      shardPortBase: 0,
      workers: value.workers,
      shardPorts: value.shardPorts,
    };
  } catch {
    return null;
  }
}

/** How many of its last `applied` positions a member keeps (changes held together). */
const POSITIONS_KEPT = 8;

/** A member's positions, checked; null if they are not what `applied` writes. */
function parsePositions(text: string): BusPosition[] | null {
  try {
    const list = JSON.parse(text);
    if (!Array.isArray(list)) return null;
    const ok = list.every((p) =>
      Number.isSafeInteger(p?.version) &&
      (p.shards === undefined ||
        (Array.isArray(p.shards) && p.shards.every((id: unknown) => typeof id === "string"))) &&
      typeof p.marks === "object" && p.marks !== null &&
      Object.values(p.marks).every((mark) =>
        mark === null || (typeof mark === "string" && isEntryId(mark))
      )
    );
    return ok ? list : null;
  } catch {
    return null;
  }
}
