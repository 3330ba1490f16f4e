import assert from "node:assert/strict";
import {
  COUNTERS,
  Histogram,
  HISTOGRAMS,
  newShardCounters,
  newShardHistograms,
} from "./counters.ts";
import { renderMetrics } from "./metrics.ts";
import { StatsBook } from "./report.ts";

/** Samples of a text exposition: `name{labels}` → value (labels as written). */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

Deno.test("metrics registry: names follow Prometheus conventions, a family is of one kind", () => {
  const families = new Map<string, { kind: string; labelSets: Set<string>; keys: string }>();
  for (const [name, spec] of Object.entries(COUNTERS)) {
    if (!spec.metric) continue;
    const family = spec.metric.family.name;
    assert.match(family, /^[a-z][a-z0-9_]*$/, name);
    if (spec.kind === "counter") assert.match(family, /_total$/, `${name}: a counter is _total`);
    else assert.doesNotMatch(family, /_total$/, `${name}: a gauge is not _total`);
    const labels = JSON.stringify(spec.metric.labels);
    const keys = JSON.stringify(Object.keys(spec.metric.labels).sort());
    const seen = families.get(family);
    if (!seen) {
      families.set(family, { kind: spec.kind, labelSets: new Set([labels]), keys });
      continue;
    }
    assert.equal(seen.kind, spec.kind, `${name}: ${family} mixes kinds`);
    assert.equal(seen.keys, keys, `${name}: ${family} mixes label names`);
    assert.ok(!seen.labelSets.has(labels), `${name}: ${family}${labels} twice`);
    assert.ok(spec.metric.family.help, `${name}: a family of several has its own help`);
    seen.labelSets.add(labels);
  }
  for (const spec of Object.values(HISTOGRAMS)) assert.match(spec.metric, /_seconds$/);
});

Deno.test("Histogram: a value goes in the first bucket whose bound it does not pass", () => {
  const histogram = new Histogram([0.01, 0.1, 1]);
  histogram.observe(0.01);
  histogram.observe(0.0100001);
  histogram.observe(0.5, 3);
  histogram.observe(7);
  assert.deepEqual(histogram.counts, [1, 1, 3, 1]);
  assert.ok(Math.abs(histogram.sum - (0.01 + 0.0100001 + 1.5 + 7)) < 1e-9);
});

Deno.test("renderMetrics: each shard's counters under its shard label, the front door's and the node's apart", () => {
  const book = new StatsBook();
  const a = newShardCounters();
  a.recv_msg = 3;
  a.tcp_connection_number = 2;
  a.redirect_number = 1;
  const b = newShardCounters();
  b.recv_msg = 4;
  b.store_up = 1;
  const histograms = newShardHistograms();
  histograms.delivery.observe(0.002, 5);
  histograms.delivery.observe(20);
  book.update(0, { counters: a, histograms, storeError: null });
  book.update(1, { counters: b, histograms: newShardHistograms(), storeError: null });
  book.frontDoor.redirect_number = 7;
  book.frontDoor.cluster_forwarded_ops = 9;
  book.frontDoor.recv_msg = 100; // not kept by the front door: never shown for it
  book.count("Pub");
  book.count("Pub");
  book.count('Odd"Name');
  book.count("Overloaded");

  const text = renderMetrics(book);
  const got = samples(text);
  assert.equal(got.get('ipush_client_messages_received_total{type="msg",shard="0"}'), 3);
  assert.equal(got.get('ipush_client_messages_received_total{type="msg",shard="1"}'), 4);
  assert.ok(!text.includes('type="msg",shard="front_door"'));
  assert.equal(got.get('ipush_connections{transport="tcp",shard="0"}'), 2);
  assert.equal(got.get('ipush_redirects_total{shard="front_door"}'), 7);
  assert.equal(got.get('ipush_redirects_total{shard="0"}'), 1);
  assert.equal(got.get('ipush_cluster_forwards_total{via="http"}'), 9);
  assert.equal(got.get('ipush_store_up{shard="1"}'), 1);
  assert.ok(!text.includes("connection_number"), "a counter without a series is /stats only");
  // Buckets are cumulative; +Inf and _count are every observation.
  assert.equal(got.get('ipush_delivery_latency_seconds_bucket{shard="0",le="0.001"}'), 0);
  assert.equal(got.get('ipush_delivery_latency_seconds_bucket{shard="0",le="0.0025"}'), 5);
  assert.equal(got.get('ipush_delivery_latency_seconds_bucket{shard="0",le="10"}'), 5);
  assert.equal(got.get('ipush_delivery_latency_seconds_bucket{shard="0",le="+Inf"}'), 6);
  assert.equal(got.get('ipush_delivery_latency_seconds_count{shard="0"}'), 6);
  assert.ok(Math.abs(got.get('ipush_delivery_latency_seconds_sum{shard="0"}')! - 20.01) < 1e-9);
  assert.equal(got.get('ipush_delivery_latency_seconds_count{shard="1"}'), 0);
  assert.equal(got.get('ipush_admin_requests_total{endpoint="Pub"}'), 2);
  assert.equal(got.get('ipush_admin_requests_total{endpoint="Odd\\"Name"}'), 1);
  assert.equal(got.get("ipush_admin_overloaded_total"), 1);
  assert.ok(!text.includes('endpoint="Overloaded"'));
  assert.ok(got.get("process_resident_memory_bytes")! > 0);
  // Every family is introduced once, by HELP then TYPE, before its samples.
  const heads = text.split("\n").filter((line) => line.startsWith("# TYPE "));
  assert.equal(new Set(heads).size, heads.length);
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const name = line.split(/[{ ]/)[0].replace(/_(bucket|sum|count)$/, "");
    const typeAt = text.indexOf(`# TYPE ${name} `);
    assert.ok(typeAt >= 0 && typeAt < text.indexOf(line), `${line} has no TYPE before it`);
  }
});
