/**
 * A full garbage collection of the main thread's heap once it has gone quiet holding much
 * more than it did after the last one. V8's memory reducer gives a quiet heap back on its
 * own in the shard workers, but it did not on the main thread: after a burst of 19,000
 * handshakes the front door's heap stayed at 48.6 MB committed, 13 MB of it live, for as long
 * as it was watched (a minute); one collection took it to 14 MB and the node's RSS down by
 * 33 MB, ~1.75 KB a connection held (docs/performance.md).
 *
 * Quiet is judged from two readings a tick apart: the heap in use moved by less than
 * {@linkcode QUIET_DRIFT_BYTES}, so the thread allocated little and V8 collected nothing in
 * between. Under load the reading swings by megabytes a tick, so a busy thread is not paused.
 * `gc` is there only when V8 exposes it (`--v8-flags=--expose-gc`, as `deno task start` runs
 * the daemon); without it there is nothing to do.
 *
 * @module
 */

/** What a tick may see the heap in use move by and still call the thread quiet. */
export const QUIET_DRIFT_BYTES = 1 << 20;

/** How far the committed heap may grow past what the last collection left, unreclaimed. */
export const SLACK_BYTES = 8 << 20;

/** The heap's size now, as `Deno.memoryUsage()` gives it. */
export interface HeapReading {
  heapTotal: number;
  heapUsed: number;
}

/** A collection the tick made: the committed heap before and after, and how long it took. */
export interface QuietCollection {
  fromBytes: number;
  toBytes: number;
  ms: number;
}

/**
 * Makes a tick that collects when the heap is quiet and has grown by more than
 * {@linkcode SLACK_BYTES} since the last collection (or since the tick was made); returns the
 * collection, or null when it made none. Null when `gc` is not exposed.
 */
export function quietCollector(
  gc: (() => void) | undefined = (globalThis as { gc?: () => void }).gc,
  read: () => HeapReading = Deno.memoryUsage,
): (() => QuietCollection | null) | null {
  if (gc === undefined) return null;
  let { heapTotal: left, heapUsed: last } = read();
  return () => {
    const { heapTotal, heapUsed } = read();
    const quiet = Math.abs(heapUsed - last) < QUIET_DRIFT_BYTES;
    last = heapUsed;
    if (!quiet || heapTotal - left <= SLACK_BYTES) return null;
    const start = performance.now();
    gc();
    const ms = performance.now() - start;
    ({ heapTotal: left, heapUsed: last } = read());
    return { fromBytes: heapTotal, toBytes: left, ms };
  };
}
