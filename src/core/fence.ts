/**
 * A node's write fence: the wall-clock instant (ms since the epoch) until which this node may
 * still write for the uids it owns. The main thread moves it forward after every lease renewal
 * that Redis confirmed (to the moment the renewal was *sent* plus 90% of the lease, so that the
 * fence always falls before the lease can have expired in Redis); every shard's journal checks
 * it before each commit. The instant lives in a `SharedArrayBuffer`, so a worker sees a renewal
 * (or its absence, after a long pause) without a message: a node that was paused past its lease
 * finds its fence passed on its first write after waking, before it has heard anything.
 *
 * A node that is not in a Redis-managed cluster never closes its fence.
 *
 * @module
 */

/** What crosses to a worker: the shared instant. */
export type SharedFence = SharedArrayBuffer;

/** One thread's view of the fence. */
export class Fence {
  #until: Float64Array;

  constructor(shared: SharedFence) {
    this.#until = new Float64Array(shared);
  }

  /** A fence open until `until` (Infinity: never closes). */
  static create(until = Infinity): SharedFence {
    const shared = new SharedArrayBuffer(8);
    new Float64Array(shared)[0] = until;
    return shared;
  }

  /** True while writes are allowed at `now`. */
  open(now = Date.now()): boolean {
    return now < this.#until[0];
  }

  /** The instant writes stop being allowed. */
  get until(): number {
    return this.#until[0];
  }

  /** Moves the instant (forward on a renewal; to 0 to close it at once). */
  set(until: number): void {
    this.#until[0] = until;
  }
}
