/**
 * How cost grows, for ipush with its default store and for nchan, side by side: the sweeps of
 * the issue "Performance: ahead of nchan on the durable default", each a chart description
 * (`bench/plot.ts`'s JSON) and its PNG under `docs/plots/`.
 *
 * ```sh
 * flock /tmp/ipush-bench.lock deno run -A bench/curves.ts unicast   # delivered/s by subscribers
 * flock /tmp/ipush-bench.lock deno run -A bench/curves.ts fanout    # time to all by channel size
 * flock /tmp/ipush-bench.lock deno run -A bench/curves.ts latency   # p50/p99 by offered load
 * deno run -A bench/curves.ts --draw                               # PNGs from the saved JSON
 * ```
 *
 * Each point is one load run (`bench/versus.ts` `measure`: a fresh server a run), the sides
 * interleaved point by point. `latency` first finds each side's maximum (`--rate=max`), then
 * offers fractions of it, open-loop, latency counted from the scheduled send time. Flags:
 * `--sides=ipush-sqlite,nchan`, `--duration_sec`, `--warmup_sec` (as in `versus.ts`), `--rounds` (fanout: the median of that many
 * runs a point), `--out_dir` (default `docs/plots`); load flags after `--` go to every run.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { plot } from "./plot.ts";
import type { Chart } from "./plot.ts";
import { isSide, type LoadResult, measure, median, type Side, SIDES } from "./versus.ts";

/** Options of a sweep. */
interface CurveOptions {
  sides: Side[];
  durationSec: number;
  rounds: number;
  warmupSec: number;
  outDir: string;
  load: string[];
}

/** A sweep: the runs it makes and the chart it draws from them. */
type Sweep = (
  o: CurveOptions,
  run: (side: Side, args: string[]) => Promise<LoadResult>,
) => Promise<Chart>;

/** A colour a side, in the order of `--sides` (the start of `bench/plot.ts`'s palette). */
const SIDE_COLOURS = ["#2563eb", "#dc2626", "#059669"];
const SUBSCRIBERS = [1000, 3000, 10000];
const CHANNEL_SIZES = [100, 1000, 10000];
/** Fractions of a side's own maximum offered in the latency sweep. */
const LOAD_FRACTIONS = [0.1, 0.25, 0.5, 0.75, 0.9, 1];

/** Client processes for `n` connections: two at least, 10,000 connections each at most. */
function processes(n: number): string {
  return `--processes=${Math.max(2, Math.ceil(n / 10000))}`;
}

function figure(value: unknown): number | null {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

/** The points of a series: x with the figure, where the run gave one. */
function points(pairs: [number, number | null][]): [number, number][] {
  return pairs.filter((p): p is [number, number] => p[1] !== null);
}

const SWEEPS: Record<string, { file: string; sweep: Sweep }> = {
  unicast: {
    file: "unicast-subscribers",
    sweep: async (o, run) => {
      const series = new Map(o.sides.map((s) => [s, [] as [number, number | null][]]));
      for (const n of SUBSCRIBERS) {
        for (const side of o.sides) {
          const r = await run(side, [
            "unicast",
            "--rate=max",
            `--connections=${n}`,
            "--concurrency=32",
            processes(n),
            `--duration_sec=${o.durationSec}`,
          ]);
          series.get(side)!.push([n, figure(r.metrics.delivered_per_s)]);
        }
      }
      return {
        title: "Unicast, one POST a message (32 in flight): delivered messages/s by subscribers",
        x: { label: "subscribers online (log)", log: true },
        y: { label: "delivered messages/s" },
        series: o.sides.map((s) => ({ label: s, points: points(series.get(s)!) })),
      };
    },
  },
  fanout: {
    file: "fanout-time",
    sweep: async (o, run) => {
      const series = new Map(o.sides.map((s) => [s, [] as [number, number | null][]]));
      for (const n of CHANNEL_SIZES) {
        const times = new Map(o.sides.map((s) => [s, [] as number[]]));
        for (let round = 0; round < o.rounds; round++) {
          for (const side of o.sides) {
            const r = await run(side, [
              "fanout",
              `--connections=${n}`,
              "--rate=2",
              processes(n),
              `--duration_sec=${o.durationSec}`,
            ]);
            const ms = figure(r.metrics.time_to_all_ms);
            if (ms !== null) times.get(side)!.push(ms);
          }
        }
        for (const side of o.sides) series.get(side)!.push([n, median(times.get(side)!)]);
      }
      return {
        title: `Fan-out: one message to a channel, ms until every subscriber has it ` +
          `(median of ${o.rounds})`,
        x: { label: "channel members, all online (log)", log: true },
        y: { label: "ms until the last subscriber read it (log)", log: true },
        series: o.sides.map((s) => ({ label: s, points: points(series.get(s)!) })),
      };
    },
  },
  latency: {
    file: "latency-load",
    sweep: async (o, run) => {
      const unicast = (side: Side, rate: string) =>
        run(side, [
          "unicast",
          `--rate=${rate}`,
          "--connections=1000",
          "--concurrency=32",
          "--processes=2",
          `--duration_sec=${o.durationSec}`,
        ]);
      const max = new Map<Side, number>();
      for (const side of o.sides) {
        const perS = figure((await unicast(side, "max")).metrics.delivered_per_s);
        if (perS === null) throw new Error(`${side}: no maximum measured`);
        max.set(side, perS);
      }
      const p50 = new Map(o.sides.map((s) => [s, [] as [number, number | null][]]));
      const p99 = new Map(o.sides.map((s) => [s, [] as [number, number | null][]]));
      for (const fraction of LOAD_FRACTIONS) {
        for (const side of o.sides) {
          const rate = Math.round(max.get(side)! * fraction);
          const r = await unicast(side, String(rate));
          p50.get(side)!.push([rate, r.latency.p50_ms]);
          p99.get(side)!.push([rate, r.latency.p99_ms]);
        }
      }
      return {
        title: "Unicast latency, publish (scheduled) → delivered, by offered load, 1,000 " +
          "subscribers",
        x: { label: "offered messages/s (10 % … 100 % of each side's own maximum)" },
        y: { label: "ms (log)", log: true },
        // A side one colour: its p99 solid, its p50 dashed.
        series: o.sides.flatMap((s, i) => [
          { label: `${s} p99`, points: points(p99.get(s)!), colour: SIDE_COLOURS[i] },
          { label: `${s} p50`, points: points(p50.get(s)!), colour: SIDE_COLOURS[i], dash: [6, 4] },
        ]),
      };
    },
  },
};

/** Runs one sweep, writes its chart description and draws it. */
async function curve(name: string, o: CurveOptions): Promise<void> {
  const { file, sweep } = SWEEPS[name];
  const results = `${o.outDir}/${file}-runs`;
  await Deno.mkdir(results, { recursive: true });
  let n = 0;
  const chart = await sweep(o, async (side, args) => {
    const out = `${results}/${String(++n).padStart(2, "0")}-${side}.json`;
    const r = await measure(side, [...args, ...o.load], out, o.warmupSec);
    console.log(
      `${name} ${side} ${args.join(" ")}: ${r.status}, ` +
        `${r.metrics.delivered_per_s} delivered/s, p50/p99 ${r.latency.p50_ms}/` +
        `${r.latency.p99_ms} ms, time to all ${r.metrics.time_to_all_ms ?? "-"} ms, ` +
        `missing ${r.metrics.missing_after_drain}`,
    );
    // The full result stays out of the tree; the chart's JSON keeps what it shows.
    await Deno.remove(out);
    return r;
  });
  await Deno.remove(results, { recursive: true });
  await Deno.writeTextFile(`${o.outDir}/${file}.json`, JSON.stringify(chart, null, 2) + "\n");
  await plot(chart, `${o.outDir}/${file}.png`);
  console.log(`wrote ${o.outDir}/${file}.json and .png`);
}

if (import.meta.main) {
  const dash = Deno.args.indexOf("--");
  const { values, positionals } = parseArgs({
    args: dash < 0 ? Deno.args : Deno.args.slice(0, dash),
    allowPositionals: true,
    options: {
      sides: { type: "string", default: "ipush-sqlite,nchan" },
      duration_sec: { type: "string", default: "5" },
      rounds: { type: "string", default: "3" },
      warmup_sec: { type: "string", default: "5" },
      out_dir: { type: "string", default: new URL("../docs/plots", import.meta.url).pathname },
      draw: { type: "boolean", default: false },
    },
  });
  const sides = values.sides.split(",");
  const unknown = [
    ...positionals.filter((p) => !(p in SWEEPS)),
    ...sides.filter((s) => !isSide(s)),
  ];
  if (unknown.length > 0 || (positionals.length === 0 && !values.draw)) {
    console.error(
      `curves: give sweeps (${Object.keys(SWEEPS).join(", ")}) or --draw; ` +
        `sides: ${Object.keys(SIDES).join(", ")}${unknown.length ? `; unknown: ${unknown}` : ""}`,
    );
    Deno.exit(64);
  }
  const o: CurveOptions = {
    sides: sides as Side[],
    durationSec: Number(values.duration_sec),
    rounds: Number(values.rounds),
    warmupSec: Number(values.warmup_sec),
    outDir: values.out_dir,
    load: dash < 0 ? [] : Deno.args.slice(dash + 1),
  };
  await Deno.mkdir(o.outDir, { recursive: true });
  if (values.draw) {
    for (const { file } of Object.values(SWEEPS)) {
      const json = `${o.outDir}/${file}.json`;
      const chart = await Deno.readTextFile(json).then(JSON.parse, () => null);
      if (chart !== null) await plot(chart, `${o.outDir}/${file}.png`);
      console.log(chart === null ? `no ${json}` : `drew ${o.outDir}/${file}.png`);
    }
  }
  for (const name of positionals) await curve(name, o);
}
