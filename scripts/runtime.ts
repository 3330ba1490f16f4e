/**
 * How a daemon's process is started: the V8 flags and environment that `deno task start`
 * gives it (deno.json, which cannot import this; `runtime_test.ts` holds the two together).
 * Whatever else starts a daemon (the test harness, the local cluster, the benches' floor and
 * the load generator's client processes) takes them from here, so that what it measures is
 * what runs in production.
 *
 * - `--expose-gc`: the main thread collects its heap once it has gone quiet
 *   (`src/node/quiet_gc.ts`).
 * - V8's memory reducer after 1 s instead of 30 s: a quiet isolate gives its empty pages back.
 * - `MALLOC_ARENA_MAX=2`: fewer glibc arenas keeping freed memory resident.
 *
 * @module
 */

/** The daemon's V8 flags, as one `deno run` argument. */
export const DAEMON_V8_FLAGS =
  "--v8-flags=--expose-gc,--gc-memory-reducer-start-delay-ms=1000,--memory-reducer-delay-ms=1000";

/** The daemon's environment, beside the caller's. */
export const DAEMON_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: "2" };
