/**
 * Tests of the load generator: histogram math and merging, the chunk and head parsers, the
 * payload stamp, the loopback rule, the flags, the pacer's schedule, the admin client, the
 * recovery probe and one client against tiny servers; then whole runs against the real daemon
 * (refusals counted, latency from the schedule, recovery reported).
 *
 *     deno test --allow-all bench/load_test.ts
 *
 * @module
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { bucketOf, bucketRange, Histogram } from "./load/histogram.ts";
import { ChunkReader, encodeFrame, parseHead } from "./load/wire.ts";
import { parseStamp, stamp } from "./load/ipc.ts";
import { isLoopback, sourceAddresses } from "./load/loopback.ts";
import { parseOptions } from "./load/flags.ts";
import net from "node:net";
import { Client, type ClientContext } from "./load/client.ts";
import { newCounters, nowMs } from "./load/ipc.ts";
import { HeartbeatQueue } from "./load/heartbeats.ts";
import { Pacer } from "./load/pacer.ts";
import { progressLine, type TimelineEntry } from "./load/report.ts";
import { AdminClient } from "./load/admin.ts";
import { ipushStream } from "./load/target.ts";
import { cpuSeconds, cpuSecondsByThread } from "./load/server_proc.ts";
import {
  PROBE_DEADLINE_MS,
  PROBE_EVERY_MS,
  RECOVERED_AFTER,
  timeToRecover,
} from "./load/recovery.ts";
import { eventually, startDaemon } from "../tests/harness.ts";

/** Asserts |actual - expected| ≤ tolerance. */
function near(actual: number, expected: number, tolerance: number): void {
  assert.ok(
    Math.abs(actual - expected) <= tolerance,
    `${actual} not within ${tolerance} of ${expected}`,
  );
}

Deno.test("histogram buckets cover every value, at most 1/64 wide", () => {
  for (const v of [0, 1, 63, 64, 127, 128, 129, 1000, 65_535, 1_000_000, 0x7fffffff]) {
    const [low, width] = bucketRange(bucketOf(v));
    assert.ok(low <= v && v < low + width, `${v} in [${low}, ${low + width})`);
    assert.ok(width === 1 || width / low <= 1 / 64, `bucket of ${v} too wide`);
  }
});

Deno.test("histogram percentiles of 1..10000 ms are within a bucket of the truth", () => {
  const h = new Histogram();
  for (let i = 1; i <= 10_000; i++) h.recordMs(i);
  for (const [q, want] of [[0.5, 5000], [0.99, 9900], [0.999, 9990], [1, 10_000]]) {
    near(h.percentileMs(q), want, want / 64);
  }
  assert.deepEqual(h.summary().max_ms, 10_000);
  near(h.meanMs(), 5000.5, 0.001);
});

Deno.test("merged histograms give the percentiles of all samples together", () => {
  const fast = new Histogram();
  const slow = new Histogram();
  for (let i = 0; i < 990; i++) fast.recordMs(1);
  for (let i = 0; i < 10; i++) slow.recordMs(100);
  const all = new Histogram();
  all.merge(fast.toData());
  all.merge(slow.toData());
  assert.deepEqual(all.count, 1000);
  near(all.percentileMs(0.5), 1, 1 / 64);
  near(all.percentileMs(0.99), 1, 1 / 64);
  near(all.percentileMs(0.995), 100, 100 / 64);
  assert.deepEqual(all.toData().minUs, 1000);
  assert.deepEqual(new Histogram().summary().p50_ms, null);
});

Deno.test("chunk reader: several frames in one read, one frame split byte by byte", () => {
  const frames: string[] = [];
  const reader = new ChunkReader();
  const bytes = Buffer.from(encodeFrame('{"y":0}') + encodeFrame('{"y":3,"b":"héllo","s":1}'));
  assert.deepEqual(reader.push(bytes, (b) => frames.push(b)), false);
  assert.deepEqual(frames, ['{"y":0}', '{"y":3,"b":"héllo","s":1}']);
  frames.length = 0;
  const one = Buffer.from(encodeFrame('{"y":4,"c":"ch","b":"x","s":22}'));
  for (let i = 0; i < one.length; i++) reader.push(one.subarray(i, i + 1), (b) => frames.push(b));
  assert.deepEqual(frames, ['{"y":4,"c":"ch","b":"x","s":22}']);
});

Deno.test("chunk reader: byte length in hex, terminator, malformed framing", () => {
  assert.deepEqual(encodeFrame('{"y":0}'), '7\r\n{"y":0}\r\n');
  assert.deepEqual(encodeFrame('"é"').startsWith("4\r\n"), true);
  const frames: string[] = [];
  assert.deepEqual(new ChunkReader().push(Buffer.from("0\r\n\r\n"), (b) => frames.push(b)), true);
  assert.throws(() => new ChunkReader().push(Buffer.from("zz\r\n"), () => {}));
  assert.throws(() => new ChunkReader().push(Buffer.from('3\r\n{"y":0}\r\n'), () => {}));
});

Deno.test("response head: 200 with bytes after it, 303 Location, incomplete", () => {
  const ok = Buffer.from("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7\r\n");
  const head = parseHead(ok)!;
  assert.deepEqual(head.status, 200);
  assert.deepEqual(ok.subarray(head.length).toString(), "7\r\n");
  const moved = parseHead(
    Buffer.from("HTTP/1.1 303 See Other\r\nLocation: http://127.0.0.1:9011/connect?uid=a\r\n\r\n"),
  )!;
  assert.deepEqual(moved.headers.get("location"), "http://127.0.0.1:9011/connect?uid=a");
  assert.deepEqual(parseHead(Buffer.from("HTTP/1.1 200 OK\r\n")), null);
  assert.throws(() => parseHead(Buffer.from("SSH-2.0\r\n\r\n")));
});

Deno.test("payload stamp round-trips; foreign bodies are not stamps", () => {
  const s = parseStamp(stamp(42))!;
  assert.deepEqual(s.id, 42);
  assert.ok(Math.abs(s.ts - (performance.timeOrigin + performance.now())) < 1000);
  assert.deepEqual(parseStamp("hello"), null);
  assert.deepEqual(parseStamp({ ts: 1 }), null);
  assert.deepEqual(parseStamp(1700000000000.5), { ts: 1700000000000.5, id: -1 });
});

Deno.test("only loopback targets", () => {
  for (const h of ["127.0.0.1", "127.9.8.7", "::1", "[::1]", "localhost"]) assert.ok(isLoopback(h));
  for (const h of ["10.0.0.1", "0.0.0.0", "example.com", "128.0.0.1", "127.0.0.1.nip.io"]) {
    assert.ok(!isLoopback(h), h);
  }
  assert.deepEqual(sourceAddresses("127.0.0.1", 3), ["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
  assert.deepEqual(sourceAddresses("::1", 3), []);
});

Deno.test("flags: scenario defaults, process split, refusals", () => {
  const idle = parseOptions(["idle"]);
  assert.ok(idle !== "help");
  assert.deepEqual([idle.connections, idle.processes, idle.holdSec], [19000, 2, 10]);
  const uni = parseOptions(["unicast", "--rate=max", "--connections=50", "--processes=3"]);
  assert.ok(uni !== "help");
  assert.deepEqual([uni.rate, uni.processes, uni.concurrency], ["max", 3, 64]);
  const storm = parseOptions(["storm", "--connections=300"]);
  assert.ok(storm !== "help");
  assert.deepEqual(storm.connectConcurrency, 300);
  assert.deepEqual(parseOptions(["--help"]), "help");
  assert.throws(() => parseOptions(["idle", "--host=10.1.2.3"]));
  assert.throws(() => parseOptions(["idle", "--admin_host=example.com"]));
  assert.throws(() => parseOptions(["nope"]));
  assert.throws(() => parseOptions(["chat", "--connections=1"]));
  assert.throws(() => parseOptions(["idle", "--bogus=1"]));
  assert.throws(() => parseOptions(["idle", "--transport=sse"]));
  assert.throws(() => parseOptions(["chat", "--transport=poll"]));
  const spread = parseOptions(["idle", "--client_port=20000,20010,20020"]);
  assert.ok(spread !== "help");
  assert.deepEqual(spread.clientPorts, [20000, 20010, 20020]);
  assert.throws(() => parseOptions(["idle", "--client_port=20000,"]), /--client_port/);
  assert.throws(() => parseOptions(["idle", "--client_port=70000"]), /--client_port/);
});

/** A server on an ephemeral loopback port that answers each connection with `respond`. */
async function tinyServer(respond: (socket: net.Socket, port: number) => void) {
  const server = net.createServer((s) => respond(s, (server.address() as net.AddressInfo).port));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { server, port: (server.address() as net.AddressInfo).port };
}

/** A client context that records what happens. */
function recordingContext(transport: ClientContext["transport"] = "tcp") {
  const log: string[] = [];
  const ctx: ClientContext = {
    host: "127.0.0.1",
    transport,
    stream: ipushStream(transport),
    ack: "each",
    connectTimeoutMs: 2000,
    maxRedirects: 3,
    counters: newCounters(),
    connectHist: new Histogram(),
    reason: (text) => log.push(`reason ${text}`),
    onOpen: () => log.push("open"),
    onFail: () => log.push("fail"),
    onClosed: (_c, wanted) => log.push(`closed ${wanted}`),
    onFrame: (_c, frame) => log.push(`frame ${JSON.stringify(frame)}`),
  };
  return { ctx, log };
}

Deno.test("client follows a 303, reads a split frame, acks it, closes gracefully", async () => {
  const received: string[] = [];
  const shard = await tinyServer((s) => {
    s.once("data", () => {
      s.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n16\r\n{"y":3,');
      setTimeout(() => s.write('"b":"hi","s":7}\r\n'), 20);
      s.on("data", (d: Buffer) => received.push(d.toString()));
    });
  });
  const front = await tinyServer((s) => {
    s.once("data", (d: Buffer) => {
      assert.match(d.toString(), /^GET \/connect\?uid=u%201&password=p HTTP\/1\.1\r\n/);
      s.end(
        `HTTP/1.1 303 See Other\r\nLocation: http://127.0.0.1:${shard.port}/connect?uid=u1\r\n` +
          "Content-Length: 0\r\n\r\n",
      );
    });
  });
  const { ctx, log } = recordingContext();
  const client = new Client(ctx, "u 1", "p", front.port, undefined);
  client.start();
  await waitUntil(() => received.join("").includes('"y":5'));
  client.close();
  await waitUntil(() => log.includes("closed true"));
  assert.deepEqual(log, ["open", 'frame {"y":3,"b":"hi","s":7}', "closed true"]);
  assert.equal(ctx.counters.redirects, 1);
  assert.ok(received.join("").startsWith('17\r\n{"y":5,"f":"u 1","s":7}\r\n'));
  front.server.close();
  shard.server.close();
});

Deno.test("client acks a read's frames: each one (--ack=each), or the highest s once (--ack=read)", async () => {
  for (const [ack, want] of [["each", [4, 5, 6]], ["read", [6]]] as const) {
    const received: string[] = [];
    const shard = await tinyServer((s) => {
      s.once("data", () => {
        const frames = [4, 5, 6].map((seq) => {
          const body = `{"y":3,"b":"m","s":${seq}}`;
          return `${body.length.toString(16)}\r\n${body}\r\n`;
        });
        // One write: the three frames reach the client in one read.
        s.write(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${frames.join("")}`);
        s.on("data", (d: Buffer) => received.push(d.toString()));
      });
    });
    const { ctx, log } = recordingContext();
    ctx.ack = ack;
    const client = new Client(ctx, "u1", "p", shard.port, undefined);
    client.start();
    await waitUntil(() => log.filter((line) => line.startsWith("frame")).length === 3);
    await waitUntil(() => received.join("").includes(`"s":${want.at(-1)}}`));
    client.close();
    await waitUntil(() => log.includes("closed true"));
    const acked = [...received.join("").matchAll(/\{"y":5,"f":"u1","s":(\d+)\}/g)].map((m) =>
      +m[1]
    );
    assert.deepEqual(acked, want, ack);
    assert.equal(ctx.counters.acksOut, want.length, ack);
    shard.server.close();
  }
});

Deno.test("client refuses a 303 off loopback and reports a 400", async () => {
  const away = await tinyServer((s) => {
    s.once("data", () => {
      s.end("HTTP/1.1 303 See Other\r\nLocation: http://10.1.2.3:9000/connect\r\n\r\n");
    });
  });
  const bad = await tinyServer((s) => {
    s.once("data", () => {
      s.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 23\r\n\r\n{"error":"invalid uid"}');
    });
  });
  for (const [port, want] of [[away.port, "non-loopback"], [bad.port, "HTTP 400"]] as const) {
    const { ctx, log } = recordingContext();
    new Client(ctx, "u1", "p", port, undefined).start();
    await waitUntil(() => log.includes("fail"));
    assert.ok(log[0].includes(want), log[0]);
    assert.equal(ctx.counters.failed, 0, "counting failures is the owner's job");
  }
  away.server.close();
  bad.server.close();
});

Deno.test("a WebSocket client: upgrade, split frames, masked acks, a close frame", async () => {
  const received: Buffer[] = [];
  const frame = (text: string) =>
    Buffer.concat([Buffer.from([0x81, text.length]), Buffer.from(text)]);
  const server = await tinyServer((s) => {
    s.once("data", (d: Buffer) => {
      assert.match(d.toString(), /^GET \/connect\?uid=u1&password=p HTTP\/1\.1\r\n/);
      assert.match(d.toString(), /\r\nUpgrade: websocket\r\n/);
      const first = frame('{"y":3,"b":"hi","s":7}');
      s.write(
        Buffer.concat([
          Buffer.from("HTTP/1.1 101 Switching Protocols\r\n\r\n"),
          first.subarray(0, 5),
        ]),
      );
      setTimeout(() => s.write(first.subarray(5)), 20);
      s.on("data", (bytes: Buffer) => received.push(bytes));
    });
  });
  const { ctx, log } = recordingContext("ws");
  const client = new Client(ctx, "u1", "p", server.port, undefined);
  client.start();
  await waitUntil(() => Buffer.concat(received).length > 0);
  const ack = Buffer.concat(received);
  assert.deepEqual([ack[0], ack[1] & 0x80, ack.subarray(6).toString()], [
    0x81,
    0x80,
    '{"y":5,"f":"u1","s":7}',
  ]);
  assert.equal(client.heartbeat(), true);
  client.close();
  await waitUntil(() => log.includes("closed true"));
  const after = Buffer.concat(received).subarray(ack.length);
  assert.equal(after.subarray(6, 13).toString(), '{"y":0}', "the heartbeat, masked");
  assert.deepEqual([...after.subarray(13)], [0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8], "close 1000");
  assert.deepEqual(log, ["open", 'frame {"y":3,"b":"hi","s":7}', "closed true"]);
  server.server.close();
});

Deno.test('a drop names the server\'s last {"error"}, else the close', async () => {
  const server = await tinyServer((s) => {
    s.once("data", () => {
      const error = '{"error":"heartbeat timeout"}';
      s.end(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1d\r\n${error}\r\n`);
    });
  });
  const { ctx, log } = recordingContext();
  new Client(ctx, "u1", "p", server.port, undefined).start();
  await waitUntil(() => log.includes("closed false"));
  assert.ok(log.includes('reason dropped: {"error":"heartbeat timeout"}'), log.join("; "));
  server.server.close();

  const silent = await tinyServer((s) => {
    s.once("data", () => s.end("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"));
  });
  const second = recordingContext();
  new Client(second.ctx, "u1", "p", silent.port, undefined).start();
  await waitUntil(() => second.log.includes("closed false"));
  assert.ok(second.log.includes("reason dropped: closed by server"), second.log.join("; "));
  silent.server.close();
});

Deno.test("a long-poll client: polls on one socket, each since the last s it got", async () => {
  const polls: string[] = [];
  const answers = [[{ y: 3, b: "a", s: 1 }, { y: 3, b: "b", s: 2 }], [], [{ y: 3, b: "c", s: 3 }]];
  const server = await tinyServer((s) => {
    s.on("data", (d: Buffer) => {
      polls.push(d.toString().split("\r\n")[0]);
      const result = answers.shift();
      if (!result) return;
      const body = JSON.stringify({ result });
      const answer = `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
      // Split inside the body, to be read whole anyway.
      s.write(answer.slice(0, answer.length - 3));
      setTimeout(() => s.write(answer.slice(-3)), 10);
    });
  });
  const { ctx, log } = recordingContext("poll");
  const client = new Client(ctx, "u1", "p", server.port, undefined);
  client.start();
  await waitUntil(() => polls.length === 4);
  assert.deepEqual(polls, [
    "GET /poll?uid=u1&password=p&wait=0&since=0 HTTP/1.1",
    "GET /poll?uid=u1&password=p&since=2 HTTP/1.1",
    "GET /poll?uid=u1&password=p&since=2 HTTP/1.1",
    "GET /poll?uid=u1&password=p&since=3 HTTP/1.1",
  ]);
  assert.equal(client.heartbeat(), false, "nothing to keep alive");
  client.close();
  await waitUntil(() => log.includes("closed true"));
  assert.deepEqual(log.filter((l) => l.startsWith("frame")).length, 3);
  server.server.close();
});

async function waitUntil(done: () => boolean): Promise<void> {
  const until = performance.now() + 3000;
  while (!done()) {
    if (performance.now() > until) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 10));
  }
}

Deno.test("progress line: names the most frequent failure once there is one", () => {
  const entry: TimelineEntry = {
    t_s: 12,
    phase: "hold",
    open: 1000,
    connected_per_s: 0,
    failed: 0,
    dropped: 0,
    sent_per_s: 0,
    refused_per_s: 0,
    received_per_s: 0,
    latency: new Histogram().summary(),
    lag_p99_ms: null,
    rss_kb: 2048,
    top_reason: null,
  };
  assert.ok(!progressLine(entry).includes("most:"), progressLine(entry));
  const line = progressLine({ ...entry, dropped: 3, top_reason: "3× closed by the server" });
  assert.match(line, /drop 3 .*\| most: 3× closed by the server$/);
});

Deno.test("pacer: a request is stamped with its due time, so a stall counts in the latency", async () => {
  // 200 messages/s, one request in flight, each answered after 50 ms: the generator falls
  // behind by 45 ms a request. Measured from the actual send every latency would be ~50 ms.
  const latencies: number[] = [];
  const dues: number[] = [];
  let inFlight = 0;
  const pacer = new Pacer(200, 1, (dueMs) => {
    dues.push(dueMs);
    const payload = stamp(dues.length, dueMs);
    inFlight++;
    setTimeout(() => {
      inFlight--;
      latencies.push(nowMs() - parseStamp(payload)!.ts);
      pacer.wake();
    }, 50);
    return 1;
  }, () => inFlight);
  const start = nowMs();
  await pacer.run(performance.now() + 600);
  dues.forEach((due, k) => near(due - start, (k + 1) * 5, 3));
  assert.ok(latencies.length >= 8 && latencies.length <= 12, `${latencies.length} answered`);
  assert.ok(latencies.at(-1)! > 300, `last latency ${latencies.at(-1)} ms, not from the schedule`);
  near(pacer.unsent, 120 - dues.length, 2);
});

Deno.test("pacer: with room in flight, a message starts when it falls due, not at the next look", async () => {
  // 300 messages/s, one every 3.3 ms: looking at the schedule every 5 ms held them a median
  // of ~3 ms past their time (measured: 3.1 ms); waking at each due time, ~0.7 ms.
  const lags: number[] = [];
  const pacer = new Pacer(300, 1000, (dueMs) => {
    lags.push(nowMs() - dueMs);
    return 1;
  }, () => 0);
  await pacer.run(performance.now() + 500);
  lags.sort((a, b) => a - b);
  assert.ok(lags.length >= 140, `${lags.length} started`);
  assert.ok(lags[0] >= -0.5, `one started ${-lags[0]} ms early`);
  const median = lags[lags.length >> 1];
  assert.ok(median < 2, `median ${median} ms past its time`);
});

Deno.test("pacer: at --rate=max a request is due when it is sent", async () => {
  const lags: number[] = [];
  let inFlight = 0;
  const pacer = new Pacer("max", 2, (dueMs) => {
    lags.push(nowMs() - dueMs);
    inFlight++;
    setTimeout(() => {
      inFlight--;
      pacer.wake();
    }, 5);
    return 1;
  }, () => inFlight);
  await pacer.run(performance.now() + 100);
  assert.ok(lags.length > 4);
  for (const lag of lags) assert.ok(lag >= 0 && lag < 2, `lag ${lag}`);
  assert.equal(pacer.unsent, 0);
});

Deno.test("admin client: Retry-After is read; 2,000 requests are in flight at once", async () => {
  // One client process's share of --concurrency=4000 over two: the agent must not cap it.
  const held: (() => void)[] = [];
  const all = Promise.withResolvers<void>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    const path = new URL(request.url).pathname;
    if (path === "/busy") {
      return new Response('{"error":"overloaded"}', {
        status: 503,
        headers: { "retry-after": "1" },
      });
    }
    if (path === "/slow") return new Response('{"error":"slow down"}', { status: 429 });
    const answered = new Promise<Response>((r) =>
      held.push(() => r(Response.json({ result: "ok" })))
    );
    if (held.length === 2000) all.resolve();
    return answered;
  });
  const admin = new AdminClient("127.0.0.1", server.addr.port);
  try {
    const busy = await admin.request("POST", "/busy", "x");
    assert.deepEqual([busy.status, busy.retryAfter], [503, "1"]);
    const slow = await admin.request("POST", "/slow", "x");
    assert.deepEqual([slow.status, slow.retryAfter], [429, null]);
    const answers = Array.from({ length: 2000 }, () => admin.pubTo("u", "load", "x"));
    await all.promise;
    for (const answer of held) answer();
    assert.ok((await Promise.all(answers)).every((a) => a.status === 200));
  } finally {
    admin.close();
    await server.shutdown();
  }
});

Deno.test("admin client: keeps a socket alive, leaves it on Connection: close, reads chunked, times out", async () => {
  // Answers by path, byte for byte, on a node:net server that counts its connections.
  let connections = 0;
  const answers: Record<string, string> = {
    "/ok": 'HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{"result":"ok"}',
    "/last": "HTTP/1.1 201 Created\r\nConnection: close\r\nContent-Length: 3\r\n\r\nhé",
    "/chunked":
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
  };
  const server = net.createServer((socket) => {
    connections++;
    let text = "";
    socket.on("data", (data) => {
      text += data.toString("latin1");
      let end;
      while ((end = text.indexOf("\r\n\r\n")) >= 0) {
        const head = text.slice(0, end);
        const length = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0);
        if (text.length < end + 4 + length) return;
        text = text.slice(end + 4 + length);
        const answer = answers[head.split(" ")[1]];
        if (answer) socket.write(Buffer.from(answer, "utf8"));
      }
    });
    socket.on("error", () => {});
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const admin = new AdminClient("127.0.0.1", (server.address() as net.AddressInfo).port, 300);
  try {
    for (let i = 0; i < 3; i++) assert.equal((await admin.request("POST", "/ok", "x")).status, 200);
    assert.equal(connections, 1, "one socket for requests one after another");
    const last = await admin.request("POST", "/last", "x");
    assert.deepEqual([last.status, last.body], [201, "hé"]);
    assert.equal((await admin.request("GET", "/ok")).status, 200);
    assert.equal(connections, 2, "a socket the server closes is not used again");
    assert.equal((await admin.request("GET", "/chunked")).body, "abcde");
    await assert.rejects(admin.request("GET", "/never"), /admin request timeout/);
  } finally {
    admin.close();
    await new Promise((r) => server.close(r));
  }
});

Deno.test("recovery: the first of five quick oks in a row; null when none come in time", async () => {
  const end = nowMs();
  // Refused for 300 ms, then one answer too slow to count, then quick oks.
  let slowOnce = true;
  const probe = async () => {
    if (nowMs() - end < 300) return "HTTP 503";
    if (slowOnce) {
      slowOnce = false;
      await new Promise((r) => setTimeout(r, 2 * PROBE_DEADLINE_MS));
    }
    return "ok";
  };
  const { afterMs, outcomes } = await timeToRecover(probe, end, 3000);
  const least = 300 + PROBE_DEADLINE_MS;
  assert.ok(afterMs! >= least && afterMs! <= least + 2 * PROBE_EVERY_MS + 20, `${afterMs} ms`);
  assert.ok(nowMs() - end >= afterMs! + (RECOVERED_AFTER - 1) * PROBE_EVERY_MS - 5);
  assert.deepEqual([outcomes.ok, outcomes.slow], [RECOVERED_AFTER, 1]);
  assert.ok(outcomes["HTTP 503"] >= 300 / PROBE_EVERY_MS - 1, JSON.stringify(outcomes));
  const refused = await timeToRecover(() => Promise.reject(new Error("refused")), nowMs(), 200);
  assert.equal(refused.afterMs, null);
  assert.ok(refused.outcomes.error > 0);
  const late = await timeToRecover(() => Promise.resolve("ok"), nowMs() - 2000, 1000);
  assert.deepEqual(late, { afterMs: null, outcomes: {} });
});

const LOAD = new URL("./load.ts", import.meta.url).pathname;

/** Runs the load generator to its end; returns the result file. */
async function load(args: string[]): Promise<Record<string, Record<string, unknown>>> {
  const dir = await Deno.makeTempDir({ prefix: "ipush-load-" });
  const out = `${dir}/result.json`;
  const { code, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", LOAD, ...args, `--out=${out}`],
    stdout: "null",
  }).output();
  assert.equal(code, 0, new TextDecoder().decode(stderr));
  const result = JSON.parse(await Deno.readTextFile(out));
  await Deno.remove(dir, { recursive: true });
  return result;
}

/** Flags that point the generator at `daemon`, small. */
function against(daemon: { clientPort: number; adminPort: number; pidFile: string }): string[] {
  return [
    `--client_port=${daemon.clientPort}`,
    `--admin_port=${daemon.adminPort}`,
    `--pid_file=${daemon.pidFile}`,
    "--connections=20",
    "--processes=1",
    "--source_addrs=0",
    "--drain_sec=2",
  ];
}

Deno.test("load against two front doors: uid n's first hop goes to the (n mod 2)th", async () => {
  const doors = [
    await startDaemon(["--storage=memory"]),
    await startDaemon(["--storage=memory"]),
  ];
  const sessions = async (daemon: (typeof doors)[number]) =>
    ((await daemon.admin("/stats")).body.result as { user: { connection_number: number } })
      .user.connection_number;
  try {
    const run = load([
      "idle",
      ...against(doors[0]),
      `--client_port=${doors[0].clientPort},${doors[1].clientPort}`,
      "--connections=10",
      // Long enough to be seen on a slow box: the generator's start and connects come first.
      "--hold_sec=8",
    ]);
    let held: number[] = [];
    const halves = async () => (held = await Promise.all(doors.map(sessions))).join() === "5,5";
    assert.ok(await eventually(halves, 15_000), `each front door's node holds half: ${held}`);
    const { metrics } = await run;
    assert.equal(metrics.connections_ok, 10);
  } finally {
    for (const daemon of doors) await daemon.stop();
  }
});

Deno.test("load against the daemon: a 503 with Retry-After is a refusal, not a line failure", async () => {
  // One message in flight at most: while one batch of 10 is in, every other is refused.
  const daemon = await startDaemon(["--max_inflight=1"]);
  try {
    const { metrics, timeline, answer_latency, refusal_latency } = await load([
      "unicast",
      ...against(daemon),
      "--rate=max",
      "--batch=10",
      "--concurrency=8",
      "--duration_sec=1",
    ]);
    const refused = metrics.requests_refused_503 as number;
    assert.ok(refused > 0, JSON.stringify(metrics));
    assert.equal(metrics.refused_with_retry_after, refused);
    assert.equal(metrics.refused_messages, 10 * refused);
    assert.equal(metrics.requests_refused_429, 0);
    assert.equal(metrics.publish_failed, 0, "a refused request is not ten failed lines");
    assert.equal(metrics.published_ok, 10 * (metrics.requests_ok as number));
    // The latencies cover every answer; the counts, the load window: a request in flight when
    // the window closed (8 at most) is answered after it, in the latencies only.
    const ok = metrics.requests_ok as number;
    const within = (count: unknown, of: number) =>
      typeof count === "number" && count >= of && count <= of + 8;
    assert.ok(within(answer_latency.count, ok), `${answer_latency.count} answers, ${ok} ok`);
    assert.ok(within(refusal_latency.count, refused), `${refusal_latency.count} of ${refused}`);
    assert.ok((metrics.server_rss_kb_max_load as number) > 10_000);
    assert.ok((timeline as unknown as { rss_kb: number }[]).every((e) => e.rss_kb > 0));
    const recovered = metrics.recovered_after_ms as number;
    assert.ok(recovered >= 0 && recovered < 1000, `recovered after ${recovered} ms`);
    assert.match(metrics.recovery_probes as string, /\b5 ok\b/);
  } finally {
    await daemon.stop();
  }
});

Deno.test("load against the daemon: latency runs from the schedule when the generator lags", async () => {
  // 20,000 /pub a second with one in flight: no server answers that fast, so the schedule
  // runs ahead of the sends. From the actual send, latency would be about a millisecond.
  const daemon = await startDaemon();
  try {
    const { metrics, latency, schedule_lag } = await load([
      "unicast",
      ...against(daemon),
      "--rate=20000",
      "--concurrency=1",
      "--duration_sec=2",
    ]);
    assert.ok((metrics.unsent_behind_schedule as number) > 10_000, JSON.stringify(metrics));
    assert.ok((latency.p50_ms as number) > 300, `p50 ${latency.p50_ms} ms`);
    assert.ok((schedule_lag.p50_ms as number) > 300, "the lag is reported apart");
    assert.equal(metrics.requests_refused_503, 0);
    assert.equal(typeof metrics.recovered_after_ms, "number");
  } finally {
    await daemon.stop();
  }
});

Deno.test("load against the daemon: codec=msgpack over TCP and WebSocket, every delivery matched and acked", async () => {
  const daemon = await startDaemon();
  try {
    for (const transport of ["tcp", "ws"]) {
      const { metrics } = await load([
        "unicast",
        ...against(daemon),
        "--codec=msgpack",
        `--transport=${transport}`,
        "--rate=200",
        "--duration_sec=1",
        `--uid_prefix=mp_${transport}_`,
      ]);
      const published = metrics.published_ok as number;
      assert.ok(published > 50, JSON.stringify(metrics));
      assert.equal(metrics.delivered_total, published, transport);
      assert.equal(metrics.missing_after_drain, 0, transport);
      assert.equal(metrics.unmatched, 0, transport);
    }
    // Acked as MessagePack: nothing is left for those users.
    const listed = await daemon.admin("/msg?uid=mp_tcp_0");
    assert.deepEqual(listed.body.result, []);
  } finally {
    await daemon.stop();
  }
});

Deno.test("heartbeats: each client sends a period after its connect and its last, while others connect and close", () => {
  // A minute's period, 100 ms ticks, 40 clients connecting a second for 150 s, every 7th
  // closing after 80 s; one tick 2 s late. Round-robin shares of a growing list held some
  // clients silent for up to two periods.
  const period = 60_000;
  type Sim = { id: number; at: number; open: boolean; last: number };
  const queue = new HeartbeatQueue<Sim>(period);
  const clients: Sim[] = [];
  let longest = 0;
  for (let now = 0; now <= 300_000; now += now === 200_000 ? 2_000 : 100) {
    if (now < 150_000 && now % 1000 === 0) {
      for (let k = 0; k < 40; k++) {
        const client = { id: clients.length, at: now, open: true, last: now };
        clients.push(client);
        queue.add(client, now);
      }
    }
    for (const client of clients) {
      if (client.open && client.id % 7 === 0 && now - client.at >= 80_000) client.open = false;
    }
    queue.drain(now, (client) => {
      if (!client.open) return false;
      longest = Math.max(longest, now - client.last);
      client.last = now;
      return true;
    });
  }
  for (const client of clients) {
    if (client.open) longest = Math.max(longest, 300_000 - client.last);
  }
  assert.ok(longest <= period + 2_000, `a client silent for ${longest} ms`);
  assert.equal(queue.size, clients.filter((c) => c.open).length);
});

Deno.test("server_proc: CPU by thread finds a busy thread's work, within the whole", () => {
  const before = cpuSecondsByThread(Deno.pid);
  const start = performance.now();
  let x = 0;
  while (performance.now() - start < 300) x += Math.sqrt(x + 1);
  assert.ok(x > 0);
  const after = cpuSecondsByThread(Deno.pid);
  // The thread that ran the loop (`deno` in a daemon; a runtime thread under `deno test`).
  const busiest = Math.max(...[...after].map(([name, s]) => s - (before.get(name) ?? 0)));
  // 0.3 s of a busy loop, read in 10 ms ticks, on a machine that may preempt it.
  assert.ok(busiest >= 0.1 && busiest <= 0.5, `busiest thread: ${busiest} s for 0.3 s of work`);
  assert.ok([...after.keys()].every((name) => name.length > 0));
  // Threads that ended count in the whole process only.
  const sum = [...after.values()].reduce((a, b) => a + b, 0);
  assert.ok(sum <= cpuSeconds(Deno.pid)! + 0.01 * after.size, `${sum} s by thread`);
  assert.deepEqual(cpuSecondsByThread(2 ** 22 + 1), new Map());
});
