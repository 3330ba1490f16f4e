import assert from "node:assert/strict";
import { ServiceError } from "../core/errors.ts";
import type { ChannelAccess } from "../core/access.ts";
import type { ChannelRequest, UnicastRequest } from "../core/requests.ts";
import { ShardMap } from "../core/shard_map.ts";
import type { BusEntry } from "../core/bus_entry.ts";
import type { StoredMessage } from "../core/messages.ts";
import { Session } from "../session/session.ts";
import { newShardCounters, newShardHistograms } from "../stats/counters.ts";
import { Journal } from "../storage/journal.ts";
import { MemoryStore } from "../storage/memory.ts";
import { StorageUnavailableError, type Store } from "../storage/store.ts";
import { FakeConn } from "../testing/fake_conn.ts";
import type { TransportName } from "../transport/conn.ts";
import { rejection } from "../testing/support.ts";
import { Shard, type ShardLimits, type ShardOptions } from "./shard.ts";

const MAP = new ShardMap([{ id: "n/0", host: "", port: 1 }, { id: "n/1", host: "", port: 2 }]);

/** Uids that shard 0 of {@linkcode MAP} owns (and one it does not). */
const OWNED = Array.from({ length: 200 }, (_, i) => `u${i}`).filter((uid) =>
  MAP.indexOf(uid) === 0
);
const FOREIGN = Array.from({ length: 200 }, (_, i) => `u${i}`).find((uid) =>
  MAP.indexOf(uid) === 1
)!;
const [ALICE, BOB] = OWNED;

/** Roomy limits, so that only the tests of a limit meet it. */
const LIMITS: ShardLimits = {
  connectionsPerUid: 100,
  channelsPerUid: 100,
  messageRate: { perSec: 10_000, burst: 10_000 },
};

function shardWith(
  store: Store = new MemoryStore(),
  limits: Partial<ShardLimits> = {},
  place: Partial<Pick<ShardOptions, "index" | "map" | "handOff" | "busMark">> = {},
) {
  const forwarded: UnicastRequest[] = [];
  const histograms = newShardHistograms();
  /** Clients' channel messages, as a node alone sends them to its other shards. */
  const broadcast: ChannelRequest[] = [];
  const shard: Shard = new Shard({
    index: 0,
    map: MAP,
    store,
    journal: new Journal(store, 1000, () => {}),
    counters: newShardCounters(),
    histograms,
    replayPage: 2,
    maxDevices: 3,
    deviceTtlMs: 86_400_000,
    channelCacheSize: 10,
    limits: { ...LIMITS, ...limits },
    sessionWaitMs: 30_000,
    forward: (request) => (forwarded.push(request), Promise.resolve()),
    publishChannel: (request) => (broadcast.push(request), shard.publishChannel(request)),
    handOff: () => Promise.reject(new Error("no hand-off in this test")),
    log: () => {},
    ...place,
  });
  return { shard, forwarded, broadcast, histograms };
}

async function connect(
  shard: Shard,
  uid: string,
  { device = "", transport = "tcp", access = null, since = 0 }: {
    device?: string;
    transport?: TransportName;
    access?: ChannelAccess | null;
    since?: number;
  } = {},
) {
  const conn = new FakeConn(transport);
  const session = new Session(conn, uid, device, shard, { access });
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
  assert.deepEqual(await shard.publish(message(ALICE, "one")), { s: 1, online: 1 });
  assert.deepEqual(await shard.publish(message(ALICE, "two")), { s: 2, online: 1 });
  await new Promise((resolve) => setTimeout(resolve));
  assert.deepEqual(conn.take(), [
    { y: 3, f: "op", t: ALICE, b: "one", s: 1 },
    { y: 3, f: "op", t: ALICE, b: "two", s: 2 },
  ]);
  // Stored until acked: listed as offline.
  assert.equal((await shard.offline(ALICE, "", 10)).length, 2);
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
    (await shard.offline(ALICE, "", 10)).map((text) => JSON.parse(text).s),
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
  assert.deepEqual(await shard.publishChannel(request), { recipients: 2, online: 2 });
  await new Promise((resolve) => setTimeout(resolve));
  assert.deepEqual(a.conn.take(), [{ y: 4, f: "bot", t: ALICE, c: "team", b: "standup", s: 1 }]);
  assert.deepEqual(b.conn.take(), [{ y: 4, f: "bot", t: BOB, c: "team", b: "standup", s: 2 }]);
  await shard.unsubscribe(BOB, "team");
  assert.deepEqual(await shard.publishChannel(request), { recipients: 1, online: 1 });
});

/** A bus entry of one channel message to "team". */
const entry = (id: string, body = id): BusEntry => ({
  id,
  requests: [{
    channel: "team",
    from: "bot",
    body: JSON.stringify(body),
    ttlSec: 0,
    volatile: false,
  }],
});

/** The bodies of the uid's stored messages, in `s` order. */
async function bodiesOf(shard: Shard, uid: string): Promise<string[]> {
  return (await shard.offline(uid, "", 100)).map((text) => JSON.parse(text).b);
}

Deno.test("Shard: bus entries are stored once, with the last id as the store's bus mark", async () => {
  const store = new MemoryStore();
  const { shard } = shardWith(store);
  await shard.subscribe(ALICE, "team");
  await shard.subscribe(BOB, "team");
  const batch = [entry("9-0"), entry("9-1", "second"), entry("10-0")];
  // The stream's latest id before the read (`streamTop`): its entries may be past it.
  const both = { recipients: 2, online: 0 };
  assert.deepEqual(await shard.publishBusEntries(batch, "8-0"), [both, both, both]);
  assert.equal(await store.busMark(), "10-0");
  // Read again (no XACK reached Redis): nothing new, whichever way the batch is cut.
  const none = { recipients: 0, online: 0 };
  assert.deepEqual(await shard.publishBusEntries(batch.slice(1), "10-0"), [none, none]);
  await shard.publishBusEntries([...batch, entry("11-0")], "10-0");
  for (const uid of [ALICE, BOB]) {
    assert.deepEqual(await bodiesOf(shard, uid), ["9-0", "second", "10-0", "11-0"], uid);
  }
  assert.equal(await store.busMark(), "11-0");
});

Deno.test("Shard: a settle taking over a dead node's uids replays the copies it never stored, once", async () => {
  const before = new ShardMap([{ id: "a/0", host: "", port: 1 }, { id: "b/0", host: "", port: 2 }]);
  const after = new ShardMap([{ id: "a/0", host: "", port: 1 }]);
  const uids = Array.from({ length: 200 }, (_, i) => `u${i}`);
  const mine = uids.find((uid) => before.indexOf(uid) === 0)!;
  const taken = uids.find((uid) => before.indexOf(uid) === 1)!;
  const store = new MemoryStore();
  for (const uid of [mine, taken]) await store.subscribe("team", uid);
  const { shard } = shardWith(store, {}, { map: before });
  // b died: its uids come here, held until the change settles.
  shard.setMap(after, 0, { hold: true });
  // A dead node: it stored the copies of what it read up to its group's position, whoever
  // published them (every node stores its own from the bus too).
  const range = await shard.settle({
    before: [...before.shards],
    from: [{ node: "b", storedUpTo: "5-0" }],
    until: "9-0",
  });
  assert.deepEqual(range, { after: "5-0", upTo: "9-0" });
  const stored = await shard.replay([
    entry("4-0", "b had it"),
    entry("6-0"),
    entry("6-1", "published through b"),
    entry("7-0", "published here"),
    entry("8-1"),
  ]);
  assert.equal(stored, 4);
  // Live entries up to the replay's end skip the uid taken over, not the others.
  await shard.publishBusEntries([entry("8-1"), entry("10-0")], "8-0");
  assert.deepEqual(await bodiesOf(shard, taken), [
    "6-0",
    "published through b",
    "published here",
    "8-1",
    "10-0",
  ]);
  assert.deepEqual(await bodiesOf(shard, mine), ["8-1", "10-0"]);
});

Deno.test("Shard: a settle after a planned change replays from the old owner's reported position", async () => {
  const before = new ShardMap([{ id: "a/0", host: "", port: 1 }, { id: "b/0", host: "", port: 2 }]);
  const after = new ShardMap([{ id: "a/0", host: "", port: 1 }]);
  const uids = Array.from({ length: 200 }, (_, i) => `u${i}`);
  const taken = uids.find((uid) => before.indexOf(uid) === 1)!;
  const store = new MemoryStore();
  await store.subscribe("team", taken);
  const { shard } = shardWith(store, {}, { map: before });
  shard.setMap(after, 0, { hold: true });
  // b left: its shard had stored copies up to 5-0 when it let the uids go.
  const range = await shard.settle({
    before: [...before.shards],
    from: [{ node: "b", positions: [{ marks: { "b/0": "5-0" } }], storedUpTo: null }],
    until: "9-0",
  });
  assert.deepEqual(range, { after: "5-0", upTo: "9-0" });
  // The bus read past the replay's end before the replay came: the skipping is over, the
  // replay still stores what it covers.
  await shard.publishBusEntries([entry("10-0")], "9-0");
  await shard.replay([entry("5-0", "b had it"), entry("6-0"), entry("7-1")]);
  assert.deepEqual(await bodiesOf(shard, taken), ["10-0", "6-0", "7-1"]);
});

Deno.test("Shard: with changes held together, a uid's copies are replayed from where its old shard let it go", async () => {
  const shards = (ids: string[]) => ids.map((id, i) => ({ id, host: "", port: i + 1 }));
  const before = new ShardMap(shards(["a/0", "b/0"]));
  // c joined (version 7), then b left (version 8), before this shard, c/0, settled either.
  const joined = new ShardMap(shards(["a/0", "b/0", "c/0"]));
  const after = new ShardMap(shards(["a/0", "c/0"]));
  const uids = Array.from({ length: 400 }, (_, i) => `u${i}`);
  const fromB = (uid: string) =>
    before.shardOf(uid).id === "b/0" && after.shardOf(uid).id === "c/0";
  const atJoin = uids.find((uid) => fromB(uid) && joined.shardOf(uid).id === "c/0")!;
  const atLeave = uids.find((uid) => fromB(uid) && joined.shardOf(uid).id === "b/0")!;
  const store = new MemoryStore();
  for (const uid of [atJoin, atLeave]) await store.subscribe("team", uid);
  const { shard } = shardWith(store, {}, { map: before, index: -1 });
  shard.setMap(after, 1, { hold: true });
  // b stored up to 5-0 when it applied the join, up to 7-0 when it left.
  const range = await shard.settle({
    before: [...before.shards],
    from: [{
      node: "b",
      positions: [
        { marks: { "b/0": "5-0" }, shards: joined.shards.map((shard) => shard.id) },
        { marks: { "b/0": "7-0" }, shards: after.shards.map((shard) => shard.id) },
      ],
      storedUpTo: null,
    }],
    until: "9-0",
  });
  assert.deepEqual(range, { after: "5-0", upTo: "9-0" });
  await shard.replay([entry("6-0"), entry("8-0")]);
  assert.deepEqual(await bodiesOf(shard, atJoin), ["6-0", "8-0"]);
  // b still owned it at 6-0, and stored that copy: not again here.
  assert.deepEqual(await bodiesOf(shard, atLeave), ["8-0"]);
});

/** A memory store whose appends wait until `open()` is called. */
class GatedStore extends MemoryStore {
  #gate = Promise.withResolvers<void>();
  appending = Promise.withResolvers<void>();
  open(): void {
    this.#gate.resolve();
  }
  override async append(messages: readonly StoredMessage[], busMark?: string): Promise<void> {
    this.appending.resolve();
    await this.#gate.promise;
    return super.append(messages, busMark);
  }
}

Deno.test("Shard: the position at a change counts a batch decided before it once stored, not one after", async () => {
  const store = new GatedStore();
  const { shard } = shardWith(store);
  await shard.subscribe(ALICE, "team");
  const storing = shard.publishBusEntries([entry("9-0")], "8-0");
  // Its copies are chosen and on their way to the store when the map changes.
  await store.appending.promise;
  shard.setMap(GROWN, 0);
  store.open();
  await storing;
  assert.equal(await shard.appliedPosition(), "9-0");
  // A change with nothing in flight: the position is the last batch stored.
  shard.setMap(MAP, 0);
  assert.equal(await shard.appliedPosition(), "9-0");
});

Deno.test("Shard: a settle without dead nodes, or whose dead shard left no mark, replays nothing", async () => {
  const before = new ShardMap([{ id: "a/0", host: "", port: 1 }, { id: "b/0", host: "", port: 2 }]);
  const after = new ShardMap([{ id: "a/0", host: "", port: 1 }]);
  const { shard } = shardWith(new MemoryStore(), {}, { map: before });
  shard.setMap(after, 0, { hold: true });
  const takeOver = {
    before: [...before.shards],
    from: [{ node: "b", storedUpTo: null }],
    until: "9-0",
  };
  assert.equal(await shard.settle(takeOver), null);
  shard.setMap(before, 0, { hold: true });
  assert.equal(await shard.settle(), null);
});

Deno.test("Shard: a shard started on a store with a bus mark skips the entries up to it", async () => {
  const store = new MemoryStore();
  const first = shardWith(store).shard;
  await first.subscribe(ALICE, "team");
  await first.publishBusEntries([entry("9-0"), entry("10-0")], "8-0");
  // A restart: a new shard on the same store, with the mark it read there.
  const { shard } = shardWith(store, {}, { busMark: await store.busMark() });
  await shard.publishBusEntries([entry("9-0"), entry("10-0"), entry("10-1")], "10-0");
  assert.deepEqual(await bodiesOf(shard, ALICE), ["9-0", "10-0", "10-1"]);
});

Deno.test("Shard: a bus entry whose store failed is stored when read again", async () => {
  const store = new MemoryStore();
  const { shard } = shardWith(store);
  await shard.subscribe(ALICE, "team");
  const append = store.append;
  store.append = () => Promise.reject(new StorageUnavailableError("down"));
  await rejection(shard.publishBusEntries([entry("9-0")], "9-0"));
  store.append = append;
  assert.equal(await store.busMark(), null);
  await shard.publishBusEntries([entry("9-0")], "9-0");
  assert.deepEqual(await bodiesOf(shard, ALICE), ["9-0"]);
});

Deno.test("Shard: a bus mark past the stream's last entry is another stream's: nothing is skipped", async () => {
  const store = new MemoryStore();
  const { shard } = shardWith(store, {}, { busMark: "99-0" });
  await shard.subscribe(ALICE, "team");
  // A stream made anew (Redis lost the old one): its last entry was 5-0 when the bus read
  // these, some of which are below the old mark, some past it.
  await shard.publishBusEntries([entry("6-0"), entry("100-0")], "5-0");
  assert.deepEqual(await bodiesOf(shard, ALICE), ["6-0", "100-0"]);
  assert.equal(await store.busMark(), "100-0");
});

Deno.test("Shard: a store that is down answers 503 storage unavailable and keeps no message", async () => {
  const store = new MemoryStore();
  const { shard } = shardWith(store);
  await shard.publish(message(ALICE, "stored"));
  store.append = () => Promise.reject(new StorageUnavailableError("disk gone"));
  const failed = await rejection(shard.publish(message(ALICE, "lost?")));
  assert.ok(failed instanceof ServiceError);
  assert.deepEqual([failed.message, failed.status], ["storage unavailable", 503]);
  assert.deepEqual((await shard.offline(ALICE, "", 10)).map((t) => JSON.parse(t).b), ["stored"]);
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

const ack = (seq: number) => new TextEncoder().encode(`{"y":5,"s":${seq}}`);

Deno.test("Shard: each device replays from its own cursor; an ack moves only its own", async () => {
  const { shard } = shardWith();
  const phone = await connect(shard, ALICE, { device: "phone" });
  for (let i = 1; i <= 3; i++) await shard.publish(message(ALICE, `m${i}`));
  await new Promise((resolve) => setTimeout(resolve));
  assert.deepEqual(phone.conn.take().map((m) => m.s), [1, 2, 3]);
  phone.session.receive(ack(3));
  // The tablet was offline while the phone read and acked: it still gets every message.
  const tablet = await connect(shard, ALICE, { device: "tablet" });
  assert.deepEqual(tablet.conn.take().map((m) => m.s), [1, 2, 3]);
  assert.deepEqual(await shard.offline(ALICE, "phone", 10), []);
  assert.equal((await shard.offline(ALICE, "tablet", 10)).length, 3);
  tablet.session.receive(ack(2));
  assert.deepEqual((await shard.offline(ALICE, "tablet", 10)).map((t) => JSON.parse(t).s), [3]);
  // A receipt counts devices, not connections.
  await connect(shard, ALICE, { device: "phone" });
  assert.deepEqual(await shard.publish(message(ALICE, "m4")), { s: 4, online: 2 });
});

Deno.test("Shard: a new device past --max_devices is refused, a known one still connects", async () => {
  const { shard } = shardWith();
  for (const device of ["a", "b", "c"]) (await connect(shard, BOB, { device })).session.end();
  const extra = await connect(shard, BOB, { device: "d" });
  assert.deepEqual(extra.conn.take(), [{ error: "too many devices" }]);
  assert.equal(extra.conn.closedGracefully, true);
  const known = await connect(shard, BOB, { device: "b" });
  assert.equal(known.conn.closedGracefully, undefined);
});

Deno.test("Shard: counts messages taken and sent by type, deliveries in the latency histogram, sessions by transport", async () => {
  const { shard, histograms } = shardWith();
  const histogram = histograms.delivery;
  const [alice1, alice2] = [
    await connect(shard, ALICE),
    await connect(shard, ALICE, { transport: "ws" }),
  ];
  assert.equal(shard.counters.tcp_connection_number, 1);
  assert.equal(shard.counters.ws_connection_number, 1);
  await shard.subscribe(ALICE, "c1");
  await shard.subscribe(BOB, "c1");
  await shard.publish(message(ALICE, "one"));
  await shard.publish(message(BOB, "to bob, offline"));
  await shard.publishChannel({
    channel: "c1",
    from: "op",
    body: '"all"',
    ttlSec: 0,
    volatile: false,
  });
  assert.equal(shard.counters.accepted_msg, 2);
  assert.equal(shard.counters.accepted_cmsg, 2, "a copy for each member");
  assert.equal(shard.counters.sent_msg, 2, "alice's message on both her connections");
  assert.equal(shard.counters.sent_cmsg, 2);
  assert.equal(alice1.conn.take().length, 2);
  assert.equal(alice2.conn.take().length, 2);
  assert.equal(histogram.counts.reduce((a, b) => a + b), 4, "one observation a live delivery");
  assert.ok(histogram.sum >= 0 && histogram.sum < 4);
  alice2.session.end();
  assert.equal(shard.counters.ws_connection_number, 0);
  assert.equal(shard.counters.tcp_connection_number, 1);
});

const frame = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
/** A turn of the event loop: work started by a frame runs to its end (memory store). */
const turn = () => new Promise((resolve) => setTimeout(resolve, 5));

/** Access that allows only the channels named, and asks through a promise, as a backend. */
function onlyChannels(...allowed: string[]): ChannelAccess & { asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    check(uid, channel, action) {
      asked.push(`${uid} ${action} ${channel}`);
      return Promise.resolve(allowed.includes(channel) ? "allow" : "forbidden");
    },
  };
}

Deno.test("Shard: a y=1 without permission is forbidden, stored nowhere, and the stream stays", async () => {
  const store = new MemoryStore();
  const { shard } = shardWith(store);
  const access = onlyChannels("team");
  const { conn, session } = await connect(shard, ALICE, { access });
  session.receive(frame({ y: 1, c: "other" }));
  session.receive(frame({ y: 1, c: "team" }));
  await turn();
  assert.deepEqual(conn.take(), [{ error: "forbidden" }]);
  assert.deepEqual(access.asked, [`${ALICE} subscribe other`, `${ALICE} subscribe team`]);
  assert.deepEqual(await store.channels(ALICE), ["team"]);
  assert.equal(conn.closedGracefully, undefined);
  assert.equal(shard.counters.forbidden_number, 1);
  session.receive(frame({ y: 0 }));
  assert.deepEqual(conn.take(), [{ y: 0 }]);
});

Deno.test("Shard: a y=4 without permission reaches no member and no other shard", async () => {
  const { shard, broadcast } = shardWith();
  await shard.subscribe(BOB, "other");
  await shard.subscribe(BOB, "team");
  const bob = await connect(shard, BOB);
  const alice = await connect(shard, ALICE, { access: onlyChannels("team") });
  alice.session.receive(frame({ y: 4, c: "other", b: "leak" }));
  alice.session.receive(frame({ y: 4, c: "team", b: "hello" }));
  await turn();
  assert.deepEqual(alice.conn.take(), [{ error: "forbidden" }]);
  assert.deepEqual(bob.conn.take(), [{ y: 4, f: ALICE, t: BOB, c: "team", b: "hello", s: 1 }]);
  assert.deepEqual(broadcast.map((request) => request.channel), ["team"]);
});

Deno.test("Shard: channel access that cannot answer is auth unavailable, the stream staying", async () => {
  const { shard } = shardWith();
  const down: ChannelAccess = { check: () => "unavailable" };
  const { conn } = await connect(shard, ALICE, { access: down });
  const session = [...shard.sessions][0];
  session.receive(frame({ y: 1, c: "team" }));
  await turn();
  assert.deepEqual(conn.take(), [{ error: "auth unavailable" }]);
  assert.equal(conn.closedGracefully, undefined);
});

Deno.test("Shard: the admin API's subscribe needs no permission", async () => {
  const store = new MemoryStore();
  const { shard } = shardWith(store);
  await connect(shard, ALICE, { access: onlyChannels() });
  await shard.subscribe(ALICE, "anything");
  assert.deepEqual(await store.channels(ALICE), ["anything"]);
});

Deno.test("Shard: past --max_connections_per_uid a uid is refused until one of its sessions closes", async () => {
  const { shard } = shardWith(new MemoryStore(), { connectionsPerUid: 2 });
  assert.equal(shard.admit(ALICE), null);
  const first = await connect(shard, ALICE);
  assert.equal(shard.admit(ALICE), null);
  await connect(shard, ALICE);
  assert.equal(shard.admit(ALICE), "too many connections");
  assert.equal(shard.admit(BOB), null, "another uid is not affected");
  first.session.end();
  assert.equal(shard.admit(ALICE), null);
});

Deno.test("Shard: past --max_channels_per_uid a y=1 is too many channels, even sent all at once", async () => {
  const store = new MemoryStore();
  const { shard } = shardWith(store, { channelsPerUid: 3 });
  await shard.subscribe(ALICE, "from-admin"); // counts: it is one of the uid's channels
  const { conn, session } = await connect(shard, ALICE);
  for (const c of ["c1", "c2", "c3", "c4", "c1"]) session.receive(frame({ y: 1, c }));
  await turn();
  assert.deepEqual(conn.take(), [{ error: "too many channels" }, { error: "too many channels" }]);
  assert.deepEqual((await store.channels(ALICE)).sort(), ["c1", "c2", "from-admin"]);
  assert.equal(shard.counters.limit_channels_number, 2);
  // At the limit, a channel it has is still fine, and leaving one makes room.
  session.receive(frame({ y: 1, c: "c1" }));
  session.receive(frame({ y: 2, c: "c2" }));
  await turn();
  session.receive(frame({ y: 1, c: "c4" }));
  await turn();
  assert.deepEqual(conn.take(), []);
  assert.deepEqual((await store.channels(ALICE)).sort(), ["c1", "c4", "from-admin"]);
  // The admin API is not held to it.
  await shard.subscribe(ALICE, "c5");
  assert.equal((await store.channels(ALICE)).length, 4);
});

Deno.test("Shard: a y=1 the store refuses gives its place in the channel limit back", async () => {
  const store = new MemoryStore();
  const { shard } = shardWith(store, { channelsPerUid: 1 });
  const { conn, session } = await connect(shard, ALICE);
  const subscribe = store.subscribe;
  store.subscribe = () => Promise.reject(new StorageUnavailableError("disk gone"));
  session.receive(frame({ y: 1, c: "c1" }));
  await turn();
  assert.deepEqual(conn.take(), [{ error: "storage unavailable" }]);
  store.subscribe = subscribe;
  session.receive(frame({ y: 1, c: "c2" }));
  await turn();
  assert.deepEqual(conn.take(), []);
  assert.deepEqual(await store.channels(ALICE), ["c2"]);
});

Deno.test("Shard: a connection's since acknowledges every s up to it, then replays the rest", async () => {
  const { shard } = shardWith();
  for (let i = 1; i <= 5; i++) await shard.publish(message(ALICE, `m${i}`));
  const { conn } = await connect(shard, ALICE, { transport: "sse", since: 3 });
  assert.deepEqual(conn.take().map((m) => m.s), [4, 5]);
  // Acknowledged for good: a later connection without a since starts after 3 too.
  const { conn: later } = await connect(shard, ALICE, { transport: "ws" });
  assert.deepEqual(later.take().map((m) => m.s), [4, 5]);
  assert.deepEqual((await shard.offline(ALICE, "", 10)).map((t) => JSON.parse(t).s), [4, 5]);
});

Deno.test("Shard: a since beyond the last s is answered and acknowledges nothing", async () => {
  const { shard } = shardWith();
  await shard.publish(message(ALICE, "m1"));
  const { conn } = await connect(shard, ALICE, { transport: "poll", since: 7 });
  assert.deepEqual(conn.take(), [
    { error: "ack beyond last seq" },
    { y: 3, f: "op", t: ALICE, b: "m1", s: 1 },
  ]);
});

Deno.test("Shard: a session whose poll left stays online and is rejoined by the next poll", async () => {
  const { shard } = shardWith();
  const { conn, session } = await connect(shard, ALICE, { transport: "poll" });
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
  const { session } = await connect(shard, ALICE, { transport: "poll" });
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
    (["tcp", "ws", "ws", "sse", "poll"] as const).map((transport) =>
      connect(shard, ALICE, { transport })
    ),
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
  const sender = { uid: ALICE, device: "", access: null };
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

/** {@linkcode MAP} with a third shard, and a uid of shard 0 that it moves there. */
const GROWN = new ShardMap([...MAP.shards, { id: "n/2", host: "", port: 3 }]);
const MOVING = OWNED.find((uid) => GROWN.indexOf(uid) === 2)!;
/** A map in which shard 0 gains a uid of shard 1. */
const GAINED_MAP = new ShardMap([MAP.shards[0], { id: "n/9", host: "", port: 9 }]);
const GAINED = Array.from({ length: 400 }, (_, i) => `g${i}`).find((uid) =>
  MAP.indexOf(uid) === 1 && GAINED_MAP.indexOf(uid) === 0
)!;

Deno.test("Shard: a map change closes a moved uid's sessions with moved and forgets its state", async () => {
  const store = new MemoryStore();
  const { shard } = shardWith(store);
  const { conn } = await connect(shard, MOVING);
  const { conn: stays } = await connect(shard, ALICE);
  assert.deepEqual(await shard.publish(message(MOVING, "before")), { s: 1, online: 1 });
  conn.take();
  shard.setMap(GROWN, 0);
  assert.deepEqual(conn.take(), [{ error: "moved" }]);
  assert.equal(conn.closedGracefully, true);
  assert.equal(stays.closedGracefully, undefined, "a uid that stays keeps its session");
  assert.equal(shard.counters.moved_sessions, 1);
  const refused = await rejection(shard.publish(message(MOVING, "x")));
  assert.ok(refused instanceof ServiceError && refused.status === 421);
  // Its new owner numbers on from the store...
  await store.append([{
    uid: MOVING,
    seq: 2,
    type: 3,
    from: "op",
    body: '"elsewhere"',
    expiresAt: 0,
  }]);
  // ... and when the map gives it back, this shard reads that state again: no reused s.
  shard.setMap(MAP, 0);
  assert.deepEqual(await shard.publish(message(MOVING, "back")), { s: 3, online: 0 });
});

Deno.test("Shard: a uid a held change gives waits for settle, then reads the store", async () => {
  const store = new MemoryStore();
  const { shard } = shardWith(store);
  shard.setMap(GAINED_MAP, 0, { hold: true });
  let answered = false;
  const published = shard.publish(message(GAINED, "new owner")).then((receipt) => {
    answered = true;
    return receipt;
  });
  // A uid it owned before is served at once meanwhile.
  assert.deepEqual(await shard.publish(message(ALICE, "still mine")), { s: 1, online: 0 });
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(answered, false, "held until the former owner let go");
  // The former owner's last writes land before it lets go.
  await store.append([{ uid: GAINED, seq: 4, type: 3, from: "op", body: '"old"', expiresAt: 0 }]);
  shard.settle();
  assert.deepEqual(await published, { s: 5, online: 0 });
});

Deno.test("Shard: a reset forgets every uid and holds them all until settle", async () => {
  const store = new MemoryStore();
  const { shard } = shardWith(store);
  const { conn } = await connect(shard, ALICE);
  await shard.publish(message(ALICE, "one"));
  conn.take();
  shard.setMap(MAP, 0, { hold: true, reset: true });
  assert.deepEqual(conn.take(), [{ error: "moved" }]);
  let answered = false;
  const published = shard.publish(message(ALICE, "two")).then((r) => (answered = true, r));
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(answered, false);
  await store.append([{ uid: ALICE, seq: 2, type: 3, from: "op", body: '"other"', expiresAt: 0 }]);
  shard.settle();
  assert.deepEqual(await published, { s: 3, online: 0 });
});

Deno.test("Shard: a hand-off moves a uid's seq, cursors, messages and channels; deleted once taken", async () => {
  const oldStore = new MemoryStore();
  const newStore = new MemoryStore();
  const { shard: next } = shardWith(newStore, {}, { index: 2, map: GROWN });
  next.setMap(GROWN, 2, { hold: true, reset: true });
  const { shard: old } = shardWith(oldStore, {}, {
    handOff: (users) => next.importUsers(users),
  });
  await connect(old, MOVING, { device: "phone" });
  await old.subscribe(MOVING, "news");
  for (const body of ["one", "two", "three"]) await old.publish(message(MOVING, body));
  const phone = { uid: MOVING, device: "phone", access: null };
  assert.equal(await old.onMessage(phone, { y: 5, s: 1 }), undefined);
  await old.publish(message(ALICE, "stays"));
  old.setMap(GROWN, 0);
  await new Promise((resolve) => setTimeout(resolve, 10)); // the journal's commit
  assert.deepEqual(await old.handOff(), { left: 0 });
  assert.deepEqual(await oldStore.uids(), [ALICE], "deleted once the new owner took it");
  assert.equal(old.counters.handed_off_uids, 1);
  next.settle();
  assert.deepEqual(await next.publish(message(MOVING, "four")), { s: 4, online: 0 });
  assert.deepEqual(await newStore.channels(MOVING), ["news"]);
  const listed = await next.offline(MOVING, "phone", 10);
  assert.deepEqual(listed.map((text) => JSON.parse(text).s), [2, 3, 4], "the phone's cursor");
});

Deno.test("Shard: a hand-off that fails keeps everything; one found stale is deleted", async () => {
  const store = new MemoryStore();
  let answer: () => Promise<string[]> = () => Promise.reject(new Error("unreachable"));
  const { shard } = shardWith(store, {}, { handOff: () => answer() });
  await shard.publish(message(MOVING, "one"));
  shard.setMap(GROWN, 0);
  assert.deepEqual(await shard.handOff(), { left: 1, reason: "unreachable" });
  assert.equal((await store.userState(MOVING)).lastSeq, 1, "kept");
  answer = () => Promise.resolve([MOVING]);
  assert.deepEqual(await shard.handOff(), { left: 0 });
  assert.deepEqual(await store.uids(), []);
});

Deno.test("Shard: a hand-off tried again under the same map does not scan the store again", async () => {
  const store = new MemoryStore();
  let scans = 0;
  const uids = store.uids.bind(store);
  store.uids = () => (scans++, uids());
  let answer: () => Promise<string[]> = () => Promise.reject(new Error("unreachable"));
  const { shard } = shardWith(store, {}, { handOff: () => answer() });
  await shard.publish(message(MOVING, "one"));
  shard.setMap(GROWN, 0);
  assert.deepEqual(await shard.handOff(), { left: 1, reason: "unreachable" });
  assert.deepEqual(await shard.handOff(), { left: 1, reason: "unreachable" });
  assert.equal(scans, 1, "the retry took what the first attempt left");
  // Another map: what to hand off is found afresh.
  shard.setMap(MAP, 0);
  shard.setMap(GROWN, 0);
  answer = () => Promise.resolve([]);
  assert.deepEqual(await shard.handOff(), { left: 0 });
  assert.equal(scans, 2);
  assert.deepEqual(await store.uids(), []);
});

Deno.test("Shard: an import for a uid it served throughout is refused as stale", async () => {
  const store = new MemoryStore();
  const { shard } = shardWith(store);
  await shard.publish(message(ALICE, "mine"));
  const stale = { uid: ALICE, lastSeq: 9, devices: [], messages: [], channels: [] };
  assert.deepEqual(await shard.importUsers([stale]), [ALICE]);
  assert.equal((await store.userState(ALICE)).lastSeq, 1);
  const refused = await rejection(shard.importUsers([{ ...stale, uid: FOREIGN }]));
  assert.ok(refused instanceof ServiceError && refused.status === 421);
});

/** The map a lost member "x" died in: this shard's "n/0" beside its "x/0". */
const LOST_MAP = new ShardMap([{ id: "n/0", host: "", port: 1 }, { id: "x/0", host: "", port: 2 }]);

Deno.test("Shard: a uid a lost member held is refused as state lost, unless there is state for it", async () => {
  const store = new MemoryStore();
  const { shard } = shardWith(store);
  const [lost, handed] = OWNED.filter((uid) => LOST_MAP.indexOf(uid) === 1);
  const kept = OWNED.find((uid) => LOST_MAP.indexOf(uid) === 0)!;
  shard.setLost([{ node: "x", shards: ["n/0", "x/0"] }]);
  const refused = await rejection(shard.publish(message(lost, "one")));
  assert.ok(refused instanceof ServiceError && refused.status === 503, String(refused));
  assert.equal(refused.message, "state lost");
  const { conn } = await connect(shard, lost);
  assert.deepEqual(conn.take(), [{ error: "state lost" }]);
  assert.deepEqual(await shard.publish(message(kept, "one")), { s: 1, online: 0 });
  // Handed off before its owner died: its state is here.
  await store.importUsers([{ uid: handed, lastSeq: 4, devices: [], messages: [], channels: [] }]);
  assert.deepEqual(await shard.publish(message(handed, "five")), { s: 5, online: 0 });
  shard.setLost([]);
  assert.deepEqual(await shard.publish(message(lost, "one")), { s: 1, online: 0 });
});

Deno.test("Shard: a uid of an accepted loss is served, numbered above its floor", async () => {
  const store = new MemoryStore();
  const { shard } = shardWith(store);
  const [fresh, handed, above] = OWNED.filter((uid) => LOST_MAP.indexOf(uid) === 1);
  const other = OWNED.find((uid) => LOST_MAP.indexOf(uid) === 0)!;
  await store.importUsers([{ uid: handed, lastSeq: 4, devices: [], messages: [], channels: [] }]);
  await store.importUsers([{ uid: above, lastSeq: 900, devices: [], messages: [], channels: [] }]);
  shard.setLost([{ node: "x", shards: ["n/0", "x/0"], floor: 500 }]);
  assert.deepEqual(await shard.publish(message(fresh, "one")), { s: 501, online: 0 });
  assert.deepEqual(await shard.publish(message(handed, "two")), { s: 501, online: 0 });
  assert.deepEqual(await shard.publish(message(above, "three")), { s: 901, online: 0 });
  assert.deepEqual(await shard.publish(message(other, "four")), { s: 1, online: 0 });
  // A client's cursor from the lost owner is below the floor: it gets what follows.
  const { conn } = await connect(shard, fresh, { since: 40 });
  assert.deepEqual(conn.take().map((m) => (m as { s: number }).s), [501]);
});
