import assert from "node:assert/strict";
import { ServiceError } from "../core/errors.ts";
import type { UnicastRequest } from "../core/requests.ts";
import { ShardMap } from "../core/shard_map.ts";
import { Session } from "../session/session.ts";
import { newShardCounters } from "../stats/counters.ts";
import { Journal } from "../storage/journal.ts";
import { MemoryStore } from "../storage/memory.ts";
import { StorageUnavailableError, type Store } from "../storage/store.ts";
import { FakeConn } from "../testing/fake_conn.ts";
import type { TransportName } from "../transport/conn.ts";
import { rejection } from "../testing/support.ts";
import { Shard } from "./shard.ts";

const MAP = new ShardMap([{ id: "n/0", host: "", port: 1 }, { id: "n/1", host: "", port: 2 }]);

/** Uids that shard 0 of {@linkcode MAP} owns (and one it does not). */
const OWNED = Array.from({ length: 200 }, (_, i) => `u${i}`).filter((uid) =>
  MAP.indexOf(uid) === 0
);
const FOREIGN = Array.from({ length: 200 }, (_, i) => `u${i}`).find((uid) =>
  MAP.indexOf(uid) === 1
)!;
const [ALICE, BOB] = OWNED;

function shardWith(store: Store = new MemoryStore()) {
  const forwarded: UnicastRequest[] = [];
  const shard = new Shard({
    index: 0,
    map: MAP,
    store,
    journal: new Journal(store, 1000, () => {}),
    counters: newShardCounters(),
    replayPage: 2,
    channelCacheSize: 10,
    sessionWaitMs: 30_000,
    forward: (request) => (forwarded.push(request), Promise.resolve()),
    broadcast: () => {},
    log: () => {},
  });
  return { shard, forwarded };
}

async function connect(shard: Shard, uid: string, transport: TransportName = "tcp", since = 0) {
  const conn = new FakeConn(transport);
  const session = new Session(conn, uid, "", shard);
  await shard.attach(session, since);
  // Replay runs on in the background: a turn of the event loop finishes it.
  await new Promise((resolve) => setTimeout(resolve));
  return { conn, session };
}

const message = (to: string, body: string): UnicastRequest => ({
  to,
  from: "op",
  body: JSON.stringify(body),
  ttlSec: 0,
  volatile: false,
});

Deno.test("Shard: a message is stored, then delivered, with the uid's next s", async () => {
  const { shard } = shardWith();
  const { conn } = await connect(shard, ALICE);
  assert.equal(await shard.publish(message(ALICE, "one")), 1);
  assert.equal(await shard.publish(message(ALICE, "two")), 2);
  await new Promise((resolve) => setTimeout(resolve));
  assert.deepEqual(conn.take(), [
    { y: 3, f: "op", t: ALICE, b: "one", s: 1 },
    { y: 3, f: "op", t: ALICE, b: "two", s: 2 },
  ]);
  // Stored until acked: listed as offline.
  assert.equal((await shard.offline(ALICE, 10)).length, 2);
});

Deno.test("Shard: a connecting session replays what it missed, page by page, then goes live", async () => {
  const { shard } = shardWith();
  for (let i = 1; i <= 5; i++) await shard.publish(message(BOB, `m${i}`));
  const { conn } = await connect(shard, BOB);
  await shard.publish(message(BOB, "live"));
  await new Promise((resolve) => setTimeout(resolve));
  assert.deepEqual(conn.take().map((m) => m.s), [1, 2, 3, 4, 5, 6]);
});

Deno.test("Shard: an ack moves last_ack; one beyond the last s is an error", async () => {
  const { shard } = shardWith();
  const { conn, session } = await connect(shard, ALICE);
  for (let i = 1; i <= 3; i++) await shard.publish(message(ALICE, `m${i}`));
  session.receive(new TextEncoder().encode('{"y":5,"s":2}'));
  await new Promise((resolve) => setTimeout(resolve, 5));
  assert.deepEqual(
    (await shard.offline(ALICE, 10)).map((text) => JSON.parse(text).s),
    [3],
  );
  conn.take();
  session.receive(new TextEncoder().encode('{"y":5,"s":9}'));
  assert.deepEqual(conn.take(), [{ error: "ack beyond last seq" }]);
});

Deno.test("Shard: a uid it does not own is refused with 421, a client's message forwarded", async () => {
  const { shard, forwarded } = shardWith();
  const refused = await rejection(shard.publish(message(FOREIGN, "x")));
  assert.ok(refused instanceof ServiceError && refused.status === 421);
  const { session } = await connect(shard, ALICE);
  session.receive(new TextEncoder().encode(`{"y":3,"t":"${FOREIGN}","b":"hi"}`));
  assert.deepEqual(forwarded, [{
    to: FOREIGN,
    from: ALICE,
    body: '"hi"',
    ttlSec: 0,
    volatile: false,
  }]);
});

Deno.test("Shard: a channel message reaches each member it owns with that member's own s", async () => {
  const { shard } = shardWith();
  await shard.publish(message(BOB, "before")); // Bob is at s 1 already
  await shard.subscribe(ALICE, "team");
  await shard.subscribe(BOB, "team");
  const a = await connect(shard, ALICE);
  const b = await connect(shard, BOB);
  b.conn.take();
  const request = { channel: "team", from: "bot", body: '"standup"', ttlSec: 0, volatile: false };
  assert.equal(await shard.publishChannel(request), 2);
  await new Promise((resolve) => setTimeout(resolve));
  assert.deepEqual(a.conn.take(), [{ y: 4, f: "bot", t: ALICE, c: "team", b: "standup", s: 1 }]);
  assert.deepEqual(b.conn.take(), [{ y: 4, f: "bot", t: BOB, c: "team", b: "standup", s: 2 }]);
  await shard.unsubscribe(BOB, "team");
  assert.equal(await shard.publishChannel(request), 1);
});

Deno.test("Shard: a store that is down answers 503 storage unavailable and keeps no message", async () => {
  const store = new MemoryStore();
  const { shard } = shardWith(store);
  await shard.publish(message(ALICE, "stored"));
  store.append = () => Promise.reject(new StorageUnavailableError("disk gone"));
  const failed = await rejection(shard.publish(message(ALICE, "lost?")));
  assert.ok(failed instanceof ServiceError);
  assert.deepEqual([failed.message, failed.status], ["storage unavailable", 503]);
  assert.deepEqual((await shard.offline(ALICE, 10)).map((t) => JSON.parse(t).b), ["stored"]);
});

Deno.test("Shard: sweep closes a session silent past the timeout", async () => {
  const { shard } = shardWith();
  const { conn, session } = await connect(shard, ALICE);
  session.lastSeen = Date.now() - 10_000;
  shard.sweep(5_000);
  assert.deepEqual(conn.take(), [{ error: "heartbeat timeout" }]);
  assert.equal(conn.closedGracefully, true);
  assert.equal(shard.counters.connection_number, 0);
});

const turn = () => new Promise((resolve) => setTimeout(resolve));

Deno.test("Shard: a connection's since acknowledges every s up to it, then replays the rest", async () => {
  const { shard } = shardWith();
  for (let i = 1; i <= 5; i++) await shard.publish(message(ALICE, `m${i}`));
  const { conn } = await connect(shard, ALICE, "sse", 3);
  assert.deepEqual(conn.take().map((m) => m.s), [4, 5]);
  // Acknowledged for good: a later connection without a since starts after 3 too.
  const { conn: later } = await connect(shard, ALICE, "ws");
  assert.deepEqual(later.take().map((m) => m.s), [4, 5]);
  assert.deepEqual((await shard.offline(ALICE, 10)).map((t) => JSON.parse(t).s), [4, 5]);
});

Deno.test("Shard: a since beyond the last s is answered and acknowledges nothing", async () => {
  const { shard } = shardWith();
  await shard.publish(message(ALICE, "m1"));
  const { conn } = await connect(shard, ALICE, "poll", 7);
  assert.deepEqual(conn.take(), [
    { error: "ack beyond last seq" },
    { y: 3, f: "op", t: ALICE, b: "m1", s: 1 },
  ]);
});

Deno.test("Shard: a session whose poll left stays online and is rejoined by the next poll", async () => {
  const { shard } = shardWith();
  const { conn, session } = await connect(shard, ALICE, "poll");
  await shard.publish(message(ALICE, "one"));
  await turn();
  assert.deepEqual(conn.take().map((m) => m.s), [1]);
  session.left();
  await shard.publish(message(ALICE, "two")); // stored; the session has no connection
  assert.equal(shard.counters.user_number, 1, "still online between polls");
  assert.equal(shard.waiting(ALICE, "", "tcp"), undefined, "only a poll rejoins a poll");
  assert.equal(shard.waiting(ALICE, "tablet", "poll"), undefined, "nor another device's");
  assert.equal(shard.waiting(ALICE, "", "poll"), session);
  const next = new FakeConn("poll");
  await shard.rejoin(session, next, 1);
  await turn();
  assert.deepEqual(next.take().map((m) => m.s), [2]);
  assert.equal(shard.waiting(ALICE, "", "poll"), undefined, "it has a connection again");
  assert.deepEqual(
    [shard.counters.connect, shard.counters.poll_connection_number],
    [1, 1],
    "one session throughout",
  );
});

Deno.test("Shard: a replay stops when its poll is answered; the next poll's starts after since", async () => {
  const { shard } = shardWith(); // two messages a replay page
  for (let i = 1; i <= 5; i++) await shard.publish(message(ALICE, `m${i}`));
  const conn = new FakeConn("poll");
  const session = new Session(conn, ALICE, "", shard);
  await shard.attach(session);
  // The first page is sent in the attach's turn; the poll answers with it and leaves.
  assert.deepEqual(conn.take().map((m) => m.s), [1, 2]);
  session.left();
  await turn();
  const next = new FakeConn("poll");
  await shard.rejoin(session, next, 2);
  await turn();
  assert.deepEqual(next.take().map((m) => m.s), [3, 4, 5], "no page of the first replay in it");
});

Deno.test("Shard: a waiting session is forgotten after sessionWaitMs", async () => {
  const { shard } = shardWith();
  const { session } = await connect(shard, ALICE, "poll");
  session.left();
  session.leftAt = Date.now() - 31_000;
  shard.sweep(90_000);
  assert.deepEqual(
    [shard.counters.user_number, shard.counters.poll_connection_number, shard.sessions.size],
    [0, 0, 0],
  );
});

Deno.test("Shard: sessions are counted per transport", async () => {
  const { shard } = shardWith();
  const opened = await Promise.all(
    (["tcp", "ws", "ws", "sse", "poll"] as const).map((t) => connect(shard, ALICE, t)),
  );
  const c = shard.counters;
  const counts = () => [
    c.tcp_connection_number,
    c.ws_connection_number,
    c.sse_connection_number,
    c.poll_connection_number,
  ];
  assert.deepEqual(counts(), [1, 2, 1, 1]);
  for (const { session } of opened) session.closed();
  assert.deepEqual(counts(), [0, 0, 0, 0]);
});

Deno.test("Shard: a message's outcome is its refusal's reason (a /send answers it)", async () => {
  const { shard } = shardWith();
  const sender = { uid: ALICE, device: "" };
  assert.equal(await shard.onMessage(sender, { y: 5, s: 3 }), "ack beyond last seq");
  assert.equal(await shard.onMessage(sender, { y: 3, t: BOB, b: '"hi"' }), undefined);
  assert.equal(await shard.onMessage(sender, { y: 5, s: 1 }), "ack beyond last seq");
  assert.equal(
    await shard.onMessage(sender, { y: 1, c: "c1" }),
    undefined,
  );
  const failing = shardWith(Object.assign(new MemoryStore(), {
    subscribe: () => Promise.reject(new StorageUnavailableError("down")),
  })).shard;
  assert.equal(await failing.onMessage(sender, { y: 1, c: "c1" }), "storage unavailable");
});
