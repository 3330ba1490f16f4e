import assert from "node:assert/strict";
import {
  ChunkDecoder,
  ChunkError,
  encodeChunk,
  encodeTextChunk,
  LAST_CHUNK,
  utf8Length,
} from "./chunk.ts";
import { prng } from "../testing/support.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const bytes = (text: string) => encoder.encode(text);
const text = (data: Uint8Array) => decoder.decode(data);

const HEARTBEAT = '{"y":0}';
const MAX = 65536;

/** Feeds `pieces` in order; returns the decoded bodies (copied) and the last push result. */
function decode(
  pieces: readonly Uint8Array[],
  decoderInstance = new ChunkDecoder(MAX),
): { bodies: Uint8Array[]; open: boolean } {
  const bodies: Uint8Array[] = [];
  let open = true;
  for (const piece of pieces) {
    open = decoderInstance.push(piece, (body) => bodies.push(body.slice()));
  }
  return { bodies, open };
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function assertChunkError(input: string | Uint8Array, reason: string, max = MAX): void {
  const data = typeof input === "string" ? bytes(input) : input;
  assert.throws(
    () => new ChunkDecoder(max).push(data, () => {}),
    (error: unknown) => error instanceof ChunkError && error.reason === reason,
    `${JSON.stringify(typeof input === "string" ? input : "bytes")} should fail with ${reason}`,
  );
}

// ---------------------------------------------------------------------------------------------
// Encoding

Deno.test("encodeChunk: lowercase hex size, CRLF, body, CRLF", () => {
  const ten = bytes("0123456789");
  assert.equal(text(encodeChunk(ten)), "a\r\n0123456789\r\n");
  assert.equal(text(encodeChunk(new Uint8Array(255).fill(0x78))), `ff\r\n${"x".repeat(255)}\r\n`);
  assert.equal(text(encodeChunk(new Uint8Array(0xabc).fill(0x78))).slice(0, 5), "abc\r\n");
  assert.equal(text(encodeChunk(new Uint8Array(0))), "0\r\n\r\n");
});

Deno.test("encodeChunk: the PROTOCOL.md heartbeat frame", () => {
  // PROTOCOL.md writes `a\r\n{"y":0}\r\n`; `{"y":0}` is 7 bytes, so the size it shows is
  // inconsistent with its body. The encoder gives the body's real length.
  assert.deepEqual(encodeTextChunk(HEARTBEAT), bytes('7\r\n{"y":0}\r\n'));
});

Deno.test("encodeTextChunk: the size counts UTF-8 bytes", () => {
  const body = '{"b":"\u00e9\u20ac"}'; // 2 + 3 bytes for 2 characters
  assert.equal(text(encodeTextChunk(body)), `d\r\n${body}\r\n`);
});

Deno.test("property: utf8Length is what TextEncoder writes, ASCII or not", () => {
  const random = prng(7);
  // ASCII, two- and three-byte characters, a pair of surrogates, and lone ones (U+FFFD).
  const pieces = [
    "a",
    "{",
    "\u007f",
    "\u00e9",
    "\u07ff",
    "\u20ac",
    "\ud83d\ude00",
    "\ud800",
    "\udc00",
  ];
  for (let round = 0; round < 2000; round++) {
    let sample = "";
    const length = Math.floor(random() * 40);
    const ascii = random() < 0.5;
    for (let i = 0; i < length; i++) {
      sample += pieces[Math.floor(random() * (ascii ? 3 : pieces.length))];
    }
    assert.equal(utf8Length(sample), encoder.encode(sample).length, JSON.stringify(sample));
  }
});

Deno.test("LAST_CHUNK is 0 CRLF CRLF", () => {
  assert.equal(text(LAST_CHUNK), "0\r\n\r\n");
});

// ---------------------------------------------------------------------------------------------
// Decoding

Deno.test("decode: one frame", () => {
  const { bodies, open } = decode([bytes('7\r\n{"y":0}\r\n')]);
  assert.deepEqual(bodies.map(text), [HEARTBEAT]);
  assert.equal(open, true);
});

Deno.test("decode: a frame split byte by byte", () => {
  const frame = encodeTextChunk('{"y":3,"t":"user002","b":"hello"}');
  const pieces = [...frame].map((byte) => Uint8Array.of(byte));
  const seen: string[] = [];
  const chunkDecoder = new ChunkDecoder(MAX);
  pieces.forEach((piece, i) => {
    assert.equal(chunkDecoder.push(piece, (body) => seen.push(text(body))), true);
    // Nothing comes out before the final LF.
    assert.equal(seen.length, i === pieces.length - 1 ? 1 : 0, `after byte ${i}`);
  });
  assert.deepEqual(seen, ['{"y":3,"t":"user002","b":"hello"}']);
});

Deno.test("decode: ten frames in one push, in order", () => {
  const messages = Array.from({ length: 10 }, (_, i) => `{"y":5,"s":${i + 1}}`);
  const { bodies } = decode([concat(messages.map(encodeTextChunk))]);
  assert.deepEqual(bodies.map(text), messages);
});

Deno.test("decode: a body split across pushes", () => {
  const body = "x".repeat(1000);
  const frame = encodeTextChunk(body);
  const { bodies } = decode([frame.subarray(0, 10), frame.subarray(10, 500), frame.subarray(500)]);
  assert.deepEqual(bodies.map(text), [body]);
});

Deno.test("decode: a frame ending in one push and the next starting in it", () => {
  const all = concat([encodeTextChunk("first"), encodeTextChunk("second"), encodeTextChunk("3")]);
  const { bodies } = decode([all.subarray(0, 12), all.subarray(12, 17), all.subarray(17)]);
  assert.deepEqual(bodies.map(text), ["first", "second", "3"]);
});

Deno.test("decode: uppercase hex accepted", () => {
  const body = "y".repeat(0xab);
  assert.deepEqual(decode([bytes(`AB\r\n${body}\r\n`)]).bodies.map(text), [body]);
  assert.deepEqual(decode([bytes(`aB\r\n${body}\r\n`)]).bodies.map(text), [body]);
  assert.deepEqual(decode([bytes(`00aB\r\n${body}\r\n`)]).bodies.map(text), [body]);
});

Deno.test("decode: bare LF tolerated after the size and after the body", () => {
  const { bodies } = decode([bytes('7\n{"y":0}\n7\r\n{"y":0}\n7\n{"y":0}\r\n')]);
  assert.deepEqual(bodies.map(text), [HEARTBEAT, HEARTBEAT, HEARTBEAT]);
});

Deno.test("decode: 0 CRLF CRLF ends the stream", () => {
  const chunkDecoder = new ChunkDecoder(MAX);
  const seen: string[] = [];
  assert.equal(chunkDecoder.ended, false);
  const open = chunkDecoder.push(
    concat([encodeTextChunk(HEARTBEAT), LAST_CHUNK]),
    (body) => seen.push(text(body)),
  );
  assert.equal(open, false);
  assert.equal(chunkDecoder.ended, true);
  assert.deepEqual(seen, [HEARTBEAT]);
  // Anything after the end is ignored, even garbage.
  assert.equal(
    chunkDecoder.push(encodeTextChunk(HEARTBEAT), (body) => seen.push(text(body))),
    false,
  );
  assert.equal(chunkDecoder.push(bytes("zz"), () => assert.fail("no frame after the end")), false);
  assert.equal(chunkDecoder.push(new Uint8Array(0), () => {}), false);
  assert.deepEqual(seen, [HEARTBEAT]);
});

Deno.test("decode: the end split across pushes", () => {
  const chunkDecoder = new ChunkDecoder(MAX);
  assert.equal(chunkDecoder.push(bytes("0"), () => {}), true);
  assert.equal(chunkDecoder.ended, false);
  assert.equal(chunkDecoder.push(bytes("\r"), () => {}), true);
  assert.equal(chunkDecoder.push(bytes("\n"), () => {}), false);
  assert.equal(chunkDecoder.ended, true);
});

Deno.test("decode: an empty push changes nothing", () => {
  const chunkDecoder = new ChunkDecoder(MAX);
  assert.equal(chunkDecoder.push(new Uint8Array(0), () => assert.fail("no frame")), true);
  assert.equal(chunkDecoder.ended, false);
});

Deno.test("decode: a frame of exactly the maximum size is accepted", () => {
  const body = new Uint8Array(100).fill(0x41);
  assert.deepEqual(decode([encodeChunk(body)], new ChunkDecoder(100)).bodies, [body]);
});

// ---------------------------------------------------------------------------------------------
// Errors

Deno.test("decode errors: bad chunk size", () => {
  assertChunkError("g\r\n", "bad chunk size");
  assertChunkError("\r\n", "bad chunk size"); // no digits at all
  assertChunkError("\n", "bad chunk size");
  assertChunkError(" 7\r\n", "bad chunk size");
  assertChunkError("7 \r\n", "bad chunk size");
  assertChunkError("7;ext=1\r\n", "bad chunk size"); // chunk extensions are not spoken here
  assertChunkError("-7\r\n", "bad chunk size");
  assertChunkError("7\rx", "bad chunk size"); // CR not followed by LF
  assertChunkError("0x7\r\n", "bad chunk size");
});

Deno.test("decode errors: more than 8 hex digits is a bad size, even if small", () => {
  assert.deepEqual(decode([bytes("00000007\r\n1234567\r\n")]).bodies.map(text), ["1234567"]);
  assertChunkError("000000007\r\n1234567\r\n", "bad chunk size");
  assertChunkError("123456789", "bad chunk size", 2 ** 40);
});

Deno.test("decode errors: a size over the maximum fails before the body arrives", () => {
  assertChunkError("65\r\n", "frame too large", 100); // 0x65 = 101
  // Detected on the digit that crosses the limit, before CRLF and body.
  const chunkDecoder = new ChunkDecoder(100);
  chunkDecoder.push(bytes("6"), () => {});
  assert.throws(
    () => chunkDecoder.push(bytes("5"), () => {}),
    (error: unknown) => error instanceof ChunkError && error.reason === "frame too large",
  );
  assertChunkError("fffffff", "frame too large");
});

Deno.test("decode errors: missing CRLF after the body", () => {
  assertChunkError('7\r\n{"y":0}x', "missing CRLF after chunk");
  assertChunkError('7\r\n{"y":0}\rx', "missing CRLF after chunk");
  // The body is longer than its size says.
  assertChunkError('6\r\n{"y":0}\r\n', "missing CRLF after chunk");
  // Split: the error comes with the byte that is wrong.
  const chunkDecoder = new ChunkDecoder(MAX);
  assert.equal(chunkDecoder.push(bytes('7\r\n{"y":0}'), () => {}), true);
  assert.throws(
    () => chunkDecoder.push(bytes("!"), () => {}),
    (error: unknown) => error instanceof ChunkError && error.reason === "missing CRLF after chunk",
  );
});

Deno.test("decode errors: frames before the bad one are delivered", () => {
  const seen: string[] = [];
  assert.throws(
    () =>
      new ChunkDecoder(MAX).push(
        concat([encodeTextChunk("one"), encodeTextChunk("two"), bytes("zz")]),
        (body) => seen.push(text(body)),
      ),
    ChunkError,
  );
  assert.deepEqual(seen, ["one", "two"]);
});

// ---------------------------------------------------------------------------------------------
// Property: random bodies, random split points

Deno.test("property: decode(encode(bodies)) split at random points == bodies", () => {
  const random = prng(0x1e55);
  const int = (n: number) => Math.floor(random() * n);
  for (let round = 0; round < 300; round++) {
    const count = 1 + int(12);
    const bodies: Uint8Array[] = [];
    for (let k = 0; k < count; k++) {
      // Mostly small bodies, now and then a large one; never empty (that is the end marker).
      const length = 1 + (int(8) === 0 ? int(5000) : int(64));
      const body = new Uint8Array(length);
      for (let i = 0; i < length; i++) body[i] = int(256);
      bodies.push(body);
    }
    const stream = concat(bodies.map(encodeChunk));
    const cuts = Array.from({ length: int(10) }, () => int(stream.length + 1)).sort((a, b) =>
      a - b
    );
    const pieces: Uint8Array[] = [];
    let from = 0;
    for (const cut of [...cuts, stream.length]) {
      pieces.push(stream.subarray(from, cut));
      from = cut;
    }
    const result = decode(pieces, new ChunkDecoder(8192));
    assert.equal(result.open, true);
    assert.equal(result.bodies.length, bodies.length, `round ${round}`);
    result.bodies.forEach((body, i) => assert.deepEqual(body, bodies[i], `round ${round} #${i}`));
  }
});

Deno.test("property: with the end marker appended, every split ends the stream once", () => {
  const random = prng(42);
  const int = (n: number) => Math.floor(random() * n);
  for (let round = 0; round < 100; round++) {
    const bodies = Array.from({ length: 1 + int(5) }, () => bytes("m".repeat(1 + int(40))));
    const stream = concat([...bodies.map(encodeChunk), LAST_CHUNK]);
    const cut = int(stream.length + 1);
    const chunkDecoder = new ChunkDecoder(MAX);
    const result = decode([stream.subarray(0, cut), stream.subarray(cut)], chunkDecoder);
    assert.equal(result.open, false, `round ${round}, cut ${cut}`);
    assert.equal(chunkDecoder.ended, true);
    assert.deepEqual(result.bodies, bodies);
  }
});
