/**
 * Channel-message throughput across nodes, this tree against a baseline tree (first the
 * commit before the Streams bus, Redis pub/sub; later the one before a change of the bus
 * path), in one run, interleaved: rounds of `--seconds` each,
 * baseline and current in turn, each on a fresh static cluster of three nodes × one worker
 * (sqlite) and a fresh Redis. `/pub/batch` on node1 sends channel messages (100 a request,
 * `--publishers` at once) to a channel whose members all live on node2 and node3, so every
 * message crosses the bus; the figure is the members' copies the other nodes took a second
 * (`messages_accepted_total{type="cmsg"}` on node2 and node3), and the `/pub` lines node1
 * acknowledged a second.
 *
 *     git archive <baseline> | tar -x -C /tmp/ipush-baseline && ln -s $PWD/node_modules /tmp/ipush-baseline/
 *     flock /tmp/ipush-bench.lock ./node_modules/.bin/deno run -A bench/bus_throughput.ts \
 *       --baseline=/tmp/ipush-baseline [--rounds=3] [--seconds=8] [--publishers=4]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { startRedis } from "../scripts/redis.ts";
import { type Daemon, delay, startStaticCluster } from "../tests/harness.ts";

const { values } = parseArgs({
  options: {
    baseline: { type: "string" },
    rounds: { type: "string", default: "3" },
    seconds: { type: "string", default: "8" },
    publishers: { type: "string", default: "4" },
  },
});
if (!values.baseline) throw new Error("--baseline=<dir of the baseline tree> is needed");
const ROUNDS = Number(values.rounds);
const SECONDS = Number(values.seconds);
const PUBLISHERS = Number(values.publishers);
const MEMBERS_PER_NODE = 5;
const LINES = 100;

/** Sum of a counter's series in `/metrics`, those whose labels include `match`. */
async function counter(node: Daemon, name: string, match: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${node.adminPort}/metrics`)).text();
  let sum = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith(`${name}{`) && line.includes(match)) sum += Number(line.split(" ").pop());
  }
  return sum;
}

async function round(root: URL): Promise<{ copiesPerSec: number; acceptedPerSec: number }> {
  const redis = await startRedis();
  const nodes: Daemon[] = [];
  try {
    nodes.push(
      ...await startStaticCluster(
        ["node1", "node2", "node3"],
        () => [`--redis_url=${redis.url}`],
        { root, workers: 1 },
      ),
    );
    const [n1, n2, n3] = nodes;
    const found = new Map<Daemon, number>([[n2, 0], [n3, 0]]);
    for (let i = 0; [...found.values()].some((n) => n < MEMBERS_PER_NODE); i++) {
      const uid = `m${i}`;
      const shard = String((await n1.admin(`/shard?uid=${uid}`)).body.result);
      const owner = [n2, n3].find((n) => shard.endsWith(`:${n.shardPorts[0]}`));
      if (!owner || found.get(owner)! >= MEMBERS_PER_NODE) continue;
      found.set(owner, found.get(owner)! + 1);
      await n1.admin(`/sub?uid=${uid}&cid=bench`);
    }
    const body = Array.from(
      { length: LINES },
      (_, i) => JSON.stringify({ channel: "bench", from: "bench", body: `message ${i}` }),
    ).join("\n");
    const copies = async () =>
      (await counter(n2, "ipush_messages_accepted_total", 'type="cmsg"')) +
      (await counter(n3, "ipush_messages_accepted_total", 'type="cmsg"'));
    const before = await copies();
    let accepted = 0;
    const end = Date.now() + SECONDS * 1000;
    await Promise.all(Array.from({ length: PUBLISHERS }, async () => {
      while (Date.now() < end) {
        const answer = await fetch(`http://127.0.0.1:${n1.adminPort}/pub/batch`, {
          method: "POST",
          body,
        });
        const result = (await answer.json()).result;
        if (Array.isArray(result)) accepted += result.filter((r) => r === "ok").length;
      }
    }));
    const elapsed = SECONDS + (Date.now() - end) / 1000;
    // What was sent is in flight still: let the other nodes take it, within a bound.
    let after = await copies();
    for (let i = 0; i < 50; i++) {
      await delay(200);
      const now = await copies();
      if (now === after) break;
      after = now;
    }
    return { copiesPerSec: (after - before) / elapsed, acceptedPerSec: accepted / elapsed };
  } finally {
    for (const node of nodes) await node.stop();
    await redis.stop();
  }
}

const trees = [
  ["baseline", new URL(`file://${values.baseline.replace(/\/?$/, "/")}`)],
  ["current", new URL("../", import.meta.url)],
] as const;
const results = new Map<string, { copiesPerSec: number; acceptedPerSec: number }[]>();
for (let r = 0; r < ROUNDS; r++) {
  for (const [name, root] of trees) {
    const result = await round(root);
    console.log(
      `round ${r + 1} ${name}: ${Math.round(result.acceptedPerSec)} /pub lines/s accepted, ` +
        `${Math.round(result.copiesPerSec)} member copies/s on the other nodes`,
    );
    results.set(name, [...results.get(name) ?? [], result]);
  }
}
const median = (values: number[]) => [...values].sort((a, b) => a - b)[values.length >> 1];
for (const [name, list] of results) {
  console.log(
    `${name}: median ${Math.round(median(list.map((r) => r.acceptedPerSec)))} lines/s accepted, ` +
      `${Math.round(median(list.map((r) => r.copiesPerSec)))} copies/s across nodes`,
  );
}
