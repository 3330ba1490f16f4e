/**
 * Drives a workload at a target rate of messages, or as fast as an in-flight limit of
 * requests allows.
 *
 * The schedule is open-loop: message k (from 0) is due (k + 1) / rate seconds after the start,
 * and after a stall the operations that fell due are started as soon as in-flight room
 * returns, so the achieved rate shows when the server cannot keep up.
 *
 * Latency is measured from the scheduled time, not the actual send: each request is handed the
 * time its first message fell due, and its messages carry that time as their stamp. When the
 * generator falls behind (a full in-flight window, a busy event loop), the wait then counts in
 * the latency instead of hiding it, which measuring from the send would do (coordinated
 * omission); how far behind the sends were is reported apart (`schedule_lag`). With `--rate=max`
 * there is no schedule: a request is due when it is sent.
 *
 * @module
 */

import { nowMs, type Rate } from "./ipc.ts";

/**
 * The longest wait between looks at the schedule; {@linkcode Pacer.wake} refills sooner. With a
 * rate the pacer wakes when the next message falls due instead (a timer's 1 ms at best): a fixed
 * 5 ms tick held a message up to 5 ms past its time, a p90 of ~4 ms in the latency it measures.
 */
const TICK_MS = 5;

/** Runs `issue` until `endAt` (performance.now() time). */
export class Pacer {
  /** Messages started. */
  issued = 0;
  /** Messages due by the end that were never started: the generator fell behind. */
  unsent = 0;
  #running = false;
  #startedAt = 0;

  constructor(
    readonly rate: Rate,
    readonly maxInFlight: number,
    /**
     * Starts one request due at `dueMs` (epoch ms, see {@linkcode nowMs}); returns how many
     * messages it carries (a batch carries several), 0 when it could not (nothing to send
     * from).
     */
    readonly issue: (dueMs: number) => number,
    /** Requests started and not finished. */
    readonly inFlight: () => number,
  ) {}

  /** Runs the schedule until `endAt`; resolves then. */
  async run(endAt: number): Promise<void> {
    this.#running = true;
    this.#startedAt = performance.now();
    while (performance.now() < endAt) {
      this.#fill();
      await new Promise((r) => setTimeout(r, this.#untilDue()));
    }
    this.#running = false;
    if (this.rate !== "max") {
      this.unsent = Math.max(
        0,
        Math.floor(this.rate * (endAt - this.#startedAt) / 1000) - this.issued,
      );
    }
  }

  /** An operation finished: refill the in-flight window now rather than at the next tick. */
  wake(): void {
    if (this.#running) this.#fill();
  }

  /** Milliseconds until the next message falls due, at most {@linkcode TICK_MS}. */
  #untilDue(): number {
    if (this.rate === "max") return TICK_MS;
    return Math.min(TICK_MS, Math.max(0, this.#nextDueAt(this.rate) - performance.now()));
  }

  /** When the next message (`issued + 1`) falls due, in `performance.now()` time. */
  #nextDueAt(rate: number): number {
    return this.#startedAt + (this.issued + 1) * 1000 / rate;
  }

  #fill(): void {
    const rate = this.rate;
    const due = rate === "max"
      ? Infinity
      : Math.floor(rate * (performance.now() - this.#startedAt) / 1000);
    while (this.issued < due && this.inFlight() < this.maxInFlight) {
      // A request is due when its first message is.
      const dueMs = rate === "max" ? nowMs() : performance.timeOrigin + this.#nextDueAt(rate);
      const n = this.issue(dueMs);
      if (n === 0) break;
      this.issued += n;
    }
  }
}
