/**
 * Group commit in front of a {@linkcode Store}: appends made while a commit is in flight (or
 * in the same pass of the event loop) go to the store together as one batch, one batch at a
 * time, so batches become durable in the order they were made. Acks are coalesced to the
 * highest per uid and go to the store as one call per commit. The queue is bounded: past
 * the limit an append is refused at once, not buffered.
 *
 * @module
 */

import { setImmediate } from "node:timers";
import { StorageUnavailableError, type Store } from "./store.ts";
import type { StoredMessage } from "../core/messages.ts";

/** Refused because too many messages are already waiting for the store. */
export class StorageBusyError extends StorageUnavailableError {
  constructor() {
    super("storage busy");
    this.name = "StorageBusyError";
  }
}

interface Waiter {
  count: number;
  resolve(): void;
  reject(error: Error): void;
}

/** Batches one shard's writes to its store. */
export class Journal {
  #store: Store;
  #limit: number;
  #onAckError: (error: Error) => void;
  #messages: StoredMessage[] = [];
  #waiters: Waiter[] = [];
  #acks = new Map<string, number>();
  #committing: Promise<void> | null = null;
  /** Messages of the batch the store is writing now: they count against the limit too. */
  #inFlight = 0;

  /** `limit`: the most messages waiting at once; `onAckError` hears of acks not stored. */
  constructor(store: Store, limit: number, onAckError: (error: Error) => void) {
    this.#store = store;
    this.#limit = limit;
    this.#onAckError = onAckError;
  }

  /** Messages waiting for the store. */
  get queued(): number {
    return this.#messages.length;
  }

  /** Messages not yet durable: those waiting and those of the batch being written. */
  get pending(): number {
    return this.#inFlight + this.#messages.length;
  }

  /** Resolves when every message in `messages` is durable. */
  append(messages: readonly StoredMessage[]): Promise<void> {
    if (messages.length === 0) return Promise.resolve();
    if (this.#inFlight + this.#messages.length + messages.length > this.#limit) {
      return Promise.reject(new StorageBusyError());
    }
    return new Promise((resolve, reject) => {
      this.#messages.push(...messages);
      this.#waiters.push({ count: messages.length, resolve, reject });
      this.#schedule();
    });
  }

  /** Records `seq` as `uid`'s last_ack with the next commit. */
  ack(uid: string, seq: number): void {
    if (seq > (this.#acks.get(uid) ?? 0)) this.#acks.set(uid, seq);
    this.#schedule();
  }

  /** Resolves once everything queued so far has been committed (or has failed). */
  async flush(): Promise<void> {
    if (this.#committing) await this.#committing;
    if (this.#messages.length > 0 || this.#acks.size > 0) {
      await (this.#committing ??= this.#commit());
    }
  }

  #schedule(): void {
    // After the current pass, not the current microtask turn: the appends and acks of every
    // read and link message of a pass then share one commit. With sqlite: 15-20% more
    // messages a second at the maximum, and a lower p99 there (docs/performance.md, item 11).
    this.#committing ??= new Promise((resolve) => setImmediate(resolve)).then(() => this.#commit());
  }

  async #commit(): Promise<void> {
    const messages = this.#messages;
    const waiters = this.#waiters;
    const acks = this.#acks;
    this.#messages = [];
    this.#waiters = [];
    this.#acks = new Map();
    let ackFailed = false;
    try {
      if (messages.length > 0) {
        this.#inFlight = messages.length;
        try {
          await this.#store.append(messages);
          for (const waiter of waiters) waiter.resolve();
        } catch (error) {
          const failure = error instanceof StorageUnavailableError
            ? error
            : new StorageUnavailableError("storage failed", { cause: error });
          for (const waiter of waiters) waiter.reject(failure);
        } finally {
          this.#inFlight = 0;
        }
      }
      if (acks.size > 0) {
        try {
          await this.#store.ack(acks);
        } catch (error) {
          // An unstored ack costs a redelivery, never a loss: keep them for a later commit,
          // which the next append or ack triggers (no retry loop against a store that is
          // down).
          ackFailed = true;
          for (const [uid, seq] of acks) {
            if (seq > (this.#acks.get(uid) ?? 0)) this.#acks.set(uid, seq);
          }
          this.#onAckError(error as Error);
        }
      }
    } finally {
      this.#committing = null;
      if (this.#messages.length > 0 || (this.#acks.size > 0 && !ackFailed)) this.#schedule();
    }
  }
}
