/**
 * A first-in, first-out queue of work items, at most `limit` of them running at once.
 * Channel messages that other shards' clients send arrive in bursts as large as those
 * clients can write; started all at once, each one's pending store call and promises held
 * ~4 KB, and a burst of 100,000 held a shard at ~390 MB of heap. Queued, an item is just
 * itself.
 *
 * @module
 */

/** Runs items through `run`, at most `limit` at a time, in the order they were pushed. */
export class WorkQueue<T> {
  #items: (T | undefined)[] = [];
  #head = 0;
  #running = 0;
  #limit: number;
  #run: (item: T) => Promise<unknown>;

  /** `run` must not reject: it handles its own failures. */
  constructor(limit: number, run: (item: T) => Promise<unknown>) {
    this.#limit = limit;
    this.#run = run;
  }

  /** Items waiting to start. */
  get waiting(): number {
    return this.#items.length - this.#head;
  }

  /** Queues `item`; it starts as soon as fewer than `limit` run. */
  push(item: T): void {
    this.#items.push(item);
    this.#pump();
  }

  #pump(): void {
    while (this.#running < this.#limit && this.#head < this.#items.length) {
      const item = this.#items[this.#head] as T;
      this.#items[this.#head++] = undefined;
      if (this.#head === this.#items.length) {
        this.#items = [];
        this.#head = 0;
      }
      this.#running++;
      this.#run(item).finally(() => {
        this.#running--;
        this.#pump();
      });
    }
  }
}
