/**
 * ipush side by side with nchan, in one run: each row of the issue "Performance: ahead of
 * nchan on the durable default" is measured with the load generator against ipush with its
 * default store (`--storage=sqlite`), ipush with `--storage=memory` and nchan, interleaved
 * (sqlite, memory, nchan, then again, `--rounds` times) so that the drift of a shared machine
 * falls on all three alike; then a table of each side's median and its ratio to nchan's median
 * in the same run.
 *
 * ```sh
 * flock /tmp/ipush-bench.lock deno run -A bench/versus.ts [unicast,fanout,latency|idle] \
 *   [--rounds=3] [--duration_sec=10] [--warmup_sec=5] [--connections=1000] [--rate=N] \
 *   [--sides=ipush-sqlite,ipush-memory,nchan,floor] \
 *   [-- load flags ...]
 * ```
 *
 * Every run gets a fresh server: the daemon as `tests/harness.ts` starts it (the README's
 * flags: `conf/default.conf`, 2 workers, the start task's V8 flags and `MALLOC_ARENA_MAX=2`),
 * or an nchan (`scripts/nchan.ts`), warmed up by `--warmup_sec` (default 5) of the same load
 * before the measured run: a fresh daemon's first ~30,000 `/pub`s cost it up to twice what
 * later ones do (V8 is still compiling); `idle` is never warmed up, but
 * settles (`IDLE_SETTLE_MS`). `latency` offers half of
 * ipush-sqlite's median maximum from this run's `unicast` row (or `--rate` when that row is
 * not run) to every side. Load flags after `--` go to every run. The summary goes to
 * `bench/results/versus-<time>.json` (or `--out`), each run's full result beside it in
 * `bench/results/versus-<time>/`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { startDaemon } from "../tests/harness.ts";
import { startNchan } from "../scripts/nchan.ts";
import { startFloor } from "./floor.ts";
import { defaultOutPath, writeResult } from "./load/report.ts";

/**
 * The servers compared, in the order each round runs them: the daemon with its flags, the
 * peer, and `floor`, nchan's job done by the bare runtime (`bench/floor.ts` `startFloor`: one
 * thread, one `node:net` server, no store, no acks), which shows what any Deno server pays
 * against nchan on the same box.
 */
export const SIDES = {
  "ipush-sqlite": ["--storage=sqlite"],
  "ipush-memory": ["--storage=memory"],
  nchan: null,
  floor: null,
} as const;

/** A side's name. */
export type Side = keyof typeof SIDES;

/** Whether `name` is a side's (for the `--sides` of this and `curves.ts`). */
export function isSide(name: string): name is Side {
  return name in SIDES;
}

/** What a load run's result file holds, as far as this reads it. */
export interface LoadResult {
  status: string;
  metrics: Record<string, number | string | null>;
  latency: { count: number; p50_ms: number | null; p99_ms: number | null };
}

const LOAD = new URL("./load.ts", import.meta.url).pathname;

/** A server of one side, started for a run. */
interface Server {
  /** Load generator flags that point it at the server. */
  flags: string[];
  stop(): Promise<unknown>;
}

async function startSide(side: Side): Promise<Server> {
  if (side === "nchan") {
    const nchan = await startNchan();
    return {
      flags: ["--target=nchan", `--url=${nchan.url}`, `--server_pid=${await nchan.workerPid()}`],
      stop: nchan.stop,
    };
  }
  if (side === "floor") {
    const floor = await startFloor();
    return {
      flags: ["--target=nchan", `--url=${floor.url}`, `--server_pid=${floor.pid}`],
      stop: floor.stop,
    };
  }
  const daemon = await startDaemon([...SIDES[side]]);
  return {
    flags: [
      `--client_port=${daemon.clientPort}`,
      `--admin_port=${daemon.adminPort}`,
      `--pid_file=${daemon.pidFile}`,
    ],
    stop: () => daemon.stop(),
  };
}

/**
 * Runs the load generator with `args` (a scenario, its flags and the target's), its result
 * written to `out`; resolves with that result, whatever its status, and rejects, naming
 * `what` ran, only when it left none.
 */
export async function runLoad(args: string[], out: string, what: string): Promise<LoadResult> {
  const { stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", LOAD, ...args, `--out=${out}`],
    stdout: "null",
    stderr: "piped",
  }).output();
  try {
    return JSON.parse(await Deno.readTextFile(out));
  } catch {
    throw new Error(`${what}: no result from the load generator:\n${decode(stderr)}`);
  }
}

/**
 * One run of the load generator (`args`: the scenario and its flags) against a fresh server
 * of `side`, after a warm-up of `warmupSec` with the same load (unmeasured: a fresh daemon's
 * code is not compiled yet, and a server users run has long been running), or after
 * `settleMs` of nothing; resolves with the measured run's result, whatever its status, and
 * rejects only when it left none.
 */
export async function measure(
  side: Side,
  args: string[],
  out: string,
  warmupSec = 0,
  settleMs = 0,
): Promise<LoadResult> {
  const server = await startSide(side);
  await new Promise((resolve) => setTimeout(resolve, settleMs));
  const load = (extra: string[], path: string) =>
    runLoad([...args, ...server.flags, ...extra], path, side);
  try {
    if (warmupSec > 0) {
      const warmup = `${out}.warmup`;
      await load([`--duration_sec=${warmupSec}`], warmup);
      await Deno.remove(warmup);
    }
    return await load([], out);
  } finally {
    await server.stop();
  }
}

/** The median of `values` (null for none). */
export function median(values: number[]): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length / 2;
  return sorted.length % 2 === 1
    ? sorted[Math.floor(middle)]
    : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** Options of a comparison. */
export interface VersusOptions {
  rows: RowName[];
  /** The sides run, in `SIDES`' order; nchan always, as every ratio is to it. */
  sides: Side[];
  rounds: number;
  durationSec: number;
  /** Unmeasured load before each measured run, same server (0: none). */
  warmupSec: number;
  connections: number;
  /** Offered msgs/s of the latency row when the unicast row is not run. */
  rate: number | null;
  /** Flags for every load run. */
  load: string[];
  out: string;
}

/** A row of the table: what is run, and which figure of the result it shows. */
interface Row {
  title: (o: VersusOptions, rate: number | null) => string;
  unit: string;
  /** True when more is better (ratios then read "times as much"). */
  higher: boolean;
  args: (o: VersusOptions, rate: number | null) => string[];
  figure: (r: LoadResult) => number | null;
}

const perS = (r: LoadResult) => numeric(r.metrics.delivered_per_s);

/**
 * How long an idle row's server runs before the generator reads its RSS without
 * connections. A fresh daemon holds its start-up's garbage for its first seconds (118.6 MB
 * for 4 s after it serves, 103.5 MB from 7 s on: V8's memory reducer and the first heap trim
 * at 10 s); a base read before that took ~0.8 KB off every connection at 19,000.
 */
const IDLE_SETTLE_MS = 12_000;

/** A row's name. */
export type RowName = "unicast" | "fanout" | "latency" | "idle";

/** A scenario at the highest rate the target takes, 32 `/pub`s in flight from 2 processes. */
function atMaxRate(scenario: string, o: VersusOptions): string[] {
  return [
    scenario,
    "--rate=max",
    `--connections=${o.connections}`,
    "--concurrency=32",
    "--processes=2",
    `--duration_sec=${o.durationSec}`,
  ];
}

/** The rows, the issue's "What must be shown" (and the idle figure of its table). */
export const ROWS = {
  unicast: {
    title: (o) => `unicast, one /pub a message, ${format(o.connections)} subscribers`,
    unit: "delivered/s",
    higher: true,
    args: (o) => atMaxRate("unicast", o),
    figure: perS,
  },
  fanout: {
    title: (o) => `channel of ${format(o.connections)} subscribers, one /pub a message`,
    unit: "deliveries/s",
    higher: true,
    args: (o) => atMaxRate("fanout", o),
    figure: perS,
  },
  latency: {
    title: (o, rate) =>
      `unicast p99 publish→deliver at ${format(rate)} msgs/s (` +
      (o.rows.includes("unicast") ? "half ipush-sqlite's max in this run" : "--rate") +
      `), ${format(o.connections)} subscribers`,
    unit: "ms",
    higher: false,
    args: (o, rate) => [
      "unicast",
      `--rate=${rate}`,
      `--connections=${o.connections}`,
      "--concurrency=32",
      "--processes=2",
      `--duration_sec=${o.durationSec}`,
    ],
    figure: (r) => r.latency.p99_ms,
  },
  idle: {
    title: (o) => `idle RSS a connection, ${format(o.connections)} connections, after a 30 s hold`,
    unit: "KB",
    higher: false,
    // Long enough for what a server gives back once quiet (the daemon's main thread collects
    // its heap within two 10 s trim ticks), and for a heartbeat from most clients.
    args: (o) => ["idle", `--connections=${o.connections}`, "--hold_sec=30"],
    figure: (r) => numeric(r.metrics.server_rss_per_conn_kb_after_hold),
  },
} satisfies Record<RowName, Row>;

/** One measured run. */
export interface RunRecord {
  row: RowName;
  round: number;
  side: Side;
  status: string;
  figure: number | null;
  /** The server's CPU time over the load, per message delivered. */
  cpu_us: number | null;
  missing_after_drain: number | null;
  result: string;
}

/** What the comparison concludes: per row, each side's median and its ratio to nchan's. */
export interface Summary {
  row: RowName;
  title: string;
  unit: string;
  rate: number | null;
  medians: Partial<Record<Side, number | null>>;
  /** A side's median over nchan's (for "ms" and "KB", less is better). */
  ratios: Partial<Record<Side, number | null>>;
  /** Medians of the server's CPU µs a delivery, and their ratios to nchan's. */
  cpu_medians: Partial<Record<Side, number | null>>;
  cpu_ratios: Partial<Record<Side, number | null>>;
}

/** Runs the comparison; returns the runs and the summary (also written to `o.out`). */
export async function versus(
  o: VersusOptions,
  log: (line: string) => void = console.log,
): Promise<{ runs: RunRecord[]; summary: Summary[] }> {
  const dir = o.out.replace(/\.json$/, "");
  await Deno.mkdir(dir, { recursive: true });
  const runs: RunRecord[] = [];
  const summary: Summary[] = [];
  for (const row of o.rows) {
    const spec: Row = ROWS[row];
    const rate = row === "latency" ? latencyRate(summary, o) : null;
    for (let round = 1; round <= o.rounds; round++) {
      for (const side of o.sides) {
        const result = `${dir}/${row}-${side}-${round}.json`;
        // Not idle: a warm-up's connections leave RSS that is not given back (nchan, the floor),
        // and the measured run would find them already paid for (~0 KB a connection).
        const warmup = row === "idle" ? 0 : o.warmupSec;
        const settle = row === "idle" ? IDLE_SETTLE_MS : 0;
        const r = await measure(side, [...spec.args(o, rate), ...o.load], result, warmup, settle);
        const record: RunRecord = {
          row,
          round,
          side,
          status: r.status,
          figure: r.status === "ok" ? spec.figure(r) : null,
          cpu_us: r.status === "ok" ? numeric(r.metrics.server_cpu_us_per_delivered) : null,
          missing_after_drain: numeric(r.metrics.missing_after_drain),
          result,
        };
        runs.push(record);
        log(
          `${row} round ${round} ${side.padEnd(12)} ${
            record.status === "ok" ? "" : `${r.status} `
          }` +
            `${format(record.figure)} ${spec.unit}` +
            (record.cpu_us === null ? "" : `, ${format(record.cpu_us)} µs server CPU a delivery`) +
            (record.missing_after_drain ? `, ${record.missing_after_drain} missing` : ""),
        );
      }
    }
    const ofRow = runs.filter((r) => r.row === row);
    const [medians, ratios] = compare(o.sides, ofRow, (r) => r.figure);
    const [cpuMedians, cpuRatios] = compare(o.sides, ofRow, (r) => r.cpu_us);
    summary.push({
      row,
      title: spec.title(o, rate),
      unit: spec.unit,
      rate,
      medians,
      ratios,
      cpu_medians: cpuMedians,
      cpu_ratios: cpuRatios,
    });
  }
  writeResult(o.out, { started_at: new Date().toISOString(), options: o, summary, runs });
  return { runs, summary };
}

/** Each side's median of `value` over `runs`, and its ratio to nchan's median. */
function compare(
  sides: Side[],
  runs: RunRecord[],
  value: (r: RunRecord) => number | null,
): [Partial<Record<Side, number | null>>, Partial<Record<Side, number | null>>] {
  const medians: Partial<Record<Side, number | null>> = {};
  const ratios: Partial<Record<Side, number | null>> = {};
  for (const side of sides) {
    const values = runs.filter((r) => r.side === side).map(value);
    medians[side] = median(values.filter((v): v is number => v !== null));
  }
  for (const side of sides) {
    const own = medians[side];
    ratios[side] = own == null || !medians.nchan
      ? null
      : Math.round((own / medians.nchan) * 100) / 100;
  }
  return [medians, ratios];
}

/** Half of ipush-sqlite's median maximum measured in this run, else `--rate`. */
function latencyRate(summary: Summary[], o: VersusOptions): number {
  const max = summary.find((s) => s.row === "unicast")?.medians["ipush-sqlite"];
  if (max) return Math.round(max / 2);
  if (o.rate === null) throw new Error("latency: no ipush-sqlite maximum to halve, and no --rate");
  return o.rate;
}

/** The summary as a text table: medians and ratios to nchan. */
export function summaryTable(summary: Summary[], rounds: number): string {
  const sides = Object.keys(summary[0]?.medians ?? {}) as Side[];
  const header = [
    "row",
    ...sides.map((s) => `${s} (median of ${rounds})`),
    ...sides.filter((s) => s !== "nchan").map((s) => `${s} / nchan`),
  ];
  const cells = (title: string, medians: Summary["medians"], ratios: Summary["ratios"]) => [
    title,
    ...sides.map((side) => format(medians[side] ?? null)),
    ...sides.filter((side) => side !== "nchan").map((side) =>
      ratios[side] == null ? "-" : `${ratios[side].toFixed(2)}×`
    ),
  ];
  const lines = summary.flatMap((s) => [
    cells(`${s.title}, ${s.unit}`, s.medians, s.ratios),
    ...(s.cpu_medians.nchan == null
      ? []
      : [cells(`  server CPU µs a delivery`, s.cpu_medians, s.cpu_ratios)]),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i])).join(" | ")} |`;
  const rule = `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`;
  return [line(header), rule, ...lines.map(line)].join("\n");
}

function format(value: number | null): string {
  if (value === null) return "-";
  return value >= 100
    ? Math.round(value).toLocaleString("en-US")
    : String(Math.round(value * 100) / 100);
}

function numeric(value: unknown): number | null {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

function decode(bytes: Uint8Array): string {
  return new TextDecoder().decode(bytes).split("\n").slice(-20).join("\n");
}

/** Parses the command line; throws an Error fit for the user. */
export function parseVersus(args: string[]): VersusOptions {
  const dash = args.indexOf("--");
  const { values, positionals } = parseArgs({
    args: dash < 0 ? args : args.slice(0, dash),
    allowPositionals: true,
    options: {
      rounds: { type: "string", default: "3" },
      duration_sec: { type: "string", default: "10" },
      warmup_sec: { type: "string", default: "5" },
      connections: { type: "string", default: "1000" },
      rate: { type: "string" },
      sides: { type: "string", default: Object.keys(SIDES).join(",") },
      out: { type: "string" },
    },
  });
  const sides = values.sides.split(",");
  for (const side of sides) {
    if (!isSide(side)) throw new Error(`no side ${side}: ${Object.keys(SIDES).join(", ")}`);
  }
  if (!sides.includes("nchan")) throw new Error("--sides: nchan too, every ratio is to it");
  if (positionals.length > 1) throw new Error("give the rows as one comma-separated list");
  const rows = (positionals[0] ?? "unicast,fanout,latency").split(",");
  for (const row of rows) {
    if (!(row in ROWS)) throw new Error(`no row ${row}: ${Object.keys(ROWS).join(", ")}`);
  }
  const positive = (name: string, text: string | undefined, integer: boolean) => {
    const n = Number(text);
    if (!(n > 0) || (integer && !Number.isInteger(n))) {
      throw new Error(`--${name} must be a positive ${integer ? "integer" : "number"}`);
    }
    return n;
  };
  if (rows.includes("latency") && !rows.includes("unicast") && values.rate === undefined) {
    throw new Error("latency needs the unicast row in the same run, or --rate");
  }
  return {
    rows: rows as RowName[],
    sides: (Object.keys(SIDES) as Side[]).filter((side) => sides.includes(side)),
    rounds: positive("rounds", values.rounds, true),
    durationSec: positive("duration_sec", values.duration_sec, false),
    warmupSec: values.warmup_sec === "0" ? 0 : positive("warmup_sec", values.warmup_sec, false),
    connections: positive("connections", values.connections, true),
    rate: values.rate === undefined ? null : positive("rate", values.rate, false),
    load: dash < 0 ? [] : args.slice(dash + 1),
    out: values.out ?? defaultOutPath("versus", new Date()),
  };
}

if (import.meta.main) {
  let o: VersusOptions;
  try {
    o = parseVersus(Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args);
  } catch (e) {
    console.error(`versus: ${(e as Error).message}`);
    Deno.exit(64);
  }
  const { summary } = await versus(o);
  console.log(`\n${summaryTable(summary, o.rounds)}\n\nresult: ${o.out}`);
}
