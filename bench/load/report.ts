/**
 * What a run prints and keeps: a progress line per second, the final table, and the JSON
 * result file under `bench/results/`.
 *
 * @module
 */

import { mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import type { Counters } from "./ipc.ts";
import type { LatencySummary } from "./histogram.ts";

/** One second of the run as the progress line showed it. */
export interface TimelineEntry {
  t_s: number;
  phase: string;
  open: number;
  connected_per_s: number;
  failed: number;
  dropped: number;
  sent_per_s: number;
  /** Publish requests refused at the HTTP level (503 or 429). */
  refused_per_s: number;
  received_per_s: number;
  latency: LatencySummary;
  /** How far the generator was behind its schedule (p99 of the second's requests, ms). */
  lag_p99_ms: number | null;
  /** The server's RSS at the tick; null without its pid. */
  rss_kb: number | null;
  /**
   * The most frequent failure or drop reason so far, as `N× reason`; null while there is none.
   * In the line so that a long run's trouble is named while it runs, not only at its end.
   */
  top_reason: string | null;
}

/** Metric values of the final table; null when not measured. */
export type Metrics = Record<string, number | string | null>;

/** Rounds for display: integers as they are, others to 3 significant decimals. */
export function round(value: number): number {
  if (!Number.isFinite(value)) return value;
  if (Math.abs(value) >= 100) return Math.round(value);
  return Math.round(value * 1000) / 1000;
}

/** The per-second line. */
export function progressLine(e: TimelineEntry): string {
  const ms = (v: number | null) => v === null ? "-" : v.toFixed(v < 10 ? 2 : 0);
  return [
    `[${e.t_s.toFixed(0).padStart(4)}s ${e.phase.padEnd(9)}]`,
    `open ${e.open}`,
    `conn +${e.connected_per_s}/s`,
    `fail ${e.failed}`,
    `drop ${e.dropped}`,
    `| sent ${e.sent_per_s}/s`,
    `refused ${e.refused_per_s} req/s`,
    `recv ${e.received_per_s}/s`,
    `| lat ms p50 ${ms(e.latency.p50_ms)} p99 ${ms(e.latency.p99_ms)}`,
    `p999 ${ms(e.latency.p999_ms)}`,
    `behind p99 ${ms(e.lag_p99_ms)}`,
    `| rss ${e.rss_kb === null ? "-" : `${Math.round(e.rss_kb / 1024)} MB`}`,
    ...(e.top_reason === null ? [] : [`| most: ${e.top_reason}`]),
  ].join(" ");
}

/** The final two-column table. */
export function table(title: string, metrics: Metrics): string {
  const rows = Object.entries(metrics).map(([k, v]) => [k, v === null ? "-" : String(v)]);
  const w = Math.max(...rows.map(([k]) => k.length), 6);
  const vw = Math.max(...rows.map(([, v]) => v.length), 5);
  const rule = `+-${"-".repeat(w)}-+-${"-".repeat(vw)}-+`;
  return [
    title,
    rule,
    ...rows.map(([k, v]) => `| ${k.padEnd(w)} | ${v.padStart(vw)} |`),
    rule,
  ].join("\n");
}

/** Counters that were not all zero, for the result file and the table's tail. */
export function nonZero(c: Counters): Partial<Counters> {
  return Object.fromEntries(Object.entries(c).filter(([, v]) => v !== 0));
}

/** Default result path: `bench/results/<scenario>-<UTC timestamp>.json`. */
export function defaultOutPath(scenario: string, at: Date): string {
  const stamp = at.toISOString().replace(/\.\d+Z$/, "Z").replaceAll(":", "-");
  return fileURLToPath(new URL(`../results/${scenario}-${stamp}.json`, import.meta.url));
}

/** Writes the result JSON, creating the directory. */
export function writeResult(path: string, result: unknown): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, JSON.stringify(result, null, 2) + "\n");
}
