import assert from "node:assert/strict";
import type { Socket } from "node:net";
import type { Authenticator } from "../auth/auth.ts";
import type { ShardAddress } from "../core/shard_map.ts";
import { Cors } from "./cors.ts";
import { ENDPOINTS } from "./endpoints.ts";
import { type Accepted, HandshakeReader, type Outcome, type Refused } from "./handshake.ts";
import { TRANSPORTS } from "./registry.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Just what a reader touches of a socket. */
class FakeSocket {
  written: string[] = [];
  paused = false;
  ended = false;
  destroyed = false;
  remoteAddress = "127.0.0.9";
  pause() {
    this.paused = true;
  }
  resume() {
    this.paused = false;
  }
  write(data: string) {
    this.written.push(data);
  }
  end() {
    this.ended = true;
  }
  destroy() {
    this.destroyed = true;
  }
}

/** Reads `parts` (written one read each) with a fresh reader; resolves with the outcome. */
function read(
  parts: string[],
  options: {
    cors?: string;
    authenticate?: Authenticator;
    timeoutMs?: number;
    idle?: boolean;
    /** The owner of every uid, when it is not this port. */
    owner?: ShardAddress;
  } = {},
): { socket: FakeSocket; outcome: Promise<Outcome | null> } {
  const socket = new FakeSocket();
  const outcome = Promise.withResolvers<Outcome | null>();
  const reader = new HandshakeReader(
    socket as unknown as Socket,
    {
      maxHeadBytes: 1024,
      maxBodyBytes: 100,
      timeoutMs: options.timeoutMs ?? 5000,
      transports: TRANSPORTS,
      endpoints: ENDPOINTS,
      redirectFor: () => options.owner ?? null,
      authenticate: options.authenticate ??
        (({ password }) => password === "pw" ? "allow" : "deny"),
      cors: new Cors(options.cors ?? "*"),
    },
    outcome.resolve,
    options.idle,
  );
  for (const part of parts) reader.receive(encoder.encode(part));
  return { socket, outcome: outcome.promise };
}

const accepted = async (parts: string[], options?: Parameters<typeof read>[1]) => {
  const result = await read(parts, options).outcome;
  assert.ok(result?.accepted, `refused: ${JSON.stringify(result)}`);
  return result as Accepted;
};
const refused = async (parts: string[], options?: Parameters<typeof read>[1]) => {
  const result = await read(parts, options).outcome;
  assert.ok(result && "status" in result, `not refused: ${JSON.stringify(result)}`);
  return [result.status, result.reason, result.headers];
};
const routeName = (result: Accepted) =>
  typeof result.route === "string"
    ? result.route
    : "name" in result.route
    ? result.route.name
    : result.route.path;

const UPGRADE = "Upgrade: websocket\r\nConnection: Upgrade\r\n" +
  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

Deno.test("request: GET /connect is raw TCP, or a WebSocket with its Upgrade header", async () => {
  const raw = await accepted(['GET /connect?uid=u1&password=pw HTTP/1.1\r\n\r\n7\r\n{"y":0}']);
  assert.equal(routeName(raw), "tcp");
  assert.equal(decoder.decode(raw.rest), '7\r\n{"y":0}', "the stream after the head is no body");
  const ws = await accepted([`GET /connect?uid=u1&password=pw HTTP/1.1\r\n${UPGRADE}\r\n`]);
  assert.equal(routeName(ws), "ws");
  const other = await accepted([
    "GET /connect?uid=u1&password=pw HTTP/1.1\r\nUpgrade: h2c\r\n\r\n",
  ]);
  assert.equal(routeName(other), "tcp");
});

Deno.test("request: a WebSocket upgrade is checked before the password", async () => {
  const head = (headers: string) => [`GET /connect?uid=u1&password=no HTTP/1.1\r\n${headers}\r\n`];
  assert.deepEqual(
    await refused(head(UPGRADE.replace("Version: 13", "Version: 8"))),
    [426, "websocket version 13 required", "Sec-WebSocket-Version: 13\r\n"],
  );
  assert.deepEqual(
    (await refused(head(UPGRADE.replace("dGhlIHNhbXBsZSBub25jZQ==", "short")))).slice(0, 2),
    [400, "invalid Sec-WebSocket-Key"],
  );
  assert.deepEqual((await refused(head(UPGRADE))).slice(0, 2), [400, "invalid password"]);
});

Deno.test("request: every transport and /send checks the password the same way", async () => {
  for (const target of ["/connect?", "/sse?", "/poll?wait=1&", "/send?"]) {
    const method = target === "/send?" ? "POST" : "GET";
    assert.deepEqual(
      (await refused([`${method} ${target}uid=u1&password=bad HTTP/1.1\r\n\r\n`])).slice(0, 2),
      [400, "invalid password"],
      target,
    );
    const down = await refused([`${method} ${target}uid=u1&password=pw HTTP/1.1\r\n\r\n`], {
      authenticate: () => "unavailable",
    });
    assert.deepEqual(down.slice(0, 2), [503, "auth unavailable"], target);
  }
});

Deno.test("request: since, or an event stream's Last-Event-ID, is where the client resumes", async () => {
  const sse = (
    extra: string,
    query = "",
  ) => [`GET /sse?uid=u1&password=pw${query} HTTP/1.1\r\n${extra}\r\n`];
  assert.equal((await accepted(sse(""))).since, 0);
  assert.equal((await accepted(sse("", "&since=41"))).since, 41);
  assert.equal((await accepted(sse("Last-Event-ID: 42\r\n", "&since=41"))).since, 42);
  assert.deepEqual((await refused(sse("", "&since=-1"))).slice(0, 2), [400, "invalid since"]);
  // Past an accepted loss's floor (16 digits, docs/cluster.md), up to the largest safe integer.
  const floor = "Last-Event-ID: 1796190926038021\r\n";
  assert.equal((await accepted(sse(floor))).since, 1796190926038021);
  assert.equal((await accepted(sse("", "&since=9007199254740991"))).since, 2 ** 53 - 1);
  assert.deepEqual((await refused(sse("", "&since=9007199254740992"))).slice(0, 2), [
    400,
    "invalid since",
  ]);
  assert.deepEqual((await refused(sse("Last-Event-ID: x\r\n"))).slice(0, 2), [
    400,
    "invalid since",
  ]);
  const poll = (wait: string) => [`GET /poll?uid=u1&password=pw&wait=${wait} HTTP/1.1\r\n\r\n`];
  assert.deepEqual((await refused(poll("soon"))).slice(0, 2), [400, "invalid wait"]);
  assert.ok(await accepted(poll("600")), "a long wait is cut to 60 s, not refused");
});

Deno.test("request: a /send's body is read by its Content-Length, in any split", async () => {
  const body = '{"y":0}\n{"y":1,"c":"c1"}\n';
  const head = `POST /send?uid=u1&password=pw HTTP/1.1\r\nContent-Length: ${body.length}\r\n\r\n`;
  const next = "GET /shard?uid=u2 HTTP/1.1\r\n\r\n";
  const whole = await accepted([head + body + next]);
  assert.equal(decoder.decode(whole.body), body);
  assert.equal(decoder.decode(whole.rest), next, "a pipelined request is left for the next reader");
  const split = await accepted([
    head.slice(0, 20),
    head.slice(20) + body.slice(0, 5),
    body.slice(5),
  ]);
  assert.equal(decoder.decode(split.body), body);
});

Deno.test("request: a /send body is bounded, and sent with a length", async () => {
  const post = (headers: string) => [`POST /send?uid=u1&password=pw HTTP/1.1\r\n${headers}\r\n`];
  assert.deepEqual(
    (await refused(post("Content-Length: 101\r\n"))).slice(0, 2),
    [413, "body too large"],
  );
  assert.deepEqual(
    (await refused(post("Transfer-Encoding: chunked\r\n"))).slice(0, 2),
    [411, "send the body with a Content-Length"],
  );
  assert.deepEqual((await refused(post("Content-Length: 1e3\r\n"))).slice(0, 2), [
    400,
    "malformed request",
  ]);
  const waiting = read(post("Content-Length: 10\r\nExpect: 100-continue\r\n"), { timeoutMs: 1 });
  assert.deepEqual(waiting.socket.written, ["HTTP/1.1 100 Continue\r\n\r\n"]);
  const late = await waiting.outcome as Refused;
  assert.deepEqual([late.status, late.reason], [400, "request head timeout"], "the body too");
});

Deno.test("request: endpoints need what they need; other paths and methods are refused", async () => {
  const shard = await accepted(["GET /shard?uid=u1 HTTP/1.1\r\n\r\n"]);
  assert.deepEqual([routeName(shard), shard.uid], ["/shard", "u1"], "no password for /shard");
  assert.deepEqual((await refused(["GET /shard?uid=a%20b HTTP/1.1\r\n\r\n"])).slice(0, 2), [
    400,
    "invalid uid",
  ]);
  assert.equal(routeName(await accepted(["GET /ipush.js HTTP/1.1\r\n\r\n"])), "/ipush.js");
  assert.equal(routeName(await accepted(["OPTIONS /send?x HTTP/1.1\r\n\r\n"])), "preflight");
  assert.deepEqual((await refused(["OPTIONS /nope HTTP/1.1\r\n\r\n"])).slice(0, 2), [
    404,
    "not found",
  ]);
  assert.deepEqual(
    await refused(["GET /send?uid=u1&password=pw HTTP/1.1\r\nOrigin: https://a.example\r\n\r\n"]),
    [405, "method not allowed", "Access-Control-Allow-Origin: *\r\n"],
    "with CORS headers, so the page can read why",
  );
});

Deno.test("request: with an origin list, another Origin is refused, a WebSocket's too", async () => {
  const options = { cors: "https://app.example" };
  const ws = (origin: string) => [
    `GET /connect?uid=u1&password=pw HTTP/1.1\r\n${UPGRADE}Origin: ${origin}\r\n\r\n`,
  ];
  assert.deepEqual(await refused(ws("https://evil.example"), options), [
    403,
    "origin not allowed",
    "",
  ]);
  const ok = await accepted(ws("https://app.example"), options);
  assert.equal(ok.cors, "Access-Control-Allow-Origin: https://app.example\r\nVary: Origin\r\n");
});

Deno.test("request: a kept-alive socket with no next request is closed quietly", async () => {
  const { socket, outcome } = read([], { timeoutMs: 1, idle: true });
  assert.equal(await outcome, null);
  assert.equal(socket.ended, true);
  assert.deepEqual(socket.written, [], "no 400 for a request never begun");
  const started = read(["GET /sh"], { timeoutMs: 1, idle: true });
  assert.deepEqual(
    [(await started.outcome as Refused).status, (await started.outcome as Refused).reason],
    [400, "request head timeout"],
  );
});

Deno.test("request: a login for a uid owned elsewhere is redirected before its password is checked", async () => {
  const asked: string[] = [];
  const owner = { id: "n2/0", host: "10.0.0.2", port: 9011 };
  const authenticate: Authenticator = ({ uid }) => {
    asked.push(uid);
    return "allow";
  };
  for (const [method, target] of [["GET", "/connect"], ["GET", "/sse"], ["POST", "/send"]]) {
    const head =
      `${method} ${target}?uid=u1&password=pw HTTP/1.1\r\nOrigin: https://a.example\r\n\r\n`;
    const result = await read([head], { owner, authenticate }).outcome;
    assert.ok(result && "redirect" in result, target);
    assert.deepEqual([result.redirect, result.route.path], [owner, target]);
    assert.match(result.cors, /Access-Control-Allow-Origin/);
  }
  assert.deepEqual(asked, [], "only the owner authenticates");
  // A malformed login is refused where it arrives, not redirected.
  assert.deepEqual(
    (await refused(["GET /connect?uid=u1&password=pw&codec=xml HTTP/1.1\r\n\r\n"], { owner }))
      .slice(0, 2),
    [400, "invalid codec"],
  );
});

Deno.test("request: codec=msgpack on raw TCP and WebSocket, refused on the text-only transports", async () => {
  const login = "uid=u1&password=pw&codec=msgpack";
  assert.equal((await accepted([`GET /connect?${login} HTTP/1.1\r\n\r\n`])).codec.name, "msgpack");
  const ws = await accepted([`GET /connect?${login} HTTP/1.1\r\n${UPGRADE}\r\n`]);
  assert.deepEqual([routeName(ws), ws.codec.name], ["ws", "msgpack"]);
  for (const target of ["/sse", "/poll"]) {
    assert.deepEqual(
      (await refused([`GET ${target}?${login} HTTP/1.1\r\n\r\n`])).slice(0, 2),
      [400, "codec needs raw TCP or WebSocket"],
      target,
    );
  }
  assert.equal(
    (await accepted([`GET /sse?uid=u1&password=pw HTTP/1.1\r\n\r\n`])).codec.name,
    "json",
  );
});
