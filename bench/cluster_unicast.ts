/**
 * Unicast across nodes, this tree against a baseline tree, in one run, interleaved: rounds of
 * a fresh static cluster of two nodes × two workers (sqlite) and a fresh Redis, every client's
 * first hop and every `/pub` through node 1, so that half the `/pub`s cross to node 2 as
 * `/cluster/ops`. Each round: 5 s of the load unmeasured, then `--seconds` of
 * `unicast --rate=max --connections=1000 --concurrency=32 --processes=2` (this tree's load
 * generator for both trees). Figures: delivered/s, p50 / p99, both daemons' CPU a delivery,
 * and each node's threads a delivery (its main thread, its shards, V8's helpers).
 *
 *     git archive <baseline> | tar -x -C /tmp/ipush-baseline && ln -s $PWD/node_modules /tmp/ipush-baseline/
 *     flock /tmp/ipush-bench.lock ./node_modules/.bin/deno run -A bench/cluster_unicast.ts \
 *       --baseline=/tmp/ipush-baseline [--rounds=2] [--seconds=10]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { startRedis } from "../scripts/redis.ts";
import { type Daemon, startStaticCluster } from "../tests/harness.ts";
import { cpuSeconds, cpuSecondsByThread } from "./load/server_proc.ts";
import { type LoadResult, median, runLoad } from "./versus.ts";

const { values } = parseArgs({
  options: {
    baseline: { type: "string" },
    rounds: { type: "string", default: "2" },
    seconds: { type: "string", default: "10" },
  },
});
if (!values.baseline) throw new Error("--baseline=<dir of the baseline tree> is needed");
const ROUNDS = Number(values.rounds);
const SECONDS = Number(values.seconds);

/** What one node's threads took a delivery: the main thread (`deno`), the shards, the rest. */
function perDelivery(before: Map<string, number>, after: Map<string, number>, delivered: number) {
  const parts: Record<string, number> = { main: 0, shards: 0, other: 0 };
  for (const [name, seconds] of after) {
    const part = name === "deno" ? "main" : name.startsWith("worker-") ? "shards" : "other";
    parts[part] += seconds - (before.get(name) ?? 0);
  }
  return Object.fromEntries(
    Object.entries(parts).map(([part, s]) => [part, Math.round(s * 1e7 / delivered) / 10]),
  );
}

/** The unicast load at its maximum through `node` for `seconds`; `pid` is its daemon's. */
function load(node: Daemon, pid: number, seconds: number): Promise<LoadResult> {
  return runLoad(
    [
      "unicast",
      "--rate=max",
      "--connections=1000",
      "--concurrency=32",
      "--processes=2",
      `--duration_sec=${seconds}`,
      `--client_port=${node.clientPort}`,
      `--admin_port=${node.adminPort}`,
      `--server_pid=${pid}`,
    ],
    Deno.makeTempFileSync({ suffix: ".json" }),
    "cluster unicast",
  );
}

async function round(root: URL) {
  const redis = await startRedis();
  const nodes: Daemon[] = [];
  try {
    nodes.push(
      ...await startStaticCluster(["n1", "n2"], () => [`--redis_url=${redis.url}`], { root }),
    );
    const pids = await Promise.all(
      nodes.map(async (node) => Number((await Deno.readTextFile(node.pidFile)).trim())),
    );
    await load(nodes[0], pids[0], 5);
    const cpu = () => pids.reduce((sum, pid) => sum + (cpuSeconds(pid) ?? NaN), 0);
    const [cpuBefore, threadsBefore] = [cpu(), pids.map(cpuSecondsByThread)];
    const r = await load(nodes[0], pids[0], SECONDS);
    const [cpuAfter, threadsAfter] = [cpu(), pids.map(cpuSecondsByThread)];
    const delivered = Number(r.metrics.delivered_total);
    return {
      status: r.status,
      delivered_per_s: r.metrics.delivered_per_s,
      p50_ms: r.latency.p50_ms,
      p99_ms: r.latency.p99_ms,
      missing: r.metrics.missing_after_drain,
      cpu_us: Math.round((cpuAfter - cpuBefore) * 1e7 / delivered) / 10,
      nodes: pids.map((_, k) => perDelivery(threadsBefore[k], threadsAfter[k], delivered)),
    };
  } finally {
    for (const node of nodes) await node.stop();
    await redis.stop();
  }
}

const trees = {
  baseline: new URL(`file://${values.baseline.replace(/\/?$/, "/")}`),
  current: new URL("../", import.meta.url),
};
const runs: Record<string, Awaited<ReturnType<typeof round>>[]> = { baseline: [], current: [] };
for (let k = 1; k <= ROUNDS; k++) {
  for (const [name, root] of Object.entries(trees)) {
    const run = await round(root);
    runs[name].push(run);
    console.log(JSON.stringify({ round: k, tree: name, ...run }));
  }
}
for (const [name, list] of Object.entries(runs)) {
  const figures = (key: "delivered_per_s" | "cpu_us") => list.map((run) => Number(run[key]));
  console.log(
    `${name}: median ${median(figures("delivered_per_s"))} delivered/s, ` +
      `${median(figures("cpu_us"))} µs of both nodes' CPU a delivery`,
  );
}
