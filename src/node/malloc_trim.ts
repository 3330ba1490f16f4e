/**
 * Gives memory that native code has freed back to the kernel. glibc returns a free chunk to
 * the kernel only when it lies at the top of an arena, so after a burst of connections (the
 * front door's handshakes, each socket's read and write state) the process keeps pages that
 * hold nothing: ~0.6 KB a connection at 19,000 idle connections here, 12% of the daemon's
 * RSS (docs/performance.md). `malloc_trim(0)` releases the free pages of every arena; it took
 * 0.4–3 ms a call on this machine.
 *
 * @module
 */

import type { Log } from "../core/log.ts";
import type { QuietCollection } from "./quiet_gc.ts";

/** Calls `malloc_trim(0)`; says whether any memory went back to the kernel. */
export type MallocTrim = () => boolean;

/**
 * Binds glibc's `malloc_trim`; null where there is none (another C library or system) or
 * where FFI is not permitted, in which case there is nothing to do.
 */
export function openMallocTrim(): MallocTrim | null {
  let libc;
  try {
    libc = Deno.dlopen("libc.so.6", { malloc_trim: { parameters: ["usize"], result: "i32" } });
  } catch {
    return null;
  }
  return () => libc.symbols.malloc_trim(0n) === 1;
}

/**
 * Trims the heap every `intervalSec` (0: never), after `collect` (the main thread's quiet
 * collection, whose freed buffers the trim then returns). One process-wide call covers the
 * workers' arenas too, so only the main thread does it.
 */
export function startMallocTrim(
  intervalSec: number,
  log: Log,
  collect: (() => QuietCollection | null) | null = null,
): ReturnType<typeof setInterval> | undefined {
  if (intervalSec === 0) return undefined;
  const trim = openMallocTrim();
  if (!trim) {
    log("debug", "no glibc malloc_trim here (or no --allow-ffi): heap trimming is off");
  }
  if (!collect) log("debug", "no gc() (run with --v8-flags=--expose-gc): no quiet collection");
  if (!trim && !collect) return undefined;
  return setInterval(() => {
    const collection = collect?.();
    if (collection) {
      const mb = (bytes: number) => (bytes / 1e6).toFixed(1);
      log(
        "debug",
        `main thread quiet: heap collected, ${mb(collection.fromBytes)} -> ` +
          `${mb(collection.toBytes)} MB committed in ${collection.ms.toFixed(1)} ms`,
      );
    }
    trim?.();
  }, intervalSec * 1000);
}
