/**
 * The turn to write, shared by the shards (Web Workers) of one process that write one SQLite
 * file: one `Int32` in a `SharedArrayBuffer`, 0 when free, else the holder's id, taken and
 * given with `Atomics`. A writer that finds it held looks again after its event loop's next
 * pass of I/O, a few times, then every millisecond: it never blocks its loop.
 *
 * Why not SQLite's own lock alone: a connection that finds the write lock taken sleeps in its
 * busy handler, synchronously and in quanta of 1 to 100 ms, whatever the holder's transaction
 * takes (a fraction of a millisecond for one message). Two shards committing every pass of
 * their event loops (one `/pub` a message) stall each other's loops that way: measured, two
 * shards delivered 2.5 to 3 times fewer messages a second than one. The SQLite lock stays as
 * the guard between processes; within the process nobody meets it.
 *
 * Why not `Atomics.waitAsync`: in Deno its promise neither keeps the event loop alive nor
 * wakes an idle one (denoland/deno#15358), so a writer could wait for an unrelated socket.
 *
 * The turn is held only across one synchronous transaction, never across an `await`, so a
 * shard can lose it only by dying mid-transaction: the pool then frees it for the dead
 * shard's id ({@linkcode freeTurnOf}).
 *
 * @module
 */

import { setImmediate } from "node:timers";
import { StorageUnavailableError } from "./store.ts";

/** Looks after the next pass of I/O before falling back to a millisecond timer. */
const PASSES = 8;

/** A fresh cell for a node's shards to share. */
export function newWriteTurn(): SharedArrayBuffer {
  return new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT);
}

/** Frees the turn if `holder` (a shard that died) held it. */
export function freeTurnOf(buffer: SharedArrayBuffer, holder: number): void {
  Atomics.compareExchange(new Int32Array(buffer), 0, holder, 0);
}

/** One shard's side of the shared turn. */
export class WriteTurn {
  readonly #cell: Int32Array;
  readonly #holder: number;
  readonly #timeoutMs: number;

  /**
   * @param holder this shard's id, not 0 (its slot in the node)
   * @param timeoutMs how long a writer waits before it fails with "store busy"
   */
  constructor(buffer: SharedArrayBuffer, holder: number, timeoutMs: number) {
    if (holder === 0) throw new RangeError("a write turn's holder is not 0");
    this.#cell = new Int32Array(buffer);
    this.#holder = holder;
    this.#timeoutMs = timeoutMs;
  }

  /** Takes the turn if it is free. */
  tryTake(): boolean {
    return Atomics.compareExchange(this.#cell, 0, 0, this.#holder) === 0;
  }

  /**
   * Resolves once this shard holds the turn.
   *
   * @throws {StorageUnavailableError} after waiting `timeoutMs` for it.
   */
  async take(): Promise<void> {
    if (this.tryTake()) return;
    const deadline = Date.now() + this.#timeoutMs;
    for (let pass = 0;; pass++) {
      await new Promise((resolve) =>
        pass < PASSES ? setImmediate(resolve) : setTimeout(resolve, 1)
      );
      if (this.tryTake()) return;
      if (Date.now() >= deadline) throw new StorageUnavailableError("store busy");
    }
  }

  /** Gives the turn back. */
  give(): void {
    Atomics.store(this.#cell, 0, 0);
  }
}
