/**
 * End to end: `POST /pub/batch` (docs/protocol-notes.md, "Admin API"), many `/pub`s in one
 * request with an answer per line, against the real daemon and raw clients.
 */

import assert from "node:assert/strict";
import { startRedis } from "../scripts/redis.ts";
import { connected, settle } from "./client.ts";
import {
  type Daemon,
  startDaemon,
  startStaticCluster,
  uidsOnDistinctShards,
  uidsOwnedBy,
} from "./harness.ts";

/** POSTs `lines` (objects are JSON-encoded, strings sent as they are) to `/pub/batch`. */
async function batch(
  daemon: Daemon,
  lines: (Record<string, unknown> | string)[],
): Promise<{ status: number; body: Record<string, unknown> }> {
  const text = lines.map((line) => typeof line === "string" ? line : JSON.stringify(line))
    .join("\n");
  return await daemon.admin("/pub/batch", { method: "POST", body: text });
}

Deno.test("pub batch: many messages per request, an answer per line", async (t) => {
  const daemon = await startDaemon(["--max_frame_bytes=1024"]);
  try {
    const [alice, bob] = await uidsOnDistinctShards(daemon, "batch", 2);

    await t.step("lines for uids on two shards are delivered, in order, once stored", async () => {
      const a = await connected(daemon.clientPort, alice);
      const b = await connected(daemon.clientPort, bob);
      const answer = await batch(daemon, [
        { to: alice, from: "op", body: "a1" },
        { to: bob, from: "op", body: "b1" },
        { to: alice, from: "op", body: "a2" },
        { to: alice, from: "op", body: "a3", ttl: 3600 },
      ]);
      assert.deepEqual(answer, { status: 200, body: { result: ["ok", "ok", "ok", "ok"] } });
      assert.deepEqual(await settle(a), [
        { y: 3, f: "op", t: alice, b: "a1", s: 1 },
        { y: 3, f: "op", t: alice, b: "a2", s: 2 },
        { y: 3, f: "op", t: alice, b: "a3", s: 3 },
      ]);
      assert.deepEqual(await settle(b), [{ y: 3, f: "op", t: bob, b: "b1", s: 1 }]);
      // "ok" means stored: the messages are listed as offline until acked.
      assert.deepEqual((await daemon.admin(`/msg?uid=${bob}`)).body, {
        result: [`{"b":"b1","f":"op","s":1,"t":"${bob}","y":3}\n`],
      });
      await a.send({ y: 5, s: 3 });
      await settle(a);
      a.close();
      b.close();
    });

    await t.step("bodies beyond ASCII are framed by their UTF-8 length", async () => {
      const client = await connected(daemon.clientPort, "utf8er");
      const bodies = ["caf\u00e9", "\u{1f600} \u4e2d\u6587", 'a"b\\c\n'];
      const answer = await batch(
        daemon,
        bodies.map((body) => ({ to: "utf8er", from: "op", body })),
      );
      assert.deepEqual(answer.body.result, ["ok", "ok", "ok"]);
      assert.deepEqual((await settle(client)).map((m) => m.b), bodies);
      client.close();
    });

    await t.step("a batch to an offline uid is replayed on connect", async () => {
      const lines = Array.from(
        { length: 50 },
        (_, i) => ({ to: "later1", from: "op", body: `m${i}` }),
      );
      const answer = await batch(daemon, lines);
      assert.deepEqual(answer.body.result, lines.map(() => "ok"));
      const client = await connected(daemon.clientPort, "later1");
      const got = await settle(client);
      assert.deepEqual(got.map((m) => [m.b, m.s]), lines.map((_, i) => [`m${i}`, i + 1]));
      client.close();
    });

    await t.step("channel lines and volatile lines", async () => {
      const a = await connected(daemon.clientPort, alice);
      assert.deepEqual((await daemon.admin(`/sub?uid=${alice}&cid=bchan`)).body, { result: "ok" });
      const answer = await batch(daemon, [
        { channel: "bchan", from: "bot", body: "to the room" },
        { to: alice, from: "op", body: "typing", volatile: true },
      ]);
      assert.deepEqual(answer.body, { result: ["ok", "ok"] });
      // A channel line travels like a channel /pub, on its own: no order against unicast lines.
      const got = await settle(a);
      assert.deepEqual(
        new Set(got.map((m) => JSON.stringify(m))),
        new Set([
          JSON.stringify({ y: 4, f: "bot", t: alice, c: "bchan", b: "to the room", s: 4 }),
          JSON.stringify({ y: 3, f: "op", t: alice, b: "typing" }),
        ]),
      );
      a.close();
    });

    await t.step("a bad line gets its own error; the others are still published", async () => {
      const answer = await batch(daemon, [
        { to: "bad1", from: "op", body: "fine" },
        "not json",
        "[1,2]",
        { to: "bad uid", from: "op", body: "x" },
        { to: "bad1", channel: "c1", from: "op", body: "x" },
        { body: "x", from: "op" },
        { to: "bad1", body: "x" },
        { to: "bad1", from: "op" },
        { to: "bad1", from: "op", body: 42 },
        { to: "bad1", from: "op", body: "x", ttl: -1 },
        { to: "bad1", from: "op", body: "x", ttl: "60" },
        { to: "bad1", from: "op", body: "x", volatile: 1 },
        { to: "bad1", from: "op", body: "x".repeat(1025) },
        "",
        { to: "bad1", from: "op", body: "also fine" },
      ]);
      assert.equal(answer.status, 200);
      const error = (reason: string, status = 400) => ({ error: reason, status });
      assert.deepEqual(answer.body.result, [
        "ok",
        error("bad json"),
        error("line is not a json object"),
        error("invalid to"),
        error("give exactly one of to, channel"),
        error("give exactly one of to, channel"),
        error("missing from"),
        error("missing body"),
        error("invalid body"),
        error("invalid ttl"),
        error("invalid ttl"),
        error("invalid volatile"),
        error("body over 1024 bytes", 413),
        "ok",
      ]);
      const listed = (await daemon.admin("/msg?uid=bad1")).body.result as string[];
      assert.deepEqual(listed.map((m) => JSON.parse(m).b), ["fine", "also fine"]);
    });

    await t.step("the request as a whole: method, size, and /stats", async () => {
      assert.equal((await daemon.admin("/pub/batch")).status, 405);
      const empty = await daemon.admin("/pub/batch", { method: "POST", body: "" });
      assert.deepEqual(empty, { status: 200, body: { result: [] } });
      const tooMany = "{}\n".repeat(10_001);
      const refused = await daemon.admin("/pub/batch", { method: "POST", body: tooMany });
      assert.deepEqual(refused, { status: 413, body: { error: "more than 10000 lines" } });
      const stats = (await daemon.admin("/stats")).body.result as Record<string, unknown>;
      assert.ok((stats.request as Record<string, number>).PubBatch >= 7);
    });
  } finally {
    assert.equal(await daemon.stop(), 0);
  }
});

Deno.test("pub batch: lines for uids of another node are forwarded there", async () => {
  const redis = await startRedis();
  const nodes: Daemon[] = [];
  try {
    nodes.push(...await startStaticCluster(["node1", "node2"], () => [`--redis_url=${redis.url}`]));
    const [n1, n2] = nodes;
    const [local] = await uidsOwnedBy(n1, n1, "here");
    const [remote, remoteOffline] = await uidsOwnedBy(n1, n2, "there", 2);
    const client = await connected(n2.clientPort, remote);
    const answer = await batch(n1, [
      { to: remote, from: "op", body: "r1" },
      { to: local, from: "op", body: "l1" },
      { to: remoteOffline, from: "op", body: "o1" },
      { to: remote, from: "op", body: "r2" },
      { to: remote, from: "op", body: "x", ttl: "bad" },
    ]);
    assert.deepEqual(answer.body.result, [
      "ok",
      "ok",
      "ok",
      "ok",
      { error: "invalid ttl", status: 400 },
    ]);
    assert.deepEqual(await settle(client), [
      { y: 3, f: "op", t: remote, b: "r1", s: 1 },
      { y: 3, f: "op", t: remote, b: "r2", s: 2 },
    ]);
    assert.deepEqual((await n2.admin(`/msg?uid=${remoteOffline}`)).body, {
      result: [`{"b":"o1","f":"op","s":1,"t":"${remoteOffline}","y":3}\n`],
    });
    assert.deepEqual((await n1.admin(`/msg?uid=${local}`)).body, {
      result: [`{"b":"l1","f":"op","s":1,"t":"${local}","y":3}\n`],
    });
    client.close();
  } finally {
    for (const node of nodes) await node.stop();
    await redis.stop();
  }
});
