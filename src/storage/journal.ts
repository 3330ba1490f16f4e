/**
 * Group commit in front of a {@linkcode Store}: appends made while a commit is in flight (or
 * in the same pass of the event loop) go to the store together as one batch, one batch at a
 * time, so batches become durable in the order they were made. Device updates (acks, and
 * when a device connected) are coalesced to the highest per (uid, device) and go to the
 * store as one call per commit, after that commit's messages. The queue is bounded: past the
 * limit an append is refused at once, not buffered. An append may carry a bus mark: its
 * commit hands the store the latest of those with its messages (`Store.append`).
 *
 * @module
 */

import { setImmediate } from "node:timers";
import {
  type DeviceUpdate,
  mergeDeviceUpdate,
  StorageUnavailableError,
  type Store,
} from "./store.ts";
import type { StoredMessage } from "../core/messages.ts";
import { laterEntryId } from "../core/bus_entry.ts";

/**
 * Refused because this node's write fence has passed (its cluster lease may have expired, and
 * another node may own these uids now): nothing of the commit reached the store.
 */
export class FencedError extends StorageUnavailableError {
  constructor() {
    super("fenced");
    this.name = "FencedError";
  }
}

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
  /** The latest bus mark of the next commit's appends. */
  #busMark: string | undefined;
  /** Device updates of the next commit, by uid and device. */
  #devices = new Map<string, DeviceUpdate>();
  #committing: Promise<void> | null = null;
  /** Messages of the batch the store is writing now: they count against the limit too. */
  #inFlight = 0;
  #mayWrite: () => boolean;

  /**
   * `limit`: the most messages waiting at once; `onAckError` hears of updates not stored;
   * `mayWrite` is asked before every commit (the node's write fence, `core/fence.ts`): while
   * it says no, appends fail with {@linkcode FencedError} and device updates wait.
   */
  constructor(
    store: Store,
    limit: number,
    onAckError: (error: Error) => void,
    mayWrite: () => boolean = () => true,
  ) {
    this.#store = store;
    this.#limit = limit;
    this.#onAckError = onAckError;
    this.#mayWrite = mayWrite;
  }

  /** Messages waiting for the store. */
  get queued(): number {
    return this.#messages.length;
  }

  /** Messages not yet durable: those waiting and those of the batch being written. */
  get pending(): number {
    return this.#inFlight + this.#messages.length;
  }

  /**
   * Resolves when every message in `messages` is durable; with `busMark`, once the store has
   * recorded it with them (or a later one). An empty append resolves at once and records
   * nothing, its mark neither: a mark only ever goes with the copies it vouches for.
   */
  append(messages: readonly StoredMessage[], busMark?: string): Promise<void> {
    if (messages.length === 0) return Promise.resolve();
    if (this.#inFlight + this.#messages.length + messages.length > this.#limit) {
      return Promise.reject(new StorageBusyError());
    }
    return new Promise((resolve, reject) => {
      this.#messages.push(...messages);
      this.#waiters.push({ count: messages.length, resolve, reject });
      if (busMark !== undefined) {
        this.#busMark = this.#busMark === undefined
          ? busMark
          : laterEntryId(this.#busMark, busMark);
      }
      this.#schedule();
    });
  }

  /** Records `seq` as the device's last_ack with the next commit. */
  ack(uid: string, device: string, seq: number): void {
    this.#update({ uid, device, lastAck: seq, seenAt: 0 });
  }

  /** Records that the device connected at `at` (ms since the epoch) with the next commit. */
  seen(uid: string, device: string, at: number): void {
    this.#update({ uid, device, lastAck: 0, seenAt: at });
  }

  #update(update: DeviceUpdate): void {
    mergeDeviceUpdate(this.#devices, update);
    this.#schedule();
  }

  /** Resolves once everything queued so far has been committed (or has failed). */
  async flush(): Promise<void> {
    if (this.#committing) await this.#committing;
    if (this.#messages.length > 0 || this.#devices.size > 0) {
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
    const devices = this.#devices;
    const busMark = this.#busMark;
    this.#messages = [];
    this.#waiters = [];
    this.#busMark = undefined;
    this.#devices = new Map();
    let ackFailed = false;
    try {
      if (!this.#mayWrite()) {
        // Checked here, right before the store is asked, so that no write leaves after the
        // fence has passed (a paused process wakes up and gets here first).
        const fenced = new FencedError();
        for (const waiter of waiters) waiter.reject(fenced);
        ackFailed = true;
        for (const update of devices.values()) mergeDeviceUpdate(this.#devices, update);
        return;
      }
      if (messages.length > 0) {
        this.#inFlight = messages.length;
        try {
          await this.#store.append(messages, busMark);
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
      if (devices.size > 0) {
        try {
          await this.#store.updateDevices([...devices.values()]);
        } catch (error) {
          // An unstored ack costs a redelivery, never a loss: keep them for a later commit,
          // which the next append or ack triggers (no retry loop against a store that is
          // down).
          ackFailed = true;
          for (const update of devices.values()) mergeDeviceUpdate(this.#devices, update);
          this.#onAckError(error as Error);
        }
      }
    } finally {
      this.#committing = null;
      if (this.#messages.length > 0 || (this.#devices.size > 0 && !ackFailed)) this.#schedule();
    }
  }
}
