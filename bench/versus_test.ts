/**
 * Tests of `bench/versus.ts`: its command line, the median and the table, and one tiny
 * interleaved run against a real daemon (sqlite and memory store) and a real nchan.
 *
 *     deno test --allow-all bench/versus_test.ts
 *
 * @module
 */

import assert from "node:assert/strict";
import { median, parseVersus, type Summary, summaryTable, versus } from "./versus.ts";

Deno.test("versus: the command line, with its refusals", () => {
  const o = parseVersus(["unicast,fanout", "--rounds=2", "--", "--source_addrs=0"]);
  assert.deepEqual([o.rows, o.rounds, o.durationSec, o.connections], [
    ["unicast", "fanout"],
    2,
    10,
    1000,
  ]);
  assert.deepEqual(o.load, ["--source_addrs=0"]);
  assert.match(o.out, /bench\/results\/versus-.*\.json$/);
  assert.deepEqual(parseVersus([]).rows, ["unicast", "fanout", "latency"]);
  assert.throws(() => parseVersus(["chat"]), /no row chat/);
  assert.throws(() => parseVersus(["latency"]), /needs the unicast row in the same run, or --rate/);
  assert.equal(parseVersus(["latency", "--rate=5000"]).rate, 5000);
  assert.throws(() => parseVersus(["--rounds=0"]), /--rounds must be a positive integer/);
  assert.deepEqual(parseVersus([]).sides, ["ipush-sqlite", "ipush-memory", "nchan", "floor"]);
  assert.deepEqual(parseVersus(["--sides=floor,nchan"]).sides, ["nchan", "floor"], "run in order");
  assert.throws(() => parseVersus(["--sides=floor"]), /nchan too/);
  assert.throws(() => parseVersus(["--sides=nchan,nginx"]), /no side nginx/);
});

Deno.test("versus: medians, and ratios to nchan in the table", () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 2, 3]), 2.5);
  assert.equal(median([]), null);
  const summary: Summary[] = [{
    row: "unicast",
    title: "unicast",
    unit: "delivered/s",
    rate: null,
    medians: { "ipush-sqlite": 7000, "ipush-memory": 14800, nchan: 28200 },
    ratios: { "ipush-sqlite": 0.25, "ipush-memory": 0.52, nchan: 1 },
    cpu_medians: { "ipush-sqlite": 90, "ipush-memory": 60, nchan: 30 },
    cpu_ratios: { "ipush-sqlite": 3, "ipush-memory": 2, nchan: 1 },
  }];
  const table = summaryTable(summary, 3);
  assert.match(table, /ipush-sqlite \(median of 3\)/);
  assert.match(table, /\|\s+7,000 \|\s+14,800 \|\s+28,200 \|\s+0\.25× \|\s+0\.52× \|/);
  assert.match(
    table,
    /server CPU µs a delivery\s+\|\s+90 \|\s+60 \|\s+30 \|\s+3\.00× \|\s+2\.00× \|/,
  );
});

Deno.test("versus: a tiny run, four sides interleaved, each measured and compared", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ipush-versus-" });
  try {
    const lines: string[] = [];
    const o = parseVersus([
      "unicast",
      "--rounds=1",
      "--duration_sec=1",
      "--warmup_sec=0.5",
      "--connections=20",
      `--out=${dir}/versus.json`,
      "--",
      "--processes=1",
      "--source_addrs=0",
      "--drain_sec=2",
      "--recover_sec=2",
    ]);
    const { runs, summary } = await versus(o, (line) => lines.push(line));
    assert.deepEqual(runs.map((r) => r.side), ["ipush-sqlite", "ipush-memory", "nchan", "floor"]);
    for (const run of runs) {
      assert.equal(run.status, "ok", JSON.stringify(run));
      assert.ok(run.figure! > 0, `${run.side} delivered ${run.figure}/s`);
      assert.equal(run.missing_after_drain, 0, `${run.side} lost nothing`);
      assert.ok(run.cpu_us! > 0, `${run.side}: the server's CPU a delivery, ${run.cpu_us} µs`);
      const result = JSON.parse(await Deno.readTextFile(run.result));
      assert.equal(result.options.target, run.side.startsWith("ipush") ? "ipush" : "nchan");
    }
    assert.equal(lines.length, 4, "a line a run");
    const [row] = summary;
    assert.equal(row.ratios.nchan, 1);
    const expected = Math.round(runs[0].figure! / runs[2].figure! * 100) / 100;
    assert.equal(row.ratios["ipush-sqlite"], expected, "sqlite over nchan in the same run");
    const written = JSON.parse(await Deno.readTextFile(`${dir}/versus.json`));
    assert.deepEqual(written.summary, summary);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
