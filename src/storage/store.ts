/**
 * The storage interface every backend implements (memory, the embedded durable store,
 * Cassandra). A shard is the only writer for its uids, so a store needs no compare-and-set:
 * it must keep what it is given, in order, and say when it is durable.
 *
 * @module
 */

import type { FlagSpecs } from "../core/flag_spec.ts";
import type { StoredMessage } from "../core/messages.ts";

/** What a store keeps per uid beside its messages. */
export interface UserState {
  /** The highest seq ever assigned to this uid (survives compaction). */
  lastSeq: number;
  /** The highest seq the user acknowledged. */
  lastAck: number;
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
   * highest seq as its `lastSeq`. Resolves only once the batch is durable.
   */
  append(messages: readonly StoredMessage[]): Promise<void>;
  /** Messages of `uid` with `seq > afterSeq` that have not expired at `now`, in seq order. */
  readAfter(uid: string, afterSeq: number, limit: number, now: number): Promise<StoredMessage[]>;
  /** The uid's state; `{lastSeq: 0, lastAck: 0}` for a uid never seen. */
  userState(uid: string): Promise<UserState>;
  /**
   * Records each uid's seq as its `last_ack`, in one write where the engine allows. A seq
   * below the stored one leaves it as it is: `last_ack` never moves back.
   */
  ack(lastAcks: ReadonlyMap<string, number>): Promise<void>;
  /** Stores the (channel, uid) membership pair, both ways. */
  subscribe(channel: string, uid: string): Promise<void>;
  /** Deletes the (channel, uid) membership pair, both ways. */
  unsubscribe(channel: string, uid: string): Promise<void>;
  /** Every uid subscribed to `channel`. */
  members(channel: string): Promise<string[]>;
  /** Every channel `uid` is subscribed to. */
  channels(uid: string): Promise<string[]>;
  /** Removes acknowledged and expired messages; returns how many went. */
  compact(now: number): Promise<number>;
  /** Flushes and releases the engine. */
  close(): Promise<void>;
}

/**
 * A store backend: its name (the `--storage` value), its own flags, and how it is opened.
 * A new backend is one module that exports one of these, and a line in `registry.ts`.
 */
export interface StoreBackend<F extends FlagSpecs, C> {
  readonly name: string;
  /** Its flags, by name (`core/flag_spec.ts`). */
  readonly flags: F;
  /**
   * True when every shard of a node opens the same store (one file): then only the node's
   * first shard runs compaction, for all of them.
   */
  readonly shared: boolean;
  /** Readies the node's store on the main thread before any shard opens it. */
  prepare?(config: C): Promise<void>;
  /** Opens the store for one shard. */
  open(config: C): Promise<Store>;
}
