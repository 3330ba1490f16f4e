/**
 * What `--client_msg_rate` and `--client_msg_burst` let a client send: two token buckets filled
 * together at `perSec` messages a second up to `burst` — the allowance, one taken a message,
 * and the forbearance, one taken a refusal (a client that has used both up is closed). Levels
 * are kept in thousandths of a message so that they stay integers however the milliseconds
 * fall. One object a session that sends, none for one that is idle: an idle session is small
 * on purpose.
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

/** One client's two buckets, full when made. */
export class MessageBudget {
  #rate: MessageRate;
  #allowance: number;
  #forbearance: number;
  #filledAt: number;

  constructor(rate: MessageRate, now = Date.now()) {
    this.#rate = rate;
    this.#allowance = this.#forbearance = rate.burst * MESSAGE_COST;
    this.#filledAt = now;
  }

  /** Adds what the time since the last fill earned to both buckets, up to a burst. */
  fill(now: number): void {
    // perSec messages a second are perSec thousandths a millisecond; a clock set back earns
    // nothing (and takes nothing).
    const earned = Math.max(0, now - this.#filledAt) * this.#rate.perSec;
    this.#filledAt = now;
    const full = this.#rate.burst * MESSAGE_COST;
    this.#allowance = Math.min(full, this.#allowance + earned);
    this.#forbearance = Math.min(full, this.#forbearance + earned);
  }

  /** Takes one message from the allowance; false (and nothing taken) when there is none. */
  take(): boolean {
    if (this.#allowance < MESSAGE_COST) return false;
    this.#allowance -= MESSAGE_COST;
    return true;
  }

  /** Takes one refusal from the forbearance; false when there is none: time to close. */
  forgive(): boolean {
    if (this.#forbearance < MESSAGE_COST) return false;
    this.#forbearance -= MESSAGE_COST;
    return true;
  }

  /** Whether both are at a full burst: then it holds nothing a new budget would not. */
  get full(): boolean {
    const full = this.#rate.burst * MESSAGE_COST;
    return this.#allowance >= full && this.#forbearance >= full;
  }
}

/**
 * Budgets kept between requests, one a uid's device (the `/send`s of one client): made full on
 * first use and forgotten by {@linkcode sweep} once full again.
 */
export class Allowances {
  #rate: MessageRate;
  #budgets = new Map<string, MessageBudget>();

  constructor(rate: MessageRate) {
    this.#rate = rate;
  }

  /** The budget of `uid`'s `device`, filled to `now`. */
  of(uid: string, device: string, now: number): MessageBudget {
    const key = `${uid}\n${device}`;
    const budget = this.#budgets.get(key);
    if (!budget) {
      const made = new MessageBudget(this.#rate, now);
      this.#budgets.set(key, made);
      return made;
    }
    budget.fill(now);
    return budget;
  }

  /** Forgets the budgets that are full by `now`. */
  sweep(now: number): void {
    for (const [key, budget] of this.#budgets) {
      budget.fill(now);
      if (budget.full) this.#budgets.delete(key);
    }
  }

  /** Budgets kept now. */
  get size(): number {
    return this.#budgets.size;
  }
}
