/**
 * Micro-benchmarks of the wire protocol's hot paths: `deno bench -A bench/protocol_bench.ts`.
 *
 * @module
 */

import {
  ChunkDecoder,
  encodeChunk,
  encodeTextChunk,
  textChunk,
  utf8Length,
} from "../src/protocol/chunk.ts";
import { textFrame, WsDecoder, type WsSink } from "../src/protocol/ws.ts";
import { parseHead } from "../src/protocol/handshake.ts";
import { encodeDelivery, parseClientMessage } from "../src/protocol/message.ts";
import { encodeMsgpackDelivery, parseMsgpackMessage } from "../src/protocol/msgpack.ts";
import { Packr } from "msgpackr";
import { ShardMap } from "../src/core/shard_map.ts";

const encoder = new TextEncoder();

/** The example request of PROTOCOL.md §1. */
const HEAD = encoder.encode(
  "GET /connect?uid=user001&password=pwd001 HTTP/1.1\r\n" +
    "User-Agent: mobile_socket_client/0.1.0\r\n" +
    "Accept: */*\r\n" +
    "\r\n",
);

const SMALL_JSON = '{"y":3,"f":"user002","t":"user001","b":"hello","s":123}';
const SMALL_BYTES = encoder.encode(SMALL_JSON);
const ONE_FRAME = encodeTextChunk(SMALL_JSON);
const FRAMES = 100;
const HUNDRED_FRAMES = (() => {
  const out = new Uint8Array(ONE_FRAME.length * FRAMES);
  for (let i = 0; i < FRAMES; i++) out.set(ONE_FRAME, i * ONE_FRAME.length);
  return out;
})();

/**
 * The same frames as a browser sends them over a WebSocket: masked, with the all-zero key so
 * that unmasking in place (the same work whatever the key) leaves them as they were for the
 * next iteration.
 */
const HUNDRED_WS_FRAMES = (() => {
  const one = new Uint8Array(6 + SMALL_BYTES.length);
  one.set([0x81, 0x80 | SMALL_BYTES.length, 0, 0, 0, 0]);
  one.set(SMALL_BYTES, 6);
  const out = new Uint8Array(one.length * FRAMES);
  for (let i = 0; i < FRAMES; i++) out.set(one, i * one.length);
  return out;
})();
const WS_SINK: WsSink = {
  message: (payload) => void (sink += payload.length),
  ping: () => {},
  pong: () => {},
  closing: () => {},
};

const CLIENT_MESSAGE = encoder.encode('{"y":3,"f":"user001","t":"user002","b":"hello"}');

const UIDS = Array.from({ length: 1024 }, (_, i) => `user${(i * 7919) % 100_000}`);
const shards = (count: number) =>
  new ShardMap(
    Array.from({ length: count }, (_, k) => ({ id: `node/${k}`, host: "127.0.0.1", port: k })),
  );
const SIX = shards(6);
const SIXTY = shards(60);

/** Keeps results alive so the optimiser cannot drop the work. */
let sink = 0;

Deno.bench("parseHead (PROTOCOL.md request)", { group: "head parse", baseline: true }, () => {
  sink += parseHead(HEAD).params.size;
});

Deno.bench("encodeTextChunk (small JSON)", { group: "chunk encode", baseline: true }, () => {
  sink += encodeTextChunk(SMALL_JSON).length;
});

Deno.bench("encodeChunk (small JSON, already UTF-8)", { group: "chunk encode" }, () => {
  sink += encodeChunk(SMALL_BYTES).length;
});

Deno.bench(
  "TextEncoder.encode alone (small JSON), for comparison",
  { group: "chunk encode" },
  () => {
    sink += encoder.encode(SMALL_JSON).length;
  },
);

Deno.bench("textChunk (small JSON, as a session writes it)", {
  group: "frame a delivery",
  baseline: true,
}, () => {
  sink += textChunk(SMALL_JSON, utf8Length(SMALL_JSON)).length;
});

Deno.bench("textFrame (small JSON, a WebSocket text frame)", { group: "frame a delivery" }, () => {
  sink += textFrame(SMALL_JSON, utf8Length(SMALL_JSON)).length;
});

Deno.bench("decode 1 frame", { group: "chunk decode", baseline: true }, () => {
  const decoder = new ChunkDecoder(65536);
  decoder.push(ONE_FRAME, (body) => sink += body.length);
});

Deno.bench(`decode ${FRAMES} chunks in one buffer (per frame: time / ${FRAMES})`, {
  group: "decode x100",
  baseline: true,
  n: 10_000,
}, () => {
  const decoder = new ChunkDecoder(65536);
  decoder.push(HUNDRED_FRAMES, (body) => sink += body.length);
});

Deno.bench(`decode ${FRAMES} masked WebSocket frames in one buffer (per frame: / ${FRAMES})`, {
  group: "decode x100",
  n: 10_000,
}, () => {
  new WsDecoder(WS_SINK, 65536).push(HUNDRED_WS_FRAMES);
});

Deno.bench("encodeDelivery (y=3, stored)", { group: "encodeDelivery", baseline: true }, () => {
  sink += encodeDelivery({
    uid: "user001",
    seq: 123,
    type: 3,
    from: "user002",
    body: '"hello"',
  }).length;
});

Deno.bench("encodeDelivery (y=4, channel)", { group: "encodeDelivery" }, () => {
  sink += encodeDelivery({
    uid: "user001",
    seq: 123,
    type: 4,
    from: "user002",
    channel: "channel1",
    body: '"hello"',
  }).length;
});

// One channel message to 1,000 members, as a shard frames it for each: its text (the shared
// part is built once), its UTF-8 length and its chunk.
const MEMBERS = Array.from({ length: 1000 }, (_, i) => `user${i}`);
const BOARD_BODY = '{"text":"task 4711 moved to Done by alice","at":1796281013145}';
Deno.bench("a channel message framed for 1,000 members", { group: "fan-out", n: 1000 }, () => {
  for (let i = 0; i < MEMBERS.length; i++) {
    const text = encodeDelivery({
      uid: MEMBERS[i],
      seq: 1000 + i,
      type: 4,
      from: "board",
      channel: "board42",
      body: BOARD_BODY,
    });
    sink += textChunk(text + "\n", utf8Length(text) + 1).length;
  }
});

Deno.bench("parseClientMessage (y=3)", { group: "parseClientMessage", baseline: true }, () => {
  sink += parseClientMessage(CLIENT_MESSAGE).y;
});

// JSON beside MessagePack (codec=msgpack): a delivery with an object body holding a 64-bit id,
// and a client's y=3 with the same body.
const OBJECT_BODY = '{"id":12345678901234567890,"text":"hello","tags":["a","b"]}';
// Bodies that differ, as a unicast stream's do (a channel's members share one, which the
// msgpack encoder parses once).
const DELIVERIES = Array.from({ length: 1024 }, (_, i) => ({
  uid: "user001",
  seq: 123,
  type: 3 as const,
  from: "user002",
  body: OBJECT_BODY.replace("hello", `hello${i}`),
}));
const JSON_CLIENT = encoder.encode(`{"y":3,"t":"user002","b":${OBJECT_BODY}}`);
const MSGPACK_CLIENT = new Packr({ useRecords: false, variableMapSize: true }).pack({
  y: 3,
  t: "user002",
  b: { id: 12345678901234567890n, text: "hello", tags: ["a", "b"] },
});

let delivery = 0;
Deno.bench(
  "JSON: encode a delivery, object body",
  { group: "codec encode", baseline: true },
  () => {
    sink += encodeDelivery(DELIVERIES[delivery++ & 1023]).length;
  },
);

Deno.bench("msgpack: encode a delivery, object body", { group: "codec encode" }, () => {
  sink += encodeMsgpackDelivery(DELIVERIES[delivery++ & 1023]).length;
});

Deno.bench(
  "JSON: parse a client y=3, object body",
  { group: "codec parse", baseline: true },
  () => {
    sink += parseClientMessage(JSON_CLIENT).y;
  },
);

Deno.bench("msgpack: parse a client y=3, object body", { group: "codec parse" }, () => {
  sink += parseMsgpackMessage(MSGPACK_CLIENT).y;
});

let next = 0;
Deno.bench("ShardMap.indexOf, 6 shards", { group: "shard lookup", baseline: true }, () => {
  sink += SIX.indexOf(UIDS[next++ & 1023]);
});

Deno.bench("ShardMap.indexOf, 60 shards", { group: "shard lookup" }, () => {
  sink += SIXTY.indexOf(UIDS[next++ & 1023]);
});

globalThis.addEventListener("unload", () => {
  if (sink === -1) console.log(sink);
});
