/**
 * How long the server takes to be back to normal after a load phase: a probe `/pub` every
 * {@linkcode PROBE_EVERY_MS}, and the server is back once {@linkcode RECOVERED_AFTER} probes in
 * a row answered ok within {@linkcode PROBE_DEADLINE_MS}. The time reported is from the end of
 * the load to the first probe of that run.
 *
 * A probe judges the admin path (accepted and stored: `/pub` answers ok once the message is
 * durable), not its delivery, which would need the client processes to report it back; for a
 * uid that is online the delivery follows the store at once.
 *
 * @module
 */

import { nowMs } from "./ipc.ts";

/** A probe goes out this often while the answers are quick. */
export const PROBE_EVERY_MS = 50;
/** A probe answered later than this does not count as normal. */
export const PROBE_DEADLINE_MS = 100;
/** Consecutive quick oks that mean the server is back. */
export const RECOVERED_AFTER = 5;

/** What the probes found. */
export interface Recovery {
  /** From the end of the load to the first probe of the quick run; null if none in time. */
  afterMs: number | null;
  /** How many probes ended how: "ok", "slow" (no answer within the deadline), or as `probe` said. */
  outcomes: Record<string, number>;
}

/**
 * Probes from now until the server is back, or for `limitMs`, measuring from `fromMs` (epoch
 * ms, the end of the load). `probe` resolves "ok" for an ok answer, else a short word on what
 * it got (e.g. "HTTP 503"); a rejection counts as "error".
 */
export async function timeToRecover(
  probe: () => Promise<string>,
  fromMs: number,
  limitMs: number,
): Promise<Recovery> {
  const outcomes: Record<string, number> = {};
  let runFrom = 0;
  let run = 0;
  for (let slot = fromMs; nowMs() - fromMs <= limitMs;) {
    await sleep(slot - nowMs());
    const sentAt = nowMs();
    const outcome = await withDeadline(probe());
    outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
    if (outcome === "ok") {
      if (run++ === 0) runFrom = sentAt;
      if (run === RECOVERED_AFTER) return { afterMs: Math.max(0, runFrom - fromMs), outcomes };
    } else run = 0;
    // The next slot not yet passed: a slow probe is not followed by a burst of catch-up ones.
    slot += PROBE_EVERY_MS * Math.max(1, Math.ceil((nowMs() - slot) / PROBE_EVERY_MS));
  }
  return { afterMs: null, outcomes };
}

/** `answer`, or "slow" past the deadline (the answer is left to finish alone). */
function withDeadline(answer: Promise<string>): Promise<string> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<string>((r) => timer = setTimeout(() => r("slow"), PROBE_DEADLINE_MS));
  return Promise.race([answer.catch(() => "error"), late]).finally(() => clearTimeout(timer));
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, Math.max(0, ms)));
}
