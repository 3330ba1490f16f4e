/**
 * What scraping `/metrics` costs: unicast runs of the load generator against one running
 * daemon, alternately without and with a scraper that fetches `/metrics` once a second (as
 * Prometheus would, a little more often than its usual 15 s), and the delivered msgs/s of
 * each, and the daemon's CPU time per delivered message (user + system, all its threads, from
 * `/proc`), which other work on a shared machine moves less than it moves throughput.
 * Interleaved, so that the noise of a shared machine falls on both sides alike.
 *
 * ```sh
 * flock /tmp/ipush-bench.lock deno run -A bench/metrics_overhead.ts --client_port=29000 \
 *   --admin_port=29001 --pid_file=PATH [--pairs=3] [--duration_sec=20] [-- load flags ...]
 * ```
 *
 * Load flags after `--` replace the default unicast shape (README's memory-store row).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { cpuSeconds } from "./load/server_proc.ts";

const DEFAULT_LOAD = [
  "--rate=max",
  "--connections=1000",
  "--batch=500",
  "--concurrency=8",
  "--processes=2",
];

interface Run {
  scraped: boolean;
  deliveredPerS: number;
  /** The daemon's CPU microseconds per message delivered. */
  cpuUsPerMessage: number;
  scrapes: number;
}

async function unicast(
  ports: { client: string; admin: string; pidFile: string },
  durationSec: string,
  load: string[],
  scraped: boolean,
): Promise<Run> {
  const out = await Deno.makeTempFile({ suffix: ".json" });
  const pid = Number((await Deno.readTextFile(ports.pidFile)).trim());
  const cpuBefore = cpuSeconds(pid)!;
  let scrapes = 0;
  let scraping = scraped;
  const scraper = (async () => {
    while (scraping) {
      const started = Date.now();
      try {
        const response = await fetch(`http://127.0.0.1:${ports.admin}/metrics`);
        await response.text();
        if (response.ok) scrapes++;
      } catch { /* counted as not scraped */ }
      await new Promise((resolve) =>
        setTimeout(resolve, Math.max(0, 1000 - (Date.now() - started)))
      );
    }
  })();
  const child = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      new URL("./load.ts", import.meta.url).pathname,
      "unicast",
      ...load,
      `--duration_sec=${durationSec}`,
      `--client_port=${ports.client}`,
      `--admin_port=${ports.admin}`,
      `--pid_file=${ports.pidFile}`,
      `--out=${out}`,
    ],
    stdout: "null",
    stderr: "inherit",
  }).output();
  scraping = false;
  await scraper;
  const cpu = cpuSeconds(pid)! - cpuBefore;
  if (!child.success) throw new Error(`the load generator failed (${child.code})`);
  const result = JSON.parse(await Deno.readTextFile(out));
  await Deno.remove(out);
  const { delivered_per_s: deliveredPerS, delivered_total: delivered } = result.metrics;
  return { scraped, deliveredPerS, cpuUsPerMessage: (cpu / delivered) * 1e6, scrapes };
}

if (import.meta.main) {
  const dash = Deno.args.indexOf("--");
  const { values } = parseArgs({
    args: dash < 0 ? Deno.args : Deno.args.slice(0, dash),
    options: {
      client_port: { type: "string", default: "29000" },
      admin_port: { type: "string", default: "29001" },
      pid_file: { type: "string" },
      pairs: { type: "string", default: "3" },
      duration_sec: { type: "string", default: "20" },
    },
  });
  if (!values.pid_file) {
    console.error("--pid_file (the daemon's) is required");
    Deno.exit(2);
  }
  const load = dash < 0 ? DEFAULT_LOAD : Deno.args.slice(dash + 1);
  const ports = { client: values.client_port, admin: values.admin_port, pidFile: values.pid_file };
  const runs: Run[] = [];
  for (let pair = 0; pair < Number(values.pairs); pair++) {
    // Which goes first alternates too: a drift over the whole run favours neither.
    const order = pair % 2 === 0 ? [false, true] : [true, false];
    for (const scraped of order) {
      const run = await unicast(ports, values.duration_sec, load, scraped);
      runs.push(run);
      console.log(
        `${scraped ? "scraped  " : "unscraped"} ${run.deliveredPerS} delivered/s, ` +
          `${run.cpuUsPerMessage.toFixed(2)} µs CPU a message` +
          (scraped ? ` (${run.scrapes} scrapes)` : ""),
      );
    }
  }
  // Each pair's ratios (scraped / unscraped), and their medians: a burst of other work on the
  // machine moves one pair, not the verdict.
  const pairs: { rate: number; cpu: number }[] = [];
  for (let i = 0; i < runs.length; i += 2) {
    const [a, b] = [runs[i], runs[i + 1]];
    const [scraped, unscraped] = a.scraped ? [a, b] : [b, a];
    pairs.push({
      rate: scraped.deliveredPerS / unscraped.deliveredPerS,
      cpu: scraped.cpuUsPerMessage / unscraped.cpuUsPerMessage,
    });
  }
  const median = (values: number[]) => {
    const sorted = [...values].sort((a, b) => a - b);
    const middle = sorted.length / 2;
    return sorted.length % 2 === 1
      ? sorted[Math.floor(middle)]
      : (sorted[middle - 1] + sorted[middle]) / 2;
  };
  const percent = (ratio: number) => `${((ratio - 1) * 100).toFixed(1)} %`;
  const rates = pairs.map((pair) => pair.rate);
  const cpus = pairs.map((pair) => pair.cpu);
  console.log(
    `delivered/s, scraped against unscraped, each pair: ${rates.map(percent).join(", ")}`,
  );
  console.log(
    `CPU a message, scraped against unscraped, each pair: ${cpus.map(percent).join(", ")}`,
  );
  console.log(
    `median pair: delivered/s ${percent(median(rates))}, CPU a message ${percent(median(cpus))}`,
  );
}
