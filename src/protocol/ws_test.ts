import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import net from "node:net";
import { prng } from "../testing/support.ts";
import { utf8Length } from "./chunk.ts";
import {
  acceptKey,
  binaryFrame,
  closeFrame,
  pongFrame,
  textFrame,
  upgradedHead,
  upgradeProblem,
  WsDecoder,
  WsError,
  type WsSink,
} from "./ws.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A client frame as a browser sends it: masked with a random key. */
export function clientFrame(byte0: number, payload: Uint8Array | string, masked = true) {
  const body = typeof payload === "string" ? encoder.encode(payload) : payload;
  const length = body.length;
  const head = length < 126 ? 2 : length < 65536 ? 4 : 10;
  const frame = new Uint8Array(head + (masked ? 4 : 0) + length);
  frame[0] = byte0;
  frame[1] = (masked ? 0x80 : 0) | (length < 126 ? length : length < 65536 ? 126 : 127);
  const view = new DataView(frame.buffer);
  if (head === 4) view.setUint16(2, length);
  if (head === 10) view.setBigUint64(2, BigInt(length));
  const key = masked ? crypto.getRandomValues(new Uint8Array(4)) : new Uint8Array(4);
  frame.set(masked ? key : [], head);
  const at = head + (masked ? 4 : 0);
  for (let i = 0; i < length; i++) frame[at + i] = body[i] ^ key[i & 3];
  return frame;
}

/** Records what a decoder reports, as short strings. */
class Recorder implements WsSink {
  events: string[] = [];
  message(payload: Uint8Array) {
    this.events.push(`text:${decoder.decode(payload)}`);
  }
  ping(payload: Uint8Array) {
    this.events.push(`ping:${decoder.decode(payload)}`);
  }
  pong(payload: Uint8Array) {
    this.events.push(`pong:${decoder.decode(payload)}`);
  }
  closing(code: number, reason: string) {
    this.events.push(`close:${code}:${reason}`);
  }
}

/** Feeds `bytes` to a new decoder and returns what it reported, or the error's code. */
function decode(
  bytes: Uint8Array,
  max = 1000,
  split?: () => number,
  binary = false,
): string[] {
  const recorder = new Recorder();
  const decoder = new WsDecoder(recorder, max, binary);
  try {
    for (let i = 0; i < bytes.length;) {
      const n = split ? split() : bytes.length;
      decoder.push(bytes.subarray(i, i + n));
      i += n;
    }
  } catch (error) {
    if (!(error instanceof WsError)) throw error;
    recorder.events.push(`error:${error.code}`);
  }
  return recorder.events;
}

Deno.test("ws: the accept key of RFC 6455's own example", () => {
  assert.deepEqual(acceptKey("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  assert.deepEqual(
    upgradedHead("dGhlIHNhbXBsZSBub25jZQ=="),
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
  );
});

Deno.test("ws: an upgrade needs version 13, Connection: Upgrade and a 16-byte key", () => {
  const good = new Map([
    ["connection", "keep-alive, Upgrade"],
    ["sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="],
    ["sec-websocket-version", "13"],
  ]);
  assert.deepEqual(upgradeProblem(good), null);
  const without = (name: string, value?: string) => {
    const headers = new Map(good);
    if (value === undefined) headers.delete(name);
    else headers.set(name, value);
    return upgradeProblem(headers);
  };
  assert.deepEqual(without("sec-websocket-version", "8")?.status, 426);
  assert.deepEqual(without("sec-websocket-version")?.status, 426);
  assert.deepEqual(
    without("connection", "keep-alive")?.reason,
    "websocket upgrade needs Connection: Upgrade",
  );
  assert.deepEqual(without("connection", "upgrades")?.status, 400);
  assert.deepEqual(without("sec-websocket-key", "c2hvcnQ=")?.reason, "invalid Sec-WebSocket-Key");
  assert.deepEqual(without("sec-websocket-key")?.status, 400);
});

Deno.test("ws: frames decode alike however the reads split them", () => {
  const big = "a".repeat(70_000);
  const medium = "é".repeat(100); // 200 bytes: the 16-bit length form
  const stream = Buffer.concat([
    clientFrame(0x81, '{"y":0}'),
    clientFrame(0x81, ""),
    clientFrame(0x81, "é€😀 small"),
    clientFrame(0x81, medium),
    clientFrame(0x01, "one-"),
    clientFrame(0x89, "ping!"), // a control frame between fragments
    clientFrame(0x00, "two-"),
    clientFrame(0x80, "three"),
    clientFrame(0x81, big),
    clientFrame(0x8a, "pong"),
    clientFrame(0x88, new Uint8Array([0x03, 0xe8, 0x62, 0x79, 0x65])),
    clientFrame(0x81, "after the close: not read"),
  ]);
  const expected = [
    'text:{"y":0}',
    "text:",
    "text:é€😀 small",
    `text:${medium}`,
    "ping:ping!",
    "text:one-two-three",
    `text:${big}`,
    "pong:pong",
    "close:1000:bye",
  ];
  const random = prng(6455);
  for (let trial = 0; trial < 200; trial++) {
    const limit = trial === 0 ? 1 : trial < 100 ? 10 : 5000;
    const split = () => 1 + Math.floor(random() * limit);
    assert.deepEqual(decode(Uint8Array.from(stream), 100_000, split), expected, `trial ${trial}`);
  }
});

Deno.test("ws: a frame that breaks the protocol is an error with its close code", () => {
  const cases: [Uint8Array, number][] = [
    [clientFrame(0x81, "x", false), 1002], // unmasked
    [clientFrame(0xc1, "x"), 1002], // a reserved bit
    [clientFrame(0x83, "x"), 1002], // unknown opcode
    [clientFrame(0x82, "x"), 1003], // binary
    [clientFrame(0x80, "x"), 1002], // continuation of nothing
    [Buffer.concat([clientFrame(0x01, "a"), clientFrame(0x81, "b")]), 1002], // interleaved
    [clientFrame(0x09, "x"), 1002], // fragmented ping
    [clientFrame(0x89, "x".repeat(126)), 1002], // ping over 125 bytes
    [clientFrame(0x88, new Uint8Array([3])), 1002], // close with one byte
    [clientFrame(0x88, new Uint8Array([0x03, 0xed])), 1002], // close code 1005 sent
    [clientFrame(0x88, new Uint8Array([0x03, 0xe8, 0xff])), 1007], // reason not UTF-8
    [clientFrame(0x81, new Uint8Array([0xff, 0xfe])), 1007], // text not UTF-8
    [clientFrame(0x81, new Uint8Array([0xe2, 0x82])), 1007], // a character cut short
    [clientFrame(0x81, "x".repeat(1001)), 1009], // over the limit (1000)
    [clientFrame(0x81, "x".repeat(70_000)), 1009], // 64-bit length, over it
    [Buffer.concat([clientFrame(0x01, "x".repeat(600)), clientFrame(0x80, "y".repeat(401))]), 1009],
  ];
  for (const [frame, code] of cases) {
    const events = decode(frame);
    assert.deepEqual(events[events.length - 1], `error:${code}`, `${frame.subarray(0, 2)}`);
  }
});

Deno.test("ws: an oversized frame fails before its payload arrives", () => {
  const frame = clientFrame(0x81, "x".repeat(5000));
  const decoder = new WsDecoder(new Recorder(), 1000);
  assert.throws(() => decoder.push(frame.subarray(0, 4)), new WsError(1009, "frame too large"));
});

Deno.test("ws: server frames are latin1 strings with the UTF-8 payload", () => {
  const frame = (text: string) => Buffer.from(textFrame(text, utf8Length(text)), "latin1");
  const small = frame("hi");
  assert.deepEqual([small[0], small[1], small.toString("utf8", 2)], [0x81, 2, "hi"]);
  const medium = frame("é".repeat(100));
  assert.deepEqual([medium[1], medium.readUInt16BE(2)], [126, 200]);
  assert.deepEqual(medium.toString("utf8", 4), "é".repeat(100));
  const big = frame("z".repeat(70_000));
  assert.deepEqual([big[1], Number(big.readBigUInt64BE(2)), big.length], [127, 70_000, 70_010]);
  assert.deepEqual([...Buffer.from(closeFrame(1000, "ok"), "latin1")], [
    0x88,
    4,
    3,
    0xe8,
    0x6f,
    0x6b,
  ]);
  assert.deepEqual([...Buffer.from(pongFrame(encoder.encode("p")), "latin1")], [0x8a, 1, 0x70]);
  // A long reason is cut to fit 125 bytes, and not inside a character.
  const long = Buffer.from(closeFrame(1008, "é".repeat(100)), "latin1");
  assert.deepEqual([long[1], long.toString("utf8", 4)], [2 + 122, "é".repeat(61)]);
});

/** A server on the codec that echoes text, answers pings and echoes a close. */
async function echoServer(): Promise<net.Server> {
  const server = net.createServer((socket) => {
    let head = Buffer.alloc(0);
    let ws: WsDecoder | null = null;
    socket.on("error", () => {});
    socket.on("data", (bytes: Buffer) => {
      if (ws) return ws.push(bytes);
      head = Buffer.concat([head, bytes]);
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) return;
      const key = /sec-websocket-key: *(\S+)/i.exec(head.toString("latin1", 0, end))![1];
      socket.write(upgradedHead(key), "latin1");
      ws = new WsDecoder({
        message: (payload) => {
          const text = decoder.decode(payload);
          socket.write(textFrame(text, payload.length), "latin1");
        },
        ping: (payload) => socket.write(pongFrame(payload), "latin1"),
        pong: () => {},
        closing: (code) => socket.end(closeFrame(code === 1005 ? 1000 : code), "latin1"),
      }, 1 << 20);
      ws.push(head.subarray(end + 4));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return server;
}

Deno.test("ws: Deno's own WebSocket client talks to the codec", async () => {
  const server = await echoServer();
  const port = (server.address() as net.AddressInfo).port;
  const texts = ['{"y":0}', "é€😀 mixed", "x".repeat(125), "y".repeat(126), "z".repeat(70_000)];
  const ws = new WebSocket(`ws://127.0.0.1:${port}/connect?uid=u&password=p`);
  const echoed: string[] = [];
  const closed = Promise.withResolvers<CloseEvent>();
  ws.onopen = () => texts.forEach((text) => ws.send(text));
  ws.onmessage = (event) => {
    echoed.push(event.data);
    if (echoed.length === texts.length) ws.close(4000, "done");
  };
  ws.onclose = (event) => closed.resolve(event);
  const event = await closed.promise;
  server.close();
  assert.deepEqual([event.code, event.wasClean], [4000, true]);
  assert.deepEqual(echoed, texts);
});

Deno.test("ws: a binary connection (codec=msgpack) takes binary messages only, not UTF-8 checked", () => {
  const bytes = new Uint8Array([0x82, 0xa1, 0x79, 0x00, 0xff]);
  const whole = clientFrame(0x82, bytes);
  const fragmented = Buffer.concat([
    clientFrame(0x02, bytes.subarray(0, 2)),
    clientFrame(0x89, "p"),
    clientFrame(0x80, bytes.subarray(2)),
  ]);
  const latin1 = (payload: Uint8Array) => `text:${decoder.decode(payload)}`;
  assert.deepEqual(decode(whole, 1000, undefined, true), [latin1(bytes)]);
  assert.deepEqual(decode(fragmented, 1000, () => 3, true), ["ping:p", latin1(bytes)]);
  assert.deepEqual(decode(clientFrame(0x81, '{"y":0}'), 1000, undefined, true), ["error:1003"]);
  assert.deepEqual(decode(clientFrame(0x82, "x".repeat(1001)), 1000, undefined, true), [
    "error:1009",
  ]);
  assert.equal(binaryFrame("\x82\xa1y\x00"), "\x82\x04\x82\xa1y\x00");
});
