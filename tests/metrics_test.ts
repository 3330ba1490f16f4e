/**
 * End to end: `/metrics` under a short load against the real daemon, each value checked
 * against what was sent; Prometheus' own checker (`promtool check metrics`) accepts the
 * scrape with no lint problem. And `--log_format=json` lines as a log shipper reads them.
 */

import assert from "node:assert/strict";
import { checkMetrics } from "../scripts/promtool.ts";
import { connected, type RawClient, settle } from "./client.ts";
import { type Daemon, publish, startDaemon, uidsOnDistinctShards } from "./harness.ts";

/** A scrape's samples: `name{labels}` → value, labels as the daemon writes them. */
type Samples = Map<string, number>;

async function scrape(daemon: Daemon): Promise<{ text: string; samples: Samples }> {
  const response = await fetch(`http://127.0.0.1:${daemon.adminPort}/metrics`);
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
  const text = await response.text();
  const samples: Samples = new Map();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return { text, samples };
}

/** The sum of a family's samples whose labels include every `key="value"` of `match`. */
function total(samples: Samples, name: string, ...match: string[]): number {
  let sum = 0;
  for (const [series, value] of samples) {
    const [metric, labels = ""] = series.split("{");
    if (metric === name && match.every((pair) => labels.includes(pair))) sum += value;
  }
  return sum;
}

/** Reads `count` messages off `client`, acking each; answers them. */
async function receive(client: RawClient, count: number): Promise<Record<string, unknown>[]> {
  const got = [];
  while (got.length < count) {
    const message = await client.next();
    assert.ok(message, "stream closed");
    got.push(message);
    await client.send({ y: 5, s: message.s });
  }
  return got;
}

Deno.test("metrics: counts under a short load are exact, the latency histogram counts every delivery, promtool accepts the scrape", async () => {
  const daemon = await startDaemon();
  const clients: RawClient[] = [];
  try {
    // Two uids on each of the two shards.
    const uids = [
      ...await uidsOnDistinctShards(daemon, "ma", 2),
      ...await uidsOnDistinctShards(daemon, "mb", 2),
    ];
    const shardOf = new Map<string, string>();
    for (const uid of uids) {
      const address = (await daemon.admin(`/shard?uid=${uid}`)).body.result as string;
      shardOf.set(uid, String(daemon.shardPorts.indexOf(Number(address.split(":")[1]))));
    }
    for (const uid of uids) clients.push(await connected(daemon.clientPort, uid));
    const [subscriber1, subscriber2] = [uids[0], uids[1]];
    for (const uid of [subscriber1, subscriber2]) {
      assert.equal((await daemon.admin(`/sub?uid=${uid}&cid=news`)).status, 200);
    }

    const PER_UID = 50;
    const lines = uids.flatMap((uid) =>
      Array.from(
        { length: PER_UID },
        (_, i) => JSON.stringify({ to: uid, from: "op", body: `${i}` }),
      )
    );
    const batch = await daemon.admin("/pub/batch", { method: "POST", body: lines.join("\n") });
    assert.equal((batch.body.result as string[]).filter((a) => a === "ok").length, lines.length);
    const CHANNEL = 3;
    for (let i = 0; i < CHANNEL; i++) {
      assert.equal((await publish(daemon, "channel=news", `c${i}`)).status, 200);
    }
    // One client's message to another user.
    await clients[2].send({ y: 3, t: uids[3], b: "from a client" });

    const expected = uids.map((uid, i) =>
      PER_UID + (i < 2 ? CHANNEL : 0) + (uid === uids[3] ? 1 : 0)
    );
    for (const [i, client] of clients.entries()) {
      assert.equal((await receive(client, expected[i])).length, expected[i]);
    }
    // A heartbeat round trip on each: the acks before it have been read by the shard.
    for (const client of clients) assert.deepEqual(await settle(client), []);

    const { text, samples } = await scrape(daemon);
    const unicast = uids.length * PER_UID + 1;
    const channelCopies = 2 * CHANNEL;
    assert.equal(total(samples, "ipush_messages_accepted_total", 'type="msg"'), unicast);
    assert.equal(total(samples, "ipush_messages_accepted_total", 'type="cmsg"'), channelCopies);
    assert.equal(total(samples, "ipush_messages_sent_total", 'type="msg"'), unicast);
    assert.equal(total(samples, "ipush_messages_sent_total", 'type="cmsg"'), channelCopies);
    for (const shard of ["0", "1"]) {
      const own = uids.map((uid, i) => shardOf.get(uid) === shard ? expected[i] : 0)
        .reduce((a, b) => a + b);
      const label = `shard="${shard}"`;
      assert.equal(
        total(samples, "ipush_messages_sent_total", label),
        own,
        `messages sent on shard ${shard}`,
      );
      assert.equal(
        total(samples, "ipush_delivery_latency_seconds_count", label),
        own,
        `the latency histogram of shard ${shard} counts its deliveries`,
      );
      assert.equal(
        total(samples, "ipush_delivery_latency_seconds_bucket", label, 'le="+Inf"'),
        own,
      );
    }
    assert.ok(total(samples, "ipush_delivery_latency_seconds_sum") > 0);
    const commits = total(samples, "ipush_store_commit_seconds_count");
    assert.ok(commits >= 2 && commits <= unicast + CHANNEL * 2, `${commits} store commits`);

    assert.equal(total(samples, "ipush_connections", 'transport="tcp"'), uids.length);
    assert.equal(total(samples, "ipush_connections", 'transport="ws"'), 0);
    assert.equal(total(samples, "ipush_users"), uids.length);
    assert.equal(total(samples, "ipush_sessions_opened_total"), uids.length);
    assert.equal(total(samples, "ipush_redirects_total", 'shard="front_door"'), uids.length);
    assert.equal(total(samples, "ipush_client_requests_total"), 2 * uids.length);
    const acks = expected.reduce((a, b) => a + b);
    assert.equal(total(samples, "ipush_client_messages_received_total", 'type="ack"'), acks);
    assert.equal(total(samples, "ipush_client_messages_received_total", 'type="msg"'), 1);
    assert.equal(
      total(samples, "ipush_client_messages_received_total", 'type="hb"'),
      uids.length,
    );
    assert.equal(total(samples, "ipush_admin_requests_total", 'endpoint="PubBatch"'), 1);
    assert.equal(total(samples, "ipush_admin_requests_total", 'endpoint="Pub"'), CHANNEL);
    assert.equal(total(samples, "ipush_admin_requests_total", 'endpoint="Sub"'), 2);
    assert.equal(total(samples, "ipush_journal_queue_messages"), 0);
    assert.equal(total(samples, "ipush_store_up"), 2);
    assert.equal(total(samples, "ipush_shards_up"), 2);
    assert.equal(total(samples, "ipush_redis_up"), 1, "a single node needs no Redis");

    // What /stats says is the same numbers, summed.
    const stats = (await daemon.admin("/stats")).body.result as Record<string, never>;
    const now = (await scrape(daemon)).samples;
    assert.equal(
      stats["throughput"]["total_send_bytes"],
      total(now, "ipush_client_sent_bytes_total"),
    );
    assert.equal(stats["recv_type"]["ack"], acks);

    const { ok, output } = await checkMetrics(text);
    assert.ok(ok, `promtool check metrics:\n${output}`);
    assert.equal(output, "", "no lint problem");
  } finally {
    for (const client of clients) client.close();
    assert.equal(await daemon.stop(), 0);
  }
});

Deno.test("logs: --log_format=json writes one JSON object a line, main's and the shards'", async () => {
  const daemon = await startDaemon(["--log_format=json"]);
  assert.equal(await daemon.stop(), 0);
  const lines = daemon.log().trimEnd().split("\n");
  assert.ok(lines.length >= 5, daemon.log());
  const records = lines.map((line) => JSON.parse(line));
  for (const record of records) {
    assert.deepEqual(
      ["component", "level", "message", "node", "time"].filter((key) => !(key in record)),
      [],
      JSON.stringify(record),
    );
    assert.equal(record.node, "node1");
  }
  const components = new Set(records.map((record) => record.component));
  assert.deepEqual([...components].sort(), ["main", "shard-0", "shard-1"]);
  const listening = records.find((record) => record.component === "shard-0");
  assert.equal(typeof listening.port, "number", "an event's fields beside the message");
  assert.ok(records.some((record) => record.message === "stopped"));
});
