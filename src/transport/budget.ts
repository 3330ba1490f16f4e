/**
 * The process's budget of client sockets. The front door and every shard worker share one
 * descriptor table (a process holds at most 20,000 here), and when `accept` fails for want of
 * a descriptor, Deno's `node:net` listener stops accepting for good, silently (measured on
 * Deno 2.9: two of three reuse-port listeners never drained their queue again). So the client
 * ports never let the process get there: past `--max_connections` sockets, a new one is told
 * `503 {"error":"server full"}` and closed at once.
 *
 * The count lives in a `SharedArrayBuffer`, one slot per thread, so that a worker that is
 * replaced after a crash (its sockets gone with it) can have its slot cleared.
 *
 * @module
 */

/** What crosses to a worker: the shared counts and the limit. */
export interface SharedBudget {
  counts: SharedArrayBuffer;
  limit: number;
}

/** Descriptors kept out of the budget: workers, storage files, admin and peer connections. */
export const RESERVED_DESCRIPTORS = 512;

/** One thread's view of the budget. */
export class SocketBudget {
  #counts: Int32Array;
  #limit: number;
  #slot: number;

  constructor(shared: SharedBudget, slot: number) {
    this.#counts = new Int32Array(shared.counts);
    this.#limit = shared.limit;
    this.#slot = slot;
  }

  /** A budget for `threads` threads (slot 0 is the main thread's). */
  static create(threads: number, limit: number): SharedBudget {
    return { counts: new SharedArrayBuffer(4 * threads), limit };
  }

  /** Client sockets open in the whole process. */
  total(): number {
    let total = 0;
    for (let i = 0; i < this.#counts.length; i++) total += Atomics.load(this.#counts, i);
    return total;
  }

  /** Counts a new socket; false (and not counted) when the process is at its limit. */
  take(): boolean {
    if (this.total() >= this.#limit) return false;
    Atomics.add(this.#counts, this.#slot, 1);
    return true;
  }

  /** A counted socket closed. */
  release(): void {
    Atomics.sub(this.#counts, this.#slot, 1);
  }

  /** Forgets `slot`'s sockets: its worker was replaced, and they went with it. */
  clear(slot: number): void {
    Atomics.store(this.#counts, slot, 0);
  }
}

/**
 * The default limit: the process's descriptor limit (`RLIMIT_NOFILE`, from /proc/self/limits)
 * less {@linkcode RESERVED_DESCRIPTORS}; no limit where it cannot be read.
 */
export function defaultSocketLimit(): number {
  try {
    const limits = Deno.readTextFileSync("/proc/self/limits");
    const soft = /^Max open files\s+(\d+)/m.exec(limits)?.[1];
    if (soft) return Math.max(64, Number(soft) - RESERVED_DESCRIPTORS);
  } catch {
    // Not Linux, or no /proc: nothing to read the limit from.
  }
  return Number.MAX_SAFE_INTEGER;
}
