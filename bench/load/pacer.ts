/**
 * Drives a workload at a target rate of messages, or as fast as an in-flight limit of
 * requests allows.
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
  /** Messages started. */
  issued = 0;
  #running = false;
  #startedAt = 0;

  constructor(
    readonly rate: Rate,
    readonly maxInFlight: number,
    /**
     * Starts one request; returns how many messages it carries (a batch carries several), 0
     * when it could not (nothing to send from).
     */
    readonly issue: () => number,
    /** Requests started and not finished. */
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
    const due = this.rate === "max"
      ? Infinity
      : Math.floor(this.rate * (performance.now() - this.#startedAt) / 1000);
    while (this.issued < due && this.inFlight() < this.maxInFlight) {
      const n = this.issue();
      if (n === 0) break;
      this.issued += n;
    }
  }
}
