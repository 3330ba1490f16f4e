/**
 * The storage interface every backend implements (memory, the embedded durable store,
 * Cassandra). A shard is the only writer for its uids, so a store needs no compare-and-set:
 * it must keep what it is given, in order, and say when it is durable.
 *
 * Devices (PROTOCOL.md §7): each (uid, device) has its own cursor, `lastAck`, and the time it
 * was last seen. A message is compacted away only once every live device of its uid has
 * acked it ({@linkcode compactionFloor}); a device not seen since `liveSince` no longer holds
 * messages back. An ack never runs ahead of the appends: the journal writes a commit's
 * messages before its device updates.
 *
 * @module
 */

import type { FlagSpecs } from "../core/flag_spec.ts";
import type { HandedUser, StoredMessage } from "../core/messages.ts";
import type { Log } from "../core/log.ts";

/** One device's cursor. */
export interface DeviceState {
  /** The highest seq the device acknowledged. */
  lastAck: number;
  /** When it last connected, in ms since the epoch (0: not recorded). */
  seenAt: number;
}

/** What a store keeps per uid beside its messages. */
export interface UserState {
  /** The highest seq ever assigned to this uid (survives compaction). */
  lastSeq: number;
  /** Each device's cursor, by device id ("" is the default device). */
  devices: Map<string, DeviceState>;
}

/** A device's cursor moving: `lastAck` and `seenAt` each only ever grow (0 leaves it). */
export interface DeviceUpdate {
  uid: string;
  device: string;
  lastAck: number;
  seenAt: number;
}

/**
 * Merges `update` into `pending` (keyed by uid and device), keeping the highest of each field:
 * how acks and connects waiting for one write become one row a device.
 */
export function mergeDeviceUpdate(pending: Map<string, DeviceUpdate>, update: DeviceUpdate): void {
  // A name cannot hold a line break: the key is unambiguous.
  const key = `${update.uid}\n${update.device}`;
  const known = pending.get(key);
  if (!known) pending.set(key, { ...update });
  else {
    if (update.lastAck > known.lastAck) known.lastAck = update.lastAck;
    if (update.seenAt > known.seenAt) known.seenAt = update.seenAt;
  }
}

/**
 * The seq up to which a uid's messages may be compacted: the lowest cursor of its devices
 * seen since `liveSince`. With no live device, the highest cursor of any: a message that no
 * device has acked is never dropped because its devices went quiet (only when it expires).
 */
export function compactionFloor(devices: Iterable<DeviceState>, liveSince: number): number {
  let live = Infinity;
  let any = 0;
  for (const { lastAck, seenAt } of devices) {
    if (seenAt >= liveSince && lastAck < live) live = lastAck;
    if (lastAck > any) any = lastAck;
  }
  return live === Infinity ? any : live;
}

/** Thrown (or rejected with) when the store cannot take or give data now. */
export class StorageUnavailableError extends Error {
  constructor(message = "storage unavailable", options?: ErrorOptions) {
    super(message, options);
    this.name = "StorageUnavailableError";
  }
}

/** A message store. Every method may reject with {@linkcode StorageUnavailableError}. */
export interface Store {
  /**
   * Persists a batch, atomically per uid where the engine allows, and records each uid's
   * highest seq as its `lastSeq`. Resolves only once the batch is durable. With `busMark`
   * (the id of the last cluster bus entry whose copies the batch completes), records it as
   * the store's bus mark, replacing the one before: in the same transaction as the messages
   * where the engine has one across uids (memory, sqlite), otherwise only once every message
   * is durable (Cassandra), so that the mark is never ahead of the copies it vouches for.
   */
  append(messages: readonly StoredMessage[], busMark?: string): Promise<void>;
  /**
   * The bus mark the last `append` carrying one recorded (`src/core/bus_entry.ts`); null if
   * none ever did. It is this store's own: hand-offs neither carry nor change it. With
   * `shard` (a map id, `node/k`), that shard's: a shared store holds every shard's, so that a
   * shard taking over a dead one's uids knows up to where it stored their copies; an embedded
   * store knows only its own, and answers null for any other.
   */
  busMark(shard?: string): Promise<string | null>;
  /**
   * Messages of `uid` with `seq > afterSeq` that have not expired at `now`, in seq order. A
   * message that every device of its uid had acknowledged may be gone before any `compact`
   * (the embedded store does not write what is acknowledged by the time it folds its log).
   */
  readAfter(uid: string, afterSeq: number, limit: number, now: number): Promise<StoredMessage[]>;
  /** The uid's state; `{lastSeq: 0, devices: {}}` for a uid never seen. */
  userState(uid: string): Promise<UserState>;
  /**
   * Records device cursors (acks, and when devices were seen), in one write where the engine
   * allows. Neither field moves back: a smaller value leaves the stored one. A store may hold
   * them for its next write (the embedded one, for at most a fold's interval): a crash then
   * loses them, and what they acked is delivered again, never lost.
   */
  updateDevices(updates: readonly DeviceUpdate[]): Promise<void>;
  /** Stores the (channel, uid) membership pair, both ways. */
  subscribe(channel: string, uid: string): Promise<void>;
  /** Deletes the (channel, uid) membership pair, both ways. */
  unsubscribe(channel: string, uid: string): Promise<void>;
  /** Every uid subscribed to `channel`. */
  members(channel: string): Promise<string[]>;
  /** Every channel `uid` is subscribed to. */
  channels(uid: string): Promise<string[]>;
  /**
   * Removes expired messages, and those at or below each uid's {@linkcode compactionFloor}
   * (devices not seen since `liveSince` hold nothing back); returns how many went, counting
   * those a store never wrote because they were acknowledged first.
   */
  compact(now: number, liveSince: number): Promise<number>;
  /**
   * Every uid the store holds anything of (a message, a cursor, a membership): what a shard
   * looks through for the uids a map change took from it.
   */
  uids(): Promise<string[]>;
  /**
   * Takes over uids handed off by another node, atomically per uid where the engine allows:
   * each uid's `lastSeq` and device cursors are raised to the handed ones (never lowered,
   * and `lastSeq` even when no message is left, so that no `s` is numbered again), and its
   * messages and channel memberships become exactly the handed ones (what was stored here
   * of an earlier ownership is stale). Resolves once durable.
   */
  importUsers(users: readonly HandedUser[]): Promise<void>;
  /** Deletes everything of these uids: messages, state, cursors, memberships both ways. */
  deleteUsers(uids: readonly string[]): Promise<void>;
  /** Flushes and releases the engine. */
  close(): Promise<void>;
}

/**
 * A store backend: its name (the `--storage` value), its own flags, and how it is opened.
 * A new backend is one module that exports one of these, and a line in `registry.ts`.
 */
export interface StoreBackend<F extends FlagSpecs, C> {
  readonly name: string;
  /**
   * Every node reads and writes the same data (Cassandra): a uid that moves finds its state
   * at its new owner, and nothing is handed off. False: each node keeps the state of the uids
   * it owns (sqlite, memory), and a planned map change hands it to the new owner.
   */
  readonly shared: boolean;
  /** Its flags, by name (`core/flag_spec.ts`). */
  readonly flags: F;
  /**
   * Readies the node's store on the main thread before any shard opens it, for the node's
   * shards (their map ids, in shard order).
   */
  prepare?(config: C, shardIds: readonly string[], log: Log): Promise<void>;
  /** Opens the store for the node's shard `shard` (0-based). */
  open(config: C, shard: number): Promise<Store>;
}
