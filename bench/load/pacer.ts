/**
 * Drives a workload at a target rate, or as fast as an in-flight limit allows.
 *
 * The schedule is open-loop: after a stall, the operations that fell due are started as soon
 * as in-flight room returns, so the achieved rate shows when the server cannot keep up.
 * Latency is measured from the actual send, not the scheduled one.
 *
 * @module
 */

import type { Rate } from "./ipc.ts";

/** How often the schedule is looked at; {@linkcode Pacer.wake} refills sooner. */
const TICK_MS = 5;

/** Runs `issue` until `endAt` (performance.now() time). */
export class Pacer {
  /** Operations started. */
  issued = 0;
  #running = false;
  #startedAt = 0;

  constructor(
    readonly rate: Rate,
    readonly maxInFlight: number,
    /** Starts one operation; returns false when it could not (nothing to send from). */
    readonly issue: () => boolean,
    /** Operations started and not finished. */
    readonly inFlight: () => number,
  ) {}

  /** Runs the schedule until `endAt`; resolves then. */
  async run(endAt: number): Promise<void> {
    this.#running = true;
    this.#startedAt = performance.now();
    while (performance.now() < endAt) {
      this.#fill();
      await new Promise((r) => setTimeout(r, TICK_MS));
    }
    this.#running = false;
  }

  /** An operation finished: refill the in-flight window now rather than at the next tick. */
  wake(): void {
    if (this.#running) this.#fill();
  }

  #fill(): void {
    const room = this.maxInFlight - this.inFlight();
    const due = this.rate === "max"
      ? room
      : Math.floor(this.rate * (performance.now() - this.#startedAt) / 1000) - this.issued;
    const n = Math.min(room, due);
    for (let i = 0; i < n; i++) {
      if (!this.issue()) break;
      this.issued++;
    }
  }
}
