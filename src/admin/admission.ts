/**
 * Admission control for the admin API: under more load than the shards and the store can
 * take, requests are refused at the door (`503` with `Retry-After`) instead of queueing
 * without bound. Measured before it existed: open-loop `/pub/batch` at twice the capacity
 * for 60 s grew the daemon from 411 MB to 1.96 GB, p50 latency reached 5.1 s, and every
 * request still answered HTTP 200, so a back end could not tell it should slow down.
 *
 * Three rules, any of which refuses a new request:
 *
 * - **Standing queue** (after CoDel): the fastest request answered in the last interval
 *   ({@linkcode INTERVAL_MS}, or the target if that is longer) took longer than the target. A
 *   queue that drains in time lets some requests through fast; when even the fastest waits,
 *   work arrives faster than it is done, and every admitted request only makes the queue
 *   longer. An interval in which nothing was answered while work was under way counts as such
 *   a stall. The interval is never shorter than the target: a shorter one can end before a
 *   request that takes the target is answered, and with the target at 250 ms most 100 ms
 *   intervals of an overload had no answer, read as no stall, and let a burst of work in
 *   (open-loop `/pub/batch` at 2× capacity: accepted p99 1.2–7.8 s, 0.5–1.1 s since).
 * - **Queue bound** (Little's law): the messages in flight would take more than twice the
 *   target to drain at the rate the last interval answered them (never below
 *   {@linkcode MIN_QUEUE}). The standing-queue verdict is renewed once an interval and, while
 *   it says "not overloaded", lets in all that arrives until the next: at twice the capacity
 *   that was half a second of backlog an interval, and accepted answers' p99 stayed above 1 s.
 *   This bound follows the queue request by request. Twice, not once: a batch's own service at
 *   capacity takes up to the target, and a bound tighter than the work it admits lowers the
 *   rate it is computed from, which lowers the bound (at twice the capacity, a bound of one
 *   target delivered 24,000–29,000 msgs/s where twice delivered 39,000–53,000).
 * - **Memory bound**: the messages in flight reached their limit.
 *
 * While overloaded or past the queue bound, one request an interval is let through all the
 * same, as a probe: its answer is what can end the verdict. Without it, work that is stuck
 * rather than queued (a request waiting on a node that woke from a pause) kept a node refusing
 * everything for good: no answer came, so every interval read as a stall.
 *
 * @module
 */

/** How often the standing-queue verdict is renewed at most. */
export const INTERVAL_MS = 100;

/**
 * Messages in flight the queue bound always lets in, however slow the last interval was: an idle
 * or trickling API's answer rate says nothing about what it can do, and a burst after quiet
 * must not be refused for it.
 */
export const MIN_QUEUE = 10_000;

/** Limits of one admin API. */
export interface AdmissionOptions {
  /** A request answered slower than this, even the fastest of an interval, means overload. */
  targetMs: number;
  /** Messages in flight at most. */
  maxInFlight: number;
}

/** One admin API's gate. */
export class Admission {
  #options: AdmissionOptions;
  /** How often the verdict is renewed: {@linkcode INTERVAL_MS}, or the target if longer. */
  #intervalMs: number;
  #inFlight = 0;
  #overloaded = false;
  #intervalStart = performance.now();
  /** The fastest answer of the current interval; Infinity while none. */
  #fastest = Infinity;
  /** This interval's probe went through (only counts while overloaded). */
  #probed = false;
  /** Messages answered in the current interval. */
  #answered = 0;
  /** The queue bound: messages in flight past which work is refused. */
  #queueBound: number;

  constructor(options: AdmissionOptions) {
    this.#options = options;
    this.#intervalMs = Math.max(INTERVAL_MS, options.targetMs);
    this.#queueBound = options.maxInFlight;
  }

  /** Messages in flight now. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Whether a request may start now. */
  admit(): boolean {
    const now = performance.now();
    if (now - this.#intervalStart >= this.#intervalMs) {
      // Nothing answered for an interval, which is at least the target: work is stalled.
      this.#overloaded = this.#fastest === Infinity
        ? this.#inFlight > 0
        : this.#fastest > this.#options.targetMs;
      // An interval with nothing answered leaves the bound as it was: a stall is the rule above's.
      if (this.#answered > 0) {
        const perMs = this.#answered / (now - this.#intervalStart);
        this.#queueBound = Math.max(MIN_QUEUE, 2 * this.#options.targetMs * perMs);
      }
      this.#intervalStart = now;
      this.#fastest = Infinity;
      this.#probed = false;
      this.#answered = 0;
    }
    if (this.#inFlight >= this.#options.maxInFlight) return false;
    if (!this.#overloaded && this.#inFlight < this.#queueBound) return true;
    if (this.#probed) return false;
    this.#probed = true;
    return true;
  }

  /** A request starts: count its messages with `add` once they are known, `done` once answered. */
  start(): Admitted {
    const startedAt = performance.now();
    let messages = 0;
    return {
      add: (count) => {
        messages += count;
        this.#inFlight += count;
      },
      done: () => {
        this.#inFlight -= messages;
        this.#answered += messages;
        messages = 0;
        const took = performance.now() - startedAt;
        if (took < this.#fastest) this.#fastest = took;
      },
    };
  }
}

/** A request let in. */
export interface Admitted {
  /** It carries `count` more messages. */
  add(count: number): void;
  /** It was answered (call once). */
  done(): void;
}
