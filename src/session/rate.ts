/**
 * The token bucket behind `--client_msg_rate` and `--client_msg_burst`: a level of messages,
 * earned at `perSec` a second up to `burst`, one taken a message. Levels are kept in
 * thousandths of a message so that they stay integers however the milliseconds fall.
 *
 * @module
 */

/** How fast a client may send: messages a second, and how many at once. */
export interface MessageRate {
  perSec: number;
  burst: number;
}

/** What one message costs, in thousandths. */
const MESSAGE_COST = 1000;

/** One bucket, full when made. */
export class TokenBucket {
  #rate: MessageRate;
  #level: number;
  #filledAt: number;

  constructor(rate: MessageRate, now = Date.now()) {
    this.#rate = rate;
    this.#level = rate.burst * MESSAGE_COST;
    this.#filledAt = now;
  }

  /** Adds what the time since the last fill earned, up to a burst. */
  fill(now: number): void {
    // perSec messages a second are perSec thousandths a millisecond; a clock set back earns
    // nothing (and takes nothing).
    const earned = Math.max(0, now - this.#filledAt) * this.#rate.perSec;
    this.#filledAt = now;
    this.#level = Math.min(this.#rate.burst * MESSAGE_COST, this.#level + earned);
  }

  /** Takes one message; false (and nothing taken) when there is less than one. */
  take(): boolean {
    if (this.#level < MESSAGE_COST) return false;
    this.#level -= MESSAGE_COST;
    return true;
  }

  /** Whether it is at a full burst: then it holds nothing a new bucket would not. */
  get full(): boolean {
    return this.#level >= this.#rate.burst * MESSAGE_COST;
  }
}

/**
 * Buckets kept between requests, one a uid's device (the `/send`s of one client): made full
 * on first use and forgotten by {@linkcode sweep} once full again.
 */
export class Allowances {
  #rate: MessageRate;
  #buckets = new Map<string, TokenBucket>();

  constructor(rate: MessageRate) {
    this.#rate = rate;
  }

  /** The bucket of `uid`'s `device`, filled to `now`. */
  of(uid: string, device: string, now: number): TokenBucket {
    const key = `${uid}\n${device}`;
    const bucket = this.#buckets.get(key);
    if (!bucket) {
      const made = new TokenBucket(this.#rate, now);
      this.#buckets.set(key, made);
      return made;
    }
    bucket.fill(now);
    return bucket;
  }

  /** Forgets the buckets that are full by `now`: they hold nothing a new one would not. */
  sweep(now: number): void {
    for (const [key, bucket] of this.#buckets) {
      bucket.fill(now);
      if (bucket.full) this.#buckets.delete(key);
    }
  }

  /** Buckets kept now. */
  get size(): number {
    return this.#buckets.size;
  }
}
