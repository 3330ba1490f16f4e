/**
 * What the metrics cost where they run: a shard's histogram observation (on the delivery
 * path), and rendering `/metrics` for a node of 2 and of 8 shards (on the main thread, once
 * a scrape). `deno bench -A bench/metrics_bench.ts`; the end-to-end overhead of scraping under
 * load is `bench/metrics_overhead.ts`.
 *
 * @module
 */

import { newShardCounters, newShardHistograms } from "../src/stats/counters.ts";
import { renderMetrics } from "../src/stats/metrics.ts";
import { StatsBook } from "../src/stats/report.ts";

function book(shards: number): StatsBook {
  const stats = new StatsBook();
  for (let k = 0; k < shards; k++) {
    const counters = newShardCounters();
    for (const name of Object.keys(counters) as (keyof typeof counters)[]) {
      counters[name] = 1_000_000 + k;
    }
    const histograms = newShardHistograms();
    for (let i = 0; i < 1000; i++) histograms.delivery.observe(i / 1000, 7);
    stats.update(k, { counters, histograms, storeError: null });
  }
  for (const name of ["Pub", "PubBatch", "Stats", "Metrics", "Sub"]) stats.count(name);
  return stats;
}

const TWO = book(2);
const EIGHT = book(8);
const histogram = newShardHistograms().delivery;
let latency = 0;

Deno.bench("Histogram.observe (a batch of deliveries)", () => {
  latency = (latency + 0.00137) % 0.2;
  histogram.observe(latency, 50);
});

Deno.bench("renderMetrics, 2 shards", { group: "render" }, () => {
  renderMetrics(TWO);
});

Deno.bench("renderMetrics, 8 shards", { group: "render" }, () => {
  renderMetrics(EIGHT);
});
