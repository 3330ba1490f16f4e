import assert from "node:assert/strict";
import type { Delivery } from "../core/messages.ts";
import type { ClientMessage } from "../protocol/message.ts";
import { newShardCounters } from "../stats/counters.ts";
import { FakeConn } from "../testing/fake_conn.ts";
import { Allowances } from "./rate.ts";
import { type Outcome, Session, type SessionOwner, submit } from "./session.ts";

const encoder = new TextEncoder();
const body = (text: string) => encoder.encode(text);

/**
 * An owner that records messages and closes, answering each message with `work`; its
 * clients may send `rate` messages a second, `burst` at once.
 */
function owner(work?: () => Outcome, rate = { perSec: 100, burst: 500 }) {
  const messages: Exclude<ClientMessage, { y: 0 }>[] = [];
  let closes = 0;
  const allowances = new Allowances(rate);
  const me: SessionOwner & { messages: typeof messages; closes: () => number } = {
    counters: newShardCounters(),
    messageRate: rate,
    sendAllowance: (sender, now) => allowances.of(sender.uid, sender.device, now),
    onMessage(_session, message) {
      messages.push(message);
      return work?.();
    },
    onClose() {
      closes++;
    },
    messages,
    closes: () => closes,
  };
  return me;
}

function delivery(seq: number, body = `"m${seq}"`): Delivery {
  return { uid: "u1", seq, type: 3, from: "op", body };
}

/** A session past its replay. */
function live(conn: FakeConn, o: SessionOwner): Session {
  const session = new Session(conn, "u1", "", o);
  session.goLive();
  return session;
}

Deno.test("Session: a heartbeat is answered by the session itself", () => {
  const conn = new FakeConn();
  const o = owner();
  live(conn, o).receive(body('{"y":0}'));
  assert.deepEqual(conn.take(), [{ y: 0 }]);
  assert.deepEqual(o.messages, []);
  assert.equal(o.counters.recv_hb, 1);
});

Deno.test("Session: a heartbeat during replay is answered after it, after what came live", () => {
  const conn = new FakeConn();
  const session = new Session(conn, "u1", "", owner());
  session.receive(body('{"y":0}'));
  session.receive(body('{"y":0}'));
  assert.deepEqual(conn.take(), [], "no answer while stored messages are still coming");
  session.send(delivery(1));
  session.deliver(delivery(2));
  session.goLive();
  assert.deepEqual(conn.take().map((m) => m.s ?? m.y), [1, 2, 0, 0]);
  session.receive(body('{"y":0}'));
  assert.deepEqual(conn.take(), [{ y: 0 }]);
});

Deno.test("Session: a valid message goes to the owner with the sender as its uid", () => {
  const o = owner();
  const session = new Session(new FakeConn(), "u1", "", o);
  session.receive(body('{"y":3,"f":"spoofed","t":"u2","b":{"id":12345678901234567890}}'));
  assert.deepEqual(o.messages, [{ y: 3, t: "u2", b: '{"id":12345678901234567890}' }]);
  assert.equal(o.counters.recv_msg, 1);
});

Deno.test("Session: a field error is answered and the session stays", () => {
  const conn = new FakeConn();
  const session = live(conn, owner());
  session.receive(body('{"y":3,"t":"not a name","b":1}'));
  assert.deepEqual(conn.take(), [{ error: "invalid t" }]);
  assert.equal(conn.closedGracefully, undefined);
  session.receive(body('{"y":0}'));
  assert.deepEqual(conn.take(), [{ y: 0 }]);
});

Deno.test("Session: a fatal message is answered, then the session closes and leaves once", () => {
  const conn = new FakeConn();
  const o = owner();
  const session = new Session(conn, "u1", "", o);
  session.receive(body("not json"));
  assert.deepEqual(conn.take(), [{ error: "bad json" }]);
  assert.equal(conn.closedGracefully, true);
  assert.equal(o.closes(), 1, "the owner hears of it at once, not when the client closes");
  session.receive(body('{"y":0}'));
  session.closed();
  assert.deepEqual(conn.take(), []);
  assert.equal(o.closes(), 1);
});

Deno.test("Session: replay first, live deliveries held back, each s sent once", () => {
  const conn = new FakeConn();
  const session = new Session(conn, "u1", "", owner());
  session.deliver(delivery(3)); // live, during replay
  session.send(delivery(1)); // replayed
  session.send(delivery(2));
  session.send(delivery(3)); // replayed too: the live copy must not go out again
  session.goLive();
  session.deliver(delivery(4));
  session.deliver(delivery(2)); // an old one arriving late
  session.deliver({ ...delivery(0), body: '"volatile"' });
  assert.deepEqual(conn.take().map((m) => m.s ?? m.b), [1, 2, 3, 4, "volatile"]);
});

Deno.test("Session: past 256 messages at work the connection is paused, at 128 resumed", async () => {
  const conn = new FakeConn();
  const pending: (() => void)[] = [];
  const session = new Session(
    conn,
    "u1",
    "",
    owner(() => new Promise<undefined>((resolve) => pending.push(() => resolve(undefined)))),
  );
  for (let i = 0; i < 255; i++) session.receive(body('{"y":1,"c":"c1"}'));
  assert.equal(conn.paused, false);
  session.receive(body('{"y":1,"c":"c1"}'));
  assert.equal(conn.paused, true);
  for (const resolve of pending.splice(0, 127)) resolve();
  await new Promise((r) => setTimeout(r));
  assert.equal(conn.paused, true, "still 129 at work");
  pending.shift()!();
  await new Promise((r) => setTimeout(r));
  assert.equal(conn.paused, false);
});

Deno.test("Session: end closes gracefully; a closed connection takes nothing more", () => {
  const conn = new FakeConn();
  const o = owner();
  const session = new Session(conn, "u1", "", o);
  session.end();
  assert.equal(conn.closedGracefully, true);
  session.send(delivery(1));
  session.fail("late");
  assert.deepEqual(conn.take(), []);
  assert.equal(o.closes(), 1);
});

Deno.test("Session: past a burst, a message is too many messages and dropped; acks are free", () => {
  const conn = new FakeConn();
  // One a second: what the test's few milliseconds earn is far from a message.
  const o = owner(undefined, { perSec: 1, burst: 5 });
  const session = new Session(conn, "u1", "", o);
  for (let i = 0; i < 5; i++) session.receive(body(`{"y":3,"t":"u2","b":${i}}`));
  session.receive(body('{"y":3,"t":"u2","b":"sixth"}'));
  session.receive(body('{"y":0}'));
  for (let s = 1; s <= 20; s++) session.receive(body(`{"y":5,"s":${s}}`));
  assert.deepEqual(conn.take(), [{ error: "too many messages" }, { error: "too many messages" }]);
  assert.deepEqual(o.messages.map((m) => "b" in m ? m.b : m.y).slice(0, 5), [
    "0",
    "1",
    "2",
    "3",
    "4",
  ]);
  assert.equal(o.messages.filter((m) => m.y === 5).length, 20, "every ack went through");
  assert.equal(o.messages.length, 25);
  assert.equal(o.counters.limit_messages_number, 2);
  assert.equal(conn.closedGracefully, undefined);
});

/** Runs `test` with `Date.now` moved on by what it passes to `advance`. */
function withClock(test: (advance: (ms: number) => void) => void): void {
  const realNow = Date.now;
  let offset = 0;
  Date.now = () => realNow() + offset;
  try {
    test((ms) => offset += ms);
  } finally {
    Date.now = realNow;
  }
}

Deno.test("Session: the bucket refills at the rate, up to a burst", () =>
  withClock((advance) => {
    const conn = new FakeConn();
    const o = owner(undefined, { perSec: 10, burst: 5 });
    const session = new Session(conn, "u1", "", o);
    for (let i = 0; i < 5; i++) session.receive(body('{"y":1,"c":"c1"}'));
    // 300 ms later: three more (10 a second).
    advance(300);
    for (let i = 0; i < 3; i++) session.receive(body('{"y":1,"c":"c1"}'));
    assert.deepEqual(conn.take(), []);
    // An hour later: a burst again, not 36,000.
    advance(3_600_000);
    for (let i = 0; i < 6; i++) session.receive(body('{"y":1,"c":"c1"}'));
    assert.deepEqual(conn.take(), [{ error: "too many messages" }]);
    assert.equal(o.messages.length, 13);
  }));

Deno.test("Session: a sweep keeps a budget being earned back; one full again is as new", () =>
  withClock((advance) => {
    const conn = new FakeConn();
    const o = owner(undefined, { perSec: 1, burst: 5 });
    const session = live(conn, o);
    const send = (n: number) => {
      for (let i = 0; i < n; i++) session.receive(body('{"y":1,"c":"c1"}'));
    };
    send(5);
    advance(100);
    session.sweep(Date.now(), 60_000, 60_000);
    send(1);
    assert.deepEqual(conn.take(), [{ error: "too many messages" }], "swept, still spent");
    advance(10_000);
    session.sweep(Date.now(), 60_000, 60_000);
    send(6);
    assert.deepEqual(conn.take(), [{ error: "too many messages" }], "a burst, then too many");
    assert.equal(o.messages.length, 10);
  }));

Deno.test("Session: a client that keeps sending past the limit is closed; one that slows is not", () =>
  withClock((advance) => {
    const rate = { perSec: 1, burst: 5 };
    const keeps = live(new FakeConn(), owner(undefined, rate));
    const keepsConn = keeps.conn as FakeConn;
    // A burst, a burst refused, and one more.
    for (let i = 0; i < 11; i++) keeps.receive(body('{"y":0}'));
    const sent = keepsConn.take();
    assert.deepEqual(sent.slice(5), [
      ...Array(5).fill({ error: "too many messages" }),
      { error: "rate limit exceeded" },
    ]);
    assert.equal(keepsConn.closedGracefully, true);

    const slows = live(new FakeConn(), owner(undefined, rate));
    const slowsConn = slows.conn as FakeConn;
    for (let i = 0; i < 6; i++) slows.receive(body('{"y":0}'));
    for (let second = 1; second <= 20; second++) {
      advance(1000); // a second on, it sends what the rate allows
      slows.receive(body('{"y":0}'));
    }
    assert.equal(slowsConn.closedGracefully, undefined);
    assert.deepEqual(slowsConn.take().filter((m) => "error" in m), [{
      error: "too many messages",
    }]);
  }));

Deno.test("Session: a refusal from the owner is answered as an error; the session stays", async () => {
  const conn = new FakeConn();
  const session = new Session(conn, "u1", "", owner(() => Promise.resolve("forbidden")));
  session.receive(body('{"y":1,"c":"c1"}'));
  await new Promise((r) => setTimeout(r));
  assert.deepEqual(conn.take(), [{ error: "forbidden" }]);
  assert.equal(conn.closedGracefully, undefined);
});

Deno.test("Session: fail gives the connection its reason (a WebSocket's close frame)", () => {
  const conn = new FakeConn("ws");
  new Session(conn, "u1", "", owner()).receive(body("not json"));
  assert.deepEqual(conn.take(), [{ error: "bad json" }]);
  assert.deepEqual([conn.closedGracefully, conn.closeReason], [true, "bad json"]);
});

Deno.test("Session: silence closes it only where the client writes on the connection", () => {
  const now = Date.now();
  for (const transport of ["tcp", "ws", "sse", "poll"] as const) {
    const conn = new FakeConn(transport);
    const session = new Session(conn, "u1", "", owner());
    session.lastSeen = now - 10_000;
    session.sweep(now, 5_000, 5_000);
    assert.equal(conn.closedGracefully, conn.upstream ? true : undefined, transport);
  }
  const conn = new FakeConn("ws");
  const session = new Session(conn, "u1", "", owner());
  session.lastSeen = now - 10_000;
  session.alive(); // a ping
  session.sweep(now, 5_000, 5_000);
  assert.equal(conn.closedGracefully, undefined);
});

Deno.test("Session: one whose connection left waits without one, then is forgotten", () => {
  const o = owner();
  const first = new FakeConn("poll");
  const session = new Session(first, "u1", "", o);
  session.goLive();
  session.send(delivery(1));
  session.left();
  assert.equal(session.conn, null);
  session.deliver(delivery(2)); // waits stored: nothing is sent, nowhere
  assert.deepEqual(first.take().map((m) => m.s), [1]);
  session.sweep(Date.now(), 1_000, 60_000);
  assert.equal(o.closes(), 0, "still waiting");
  session.sweep(session.leftAt + 60_001, 1_000, 60_000);
  assert.equal(o.closes(), 1, "forgotten");
});

Deno.test("Session: a rejoining connection starts over with a replay", () => {
  const session = new Session(new FakeConn("poll"), "u1", "", owner());
  session.goLive();
  session.send(delivery(1));
  session.send(delivery(2));
  session.left();
  const epoch = session.epoch;
  const next = new FakeConn("poll");
  session.rejoin(next);
  assert.ok(session.epoch > epoch, "a replay of the old connection stops");
  session.deliver(delivery(3)); // live, held back until the replay is done
  session.send(delivery(2)); // replayed: this connection has not had it
  session.goLive();
  assert.deepEqual(next.take().map((m) => m.s), [2, 3]);
});

Deno.test("submit: a /send's lines are answered in order, a bad one not stopping the rest", async () => {
  const o = owner((): Outcome =>
    o.messages.length === 2 ? Promise.resolve("storage busy") : undefined
  );
  const lines = [
    '{"y":0}',
    '{"y":3,"t":"u2","b":"hi"}',
    "not json",
    '{"y":1,"c":"bad channel"}',
    '{"y":9}',
    '{"y":1,"c":"c1"}',
    '{"y":5,"s":4}',
  ].map(body);
  const answers = await submit(o, { uid: "u1", device: "tab", access: null }, lines);
  assert.deepEqual(answers.map((a) => JSON.parse(a)), [
    "ok",
    "ok",
    { error: "bad json" },
    { error: "invalid c" },
    { error: "unknown type" },
    { error: "storage busy" },
    "ok",
  ]);
  assert.deepEqual(o.messages.map((m) => m.y), [3, 1, 5]);
  const c = o.counters;
  assert.deepEqual(
    [c.send_request_number, c.send_recv_number, c.total_recv_number, c.error_number],
    [1, 7, 7, 4],
  );
});

Deno.test("submit: a device's /sends are held to the rate across requests; acks are free", async () => {
  const o = owner(undefined, { perSec: 1, burst: 3 });
  const tablet = { uid: "u1", device: "tab", access: null };
  const send = async (sender: typeof tablet, ...lines: string[]) =>
    (await submit(o, sender, lines.map(body))).map((a) => JSON.parse(a));
  const pub = '{"y":3,"t":"u2","b":"hi"}';
  const tooMany = { error: "too many messages" };
  assert.deepEqual(await send(tablet, pub, '{"y":5,"s":1}', pub), ["ok", "ok", "ok"]);
  assert.deepEqual(await send(tablet, pub, pub, "not json"), ["ok", tooMany, tooMany]);
  assert.deepEqual(await send(tablet, '{"y":5,"s":2}'), ["ok"], "an ack past the rate");
  assert.deepEqual(await send({ ...tablet, device: "phone" }, pub), ["ok"], "its own bucket");
  assert.equal(o.counters.limit_messages_number, 2);
  assert.deepEqual(o.messages.map((m) => m.y), [3, 5, 3, 3, 5, 3]);
});
