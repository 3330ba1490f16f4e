/**
 * `/metrics`: the stats book in Prometheus' text exposition format (version 0.0.4), rendered
 * from the counter registry (`counters.ts`): every counter with a series there, shard by
 * shard (the `shard` label: the shard's index within the node, or `front_door` for the main
 * thread's client port), the histograms, the admin requests by endpoint, and the two process
 * metrics every exporter has. Names carry the `ipush_` prefix, counters end in `_total`, and
 * values are in base units (seconds, bytes).
 *
 * A shard that was restarted starts its counters from zero again: Prometheus takes that as
 * the counter reset it is (`rate()` handles it), while `/stats` keeps the node's totals.
 *
 * @module
 */

import {
  type CounterName,
  COUNTERS,
  type CounterScope,
  type Family,
  type HistogramData,
  type HistogramName,
  HISTOGRAMS,
  type ShardCounters,
} from "./counters.ts";
import type { StatsBook } from "./report.ts";

/** The content type Prometheus expects of the text format. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

const PREFIX = "ipush_";
/** The `shard` label of the main thread's own client port. */
const FRONT_DOOR = "front_door";

/** A family's counters, in declaration order. */
interface Group {
  family: Family;
  names: CounterName[];
}

/** The families of the registry, in declaration order (computed once). */
const GROUPS: Group[] = (() => {
  const groups = new Map<string, Group>();
  for (const name of Object.keys(COUNTERS) as CounterName[]) {
    const series = COUNTERS[name].metric;
    if (!series) continue;
    const key = series.family.name;
    let group = groups.get(key);
    if (!group) groups.set(key, group = { family: series.family, names: [] });
    group.names.push(name);
  }
  return [...groups.values()];
})();

/** Renders `book` (whose shard reports should be fresh) as Prometheus text. */
export function renderMetrics(book: StatsBook): string {
  const out: string[] = [];
  type Source = [Record<string, string>, ShardCounters];
  const shards = [...book.shards()].map(([k, report]): Source => [
    { shard: String(k) },
    report.counters,
  ]);
  const sources: Record<CounterScope, Source[]> = {
    shard: shards,
    port: [[{ shard: FRONT_DOOR }, book.frontDoor], ...shards],
    node: [[{}, book.frontDoor]],
  };
  for (const { family, names } of GROUPS) {
    const first = COUNTERS[names[0]];
    const samples: string[] = [];
    for (const name of names) {
      const { metric, scope } = COUNTERS[name];
      for (const [where, counters] of sources[scope]) {
        samples.push(sample(family.name, { ...metric!.labels, ...where }, counters[name]));
      }
    }
    if (samples.length === 0) continue;
    out.push(...head(family.name, family.help ?? first.help, first.kind), ...samples);
  }
  for (const name of Object.keys(HISTOGRAMS) as HistogramName[]) {
    const { metric, help, bounds } = HISTOGRAMS[name];
    const samples: string[] = [];
    for (const [k, report] of book.shards()) {
      samples.push(...histogramSamples(metric, bounds, report.histograms[name], String(k)));
    }
    if (samples.length > 0) out.push(...head(metric, help, "histogram"), ...samples);
  }
  const { Overloaded: overloaded = 0, ...requests } = book.requests;
  out.push(...head("admin_requests_total", "admin API requests, by endpoint", "counter"));
  for (const [endpoint, count] of Object.entries(requests)) {
    out.push(sample("admin_requests_total", { endpoint }, count));
  }
  out.push(
    ...head(
      "admin_overloaded_total",
      "admin requests refused with 503 overloaded (admission control)",
      "counter",
    ),
    sample("admin_overloaded_total", {}, overloaded),
    "# HELP process_resident_memory_bytes Resident memory size in bytes.",
    "# TYPE process_resident_memory_bytes gauge",
    `process_resident_memory_bytes ${Deno.memoryUsage().rss}`,
    "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.",
    "# TYPE process_start_time_seconds gauge",
    `process_start_time_seconds ${book.started.getTime() / 1000}`,
  );
  return out.join("\n") + "\n";
}

function head(name: string, help: string, type: string): string[] {
  const text = help.replaceAll("\\", "\\\\").replaceAll("\n", "\\n");
  return [`# HELP ${PREFIX}${name} ${text}`, `# TYPE ${PREFIX}${name} ${type}`];
}

function sample(name: string, labels: Record<string, string>, value: number): string {
  return `${PREFIX}${name}${labelText(labels)} ${number(value)}`;
}

/** A histogram's cumulative buckets, sum and count, for one shard. */
function histogramSamples(
  name: string,
  bounds: readonly number[],
  data: HistogramData,
  shard: string,
): string[] {
  const samples: string[] = [];
  let cumulative = 0;
  bounds.forEach((bound, i) => {
    cumulative += data.counts[i];
    samples.push(sample(`${name}_bucket`, { shard, le: number(bound) }, cumulative));
  });
  cumulative += data.counts[bounds.length];
  samples.push(
    sample(`${name}_bucket`, { shard, le: "+Inf" }, cumulative),
    sample(`${name}_sum`, { shard }, data.sum),
    sample(`${name}_count`, { shard }, cumulative),
  );
  return samples;
}

function labelText(labels: Record<string, string>): string {
  const pairs = Object.entries(labels).map(([key, value]) =>
    `${key}="${value.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n")}"`
  );
  return pairs.length === 0 ? "" : `{${pairs.join(",")}}`;
}

function number(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}
