import assert from "node:assert/strict";
import {
  backoffDelay,
  connect,
  EventStreamParser,
  type IpushClient,
  type Message,
  type StateEvent,
} from "./ipush.js";

/** A WebSocket the test opens, feeds and closes by hand. */
class FakeWebSocket {
  static made: FakeWebSocket[] = [];
  readyState = 0;
  sent: string[] = [];
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  constructor(readonly url: string) {
    FakeWebSocket.made.push(this);
  }
  send(text: string) {
    this.sent.push(text);
  }
  close(code = 1000, reason = "") {
    if (this.readyState === 3) return;
    this.readyState = 3;
    setTimeout(() => this.onclose?.({ code, reason }));
  }
  open() {
    this.readyState = 1;
    this.onopen?.({});
  }
  receive(message: unknown) {
    this.onmessage?.({ data: JSON.stringify(message) });
  }
}

/** A fetch that answers by path; records the requests. */
function fakeFetch(answer: (url: URL, init: RequestInit) => Response | Promise<Response>) {
  const requests: { url: URL; init: RequestInit }[] = [];
  const impl = (input: string | URL | Request, init: RequestInit = {}) => {
    const url = new URL(String(input));
    requests.push({ url, init });
    return Promise.resolve(answer(url, init));
  };
  return { impl: impl as typeof fetch, requests };
}

const json = (value: unknown, status = 200) =>
  new Response(JSON.stringify(value), { status, headers: { "content-type": "application/json" } });
const shard = () => json({ result: "127.0.0.1:9010" });

/** An event stream the test writes to. */
function eventStream() {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  const body = new ReadableStream<Uint8Array>({ start: (c) => void (controller = c) });
  const encoder = new TextEncoder();
  return {
    response: () => new Response(body, { headers: { "content-type": "text/event-stream" } }),
    write: (text: string) => controller.enqueue(encoder.encode(text)),
    end: () => controller.close(),
  };
}

async function until(condition: () => boolean, what: string, ms = 2000) {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

/** A client with fakes, and what it reported. */
function client(options: Partial<Parameters<typeof connect>[0]> & { fetch: typeof fetch }) {
  const states: StateEvent[] = [];
  const messages: Message[] = [];
  const errors: string[] = [];
  const c: IpushClient = connect({
    url: "http://127.0.0.1:9000",
    uid: "alice",
    password: "pw",
    backoff: { initialMs: 1, maxMs: 4 },
    WebSocket: FakeWebSocket as unknown as typeof WebSocket,
    ...options,
  });
  c.on("state", (event) => states.push(event));
  c.on("message", (message) => messages.push(message));
  c.on("error", (error) => errors.push(error.message));
  return { c, states, messages, errors };
}

Deno.test("backoffDelay: doubles up to the cap, drawn between half and all of it", () => {
  const low = () => 0;
  const high = () => 1;
  assert.deepEqual([0, 1, 2, 3].map((n) => backoffDelay(n, {}, high)), [500, 1000, 2000, 4000]);
  assert.deepEqual([0, 1, 2, 3].map((n) => backoffDelay(n, {}, low)), [250, 500, 1000, 2000]);
  assert.equal(backoffDelay(20, {}, high), 30_000);
  assert.equal(backoffDelay(1000, { initialMs: 10, maxMs: 100 }, high), 100);
  for (let i = 0; i < 100; i++) {
    const delay = backoffDelay(3);
    assert.ok(delay >= 2000 && delay <= 4000, String(delay));
  }
});

Deno.test("EventStreamParser: events in any split, CRLF or CR or LF, comments skipped", () => {
  const parser = new EventStreamParser();
  const stream = ': hello\r\n\r\nid: 1\r\ndata: {"s":1}\r\n\r\n' +
    "data: a\rdata: b\r\rid: 2\ndata:no space\n\n" + "event: x\nretry: 3\n\n";
  const events: string[] = [];
  for (const char of stream) events.push(...parser.push(char));
  assert.deepEqual(events, ['{"s":1}', "a\nb", "no space"]);
  assert.deepEqual(new EventStreamParser().push("data: x\n\ndata: partial"), ["x"]);
});

Deno.test("client: WebSocket first; messages once each, acked together, volatile ones too", async () => {
  FakeWebSocket.made = [];
  const { c, states, messages } = client({ fetch: fakeFetch(shard).impl });
  await until(() => FakeWebSocket.made.length === 1, "a WebSocket");
  const ws = FakeWebSocket.made[0];
  assert.equal(ws.url, "ws://127.0.0.1:9010/connect?uid=alice&password=pw&since=0");
  ws.open();
  await until(() => c.state === "open", "open");
  assert.equal(c.transport, "ws");
  for (const s of [1, 2, 2, 1, 3]) ws.receive({ y: 3, f: "op", t: "alice", b: `m${s}`, s });
  ws.receive({ y: 3, f: "op", t: "alice", b: "volatile" });
  ws.receive({ y: 0 });
  assert.deepEqual(messages.map((m) => m.s ?? m.b), [1, 2, 3, "volatile"]);
  await until(() => ws.sent.length > 0, "an ack");
  assert.deepEqual(ws.sent, ['{"y":5,"s":3}'], "one ack for the burst");
  assert.deepEqual(states.map((e) => e.state), ["connecting", "open"]);
  c.close();
  assert.equal(c.state, "closed");
});

Deno.test("client: after a drop it reconnects with backoff and resumes after the last s", async () => {
  FakeWebSocket.made = [];
  const { c, states } = client({ fetch: fakeFetch(shard).impl });
  await until(() => FakeWebSocket.made.length === 1, "a WebSocket");
  FakeWebSocket.made[0].open();
  FakeWebSocket.made[0].receive({ y: 3, b: 1, s: 41 });
  FakeWebSocket.made[0].close(1006);
  await until(() => FakeWebSocket.made.length === 2, "a second WebSocket");
  assert.match(FakeWebSocket.made[1].url, /since=41$/);
  const reconnecting = states.find((e) => e.state === "reconnecting");
  assert.ok(reconnecting && reconnecting.delayMs! >= 0 && reconnecting.delayMs! <= 1);
  assert.equal(reconnecting.error?.message, "websocket closed (1006)");
  c.close();
});

Deno.test("client: a WebSocket that cannot open gives way to server-sent events", async () => {
  FakeWebSocket.made = [];
  const stream = eventStream();
  const { impl, requests } = fakeFetch((url) =>
    url.pathname === "/shard" ? shard() : stream.response()
  );
  const { c, states, messages } = client({ fetch: impl });
  await until(() => FakeWebSocket.made.length === 1, "a WebSocket");
  FakeWebSocket.made[0].close(1006); // refused before the upgrade
  await until(() => c.state === "open", "open");
  assert.equal(c.transport, "sse");
  assert.deepEqual(states.map((e) => [e.state, e.transport]), [
    ["connecting", "ws"],
    ["connecting", "sse"],
    ["open", "sse"],
  ]);
  assert.equal(
    requests[1].url.href,
    "http://127.0.0.1:9010/sse?uid=alice&password=pw&since=0",
  );
  stream.write('id: 7\ndata: {"y":3,"f":"op","t":"alice","b":"over sse","s":7}\n\n');
  await until(() => messages.length === 1, "a message");
  assert.equal(messages[0].b, "over sse");
  c.close();
});

Deno.test("client: upstream by /send, a line each, answered in order", async () => {
  const stream = eventStream();
  const sends: string[] = [];
  const { impl } = fakeFetch((url, init) => {
    if (url.pathname === "/shard") return shard();
    if (url.pathname === "/sse") return stream.response();
    sends.push(String(init.body));
    assert.equal(new Headers(init.headers).get("content-type"), "text/plain;charset=UTF-8");
    const answers = String(init.body).split("\n").map((line) =>
      line.includes("nobody!") ? { error: "invalid t" } : "ok"
    );
    return json({ result: answers });
  });
  const { c, errors } = client({ fetch: impl, transports: ["sse"] });
  await until(() => c.state === "open", "open");
  const results = await Promise.allSettled([
    c.send("bob", "hi"),
    c.send("nobody!", "hi"),
    c.subscribe("news"),
    c.publish("news", { n: 1 }),
  ]);
  assert.deepEqual(results.map((r) => r.status === "fulfilled" ? "ok" : r.reason.message), [
    "ok",
    "invalid t",
    "ok",
    "ok",
  ]);
  assert.deepEqual(sends, [
    '{"y":3,"t":"bob","b":"hi"}\n{"y":3,"t":"nobody!","b":"hi"}\n{"y":1,"c":"news"}\n' +
    '{"y":4,"c":"news","b":{"n":1}}',
  ], "one request for the pass");
  assert.deepEqual(errors, ["invalid t"]);
  // An event stream's acks go by /send too.
  stream.write('data: {"y":3,"b":1,"s":3}\n\n');
  await until(() => sends.length === 2, "an ack by /send");
  assert.equal(sends[1], '{"y":5,"s":3}');
  c.close();
});

Deno.test("client: a wrong password fails for good, with the server's reason", async () => {
  const { impl, requests } = fakeFetch((url) =>
    url.pathname === "/shard" ? shard() : json({ error: "invalid password" }, 400)
  );
  const { c, states } = client({ fetch: impl, transports: ["sse", "poll"] });
  await until(() => c.state === "failed", "failed");
  const failed = states.at(-1)!;
  assert.equal(failed.error?.message, "invalid password");
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(requests.length, 2, "no retry, and no other transport");
});

Deno.test("client: long-poll answers at once first, then is held; since follows what came", async () => {
  const polls: URL[] = [];
  const answers = [[{ y: 3, b: "a", s: 1 }, { y: 3, b: "b", s: 2 }], [], [{ y: 3, b: "c", s: 3 }]];
  const { impl } = fakeFetch((url) => {
    if (url.pathname === "/shard") return shard();
    polls.push(url);
    const result = answers.shift();
    return result ? json({ result }) : new Promise<Response>(() => {});
  });
  const { c, messages } = client({ fetch: impl, transports: ["poll"], pollWaitSec: 20 });
  await until(() => messages.length === 3, "three messages");
  assert.deepEqual(
    polls.map((url) => [url.searchParams.get("since"), url.searchParams.get("wait")]),
    [["0", "0"], ["2", "20"], ["2", "20"], ["3", "20"]],
  );
  c.close();
});

Deno.test("client: with autoAck off, nothing is acked until ack(s)", async () => {
  FakeWebSocket.made = [];
  const { c } = client({ fetch: fakeFetch(shard).impl, autoAck: false, since: 10 });
  await until(() => FakeWebSocket.made.length === 1, "a WebSocket");
  const ws = FakeWebSocket.made[0];
  assert.match(ws.url, /since=10$/);
  ws.open();
  ws.receive({ y: 3, b: 1, s: 11 });
  ws.receive({ y: 3, b: 2, s: 12 });
  await new Promise((resolve) => setTimeout(resolve, 5));
  assert.deepEqual(ws.sent, []);
  c.ack(11);
  await until(() => ws.sent.length === 1, "the ack");
  assert.deepEqual(ws.sent, ['{"y":5,"s":11}']);
  c.ack(99); // beyond what came: ignored
  ws.close(1006);
  await until(() => FakeWebSocket.made.length === 2, "a reconnect");
  assert.match(
    FakeWebSocket.made[1].url,
    /since=11$/,
    "unacked ones come again (and are not handed over twice)",
  );
  c.close();
});

Deno.test("client: the shard is looked up once, and again after every transport failed", async () => {
  FakeWebSocket.made = [];
  const { impl, requests } = fakeFetch(shard);
  const { c } = client({ fetch: impl, transports: ["ws"] });
  await until(() => FakeWebSocket.made.length === 1, "a WebSocket");
  FakeWebSocket.made[0].open();
  FakeWebSocket.made[0].close(1006); // dropped after it was open: same shard
  await until(() => FakeWebSocket.made.length === 2, "a reconnect");
  assert.equal(requests.filter((r) => r.url.pathname === "/shard").length, 1);
  FakeWebSocket.made[1].close(1006); // cannot open there: ask again
  await until(() => FakeWebSocket.made.length === 3, "another attempt");
  assert.equal(requests.filter((r) => r.url.pathname === "/shard").length, 2);
  c.close();
});

Deno.test("client: a 429 is a limit, not a verdict: tried again, after its Retry-After", async () => {
  /** A fetch whose first connect is refused 429 (with `headers`), the next ones streamed. */
  const refusedOnce = (headers: Record<string, string>) => {
    let refusals = 0;
    return fakeFetch((url) =>
      url.pathname === "/shard"
        ? shard()
        : refusals++ === 0
        ? new Response('{"error":"too many connections"}', { status: 429, headers })
        : eventStream().response()
    ).impl;
  };
  const plain = client({ fetch: refusedOnce({}), transports: ["sse"] });
  await until(() => plain.c.state === "open", "open after the refusal");
  const retried = plain.states.find((event) => event.state === "reconnecting")!;
  assert.equal(retried.error?.message, "too many connections");
  plain.c.close();
  const told = client({ fetch: refusedOnce({ "retry-after": "2" }), transports: ["sse"] });
  await until(() => told.c.state === "reconnecting", "reconnecting");
  assert.equal(told.states.at(-1)!.delayMs, 2000, "the Retry-After, past the 1-4 ms backoff");
  told.c.close();
});
