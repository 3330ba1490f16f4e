import assert from "node:assert/strict";
import { Packr, Unpackr } from "msgpackr";
import { encodeMsgpackDelivery, parseMsgpackMessage } from "./msgpack.ts";
import { MessageError } from "./message.ts";

/** What a client would write: plain maps, 64-bit integers from BigInt. */
const client = new Packr({ useRecords: false, variableMapSize: true });
/** What a client reads back: maps as objects, 64-bit integers as BigInt. */
const reader = new Unpackr({ useRecords: false, int64AsType: "bigint" } as never);

const pack = (value: unknown) => client.pack(value);

function refusal(bytes: Uint8Array): MessageError {
  try {
    parseMsgpackMessage(bytes);
  } catch (error) {
    if (error instanceof MessageError) return error;
    throw error;
  }
  assert.fail("expected a MessageError");
}

Deno.test("parseMsgpackMessage: every client type, with b as its exact JSON text", () => {
  assert.deepEqual(parseMsgpackMessage(pack({ y: 0 })), { y: 0 });
  assert.deepEqual(parseMsgpackMessage(pack({ y: 1, c: "news" })), { y: 1, c: "news" });
  assert.deepEqual(parseMsgpackMessage(pack({ y: 2, c: "news" })), { y: 2, c: "news" });
  assert.deepEqual(parseMsgpackMessage(pack({ y: 5, s: 42 })), { y: 5, s: 42 });
  assert.deepEqual(
    parseMsgpackMessage(pack({ y: 3, f: "spoofed", t: "bob", b: { id: 18446744073709551615n } })),
    { y: 3, t: "bob", b: '{"id":18446744073709551615}' },
  );
  assert.deepEqual(
    parseMsgpackMessage(pack({ y: 4, c: "news", b: [1, -9223372036854775808n, "é", null, true] })),
    { y: 4, c: "news", b: '[1,-9223372036854775808,"é",null,true]' },
  );
});

Deno.test("parseMsgpackMessage: a field error is answered, a broken frame is fatal", () => {
  const answered = [
    [pack({ y: 3, t: "not a name", b: 1 }), "invalid t"],
    [pack({ y: 3, t: "bob" }), "missing b"],
    [pack({ y: 3, t: "bob", b: new Uint8Array([1, 2]) }), "invalid b: bin"],
    [pack({ y: 3, t: "bob", b: new Map([[1, "one"]]) }), "invalid b: map key of type number"],
    [pack({ y: 3, t: "bob", b: NaN }), "invalid b: non-finite number"],
    [pack({ y: 5, s: 0 }), "invalid s"],
  ] as const;
  for (const [bytes, reason] of answered) {
    const error = refusal(bytes);
    assert.deepEqual([error.reason, error.fatal], [reason, false]);
  }
  const valid = pack({ y: 3, t: "bob", b: "hello" });
  const fatal: Uint8Array[] = [
    pack([1, 2]), // not a map
    pack({ y: 9 }), // unknown type
    valid.subarray(0, valid.length - 2), // truncated
    Uint8Array.from([0xdf, 0x00, 0x0f, 0x42, 0x40, 0xa1, 0x79]), // a map "of 1e6 entries"
    Uint8Array.from([0xc1]), // a byte MessagePack never uses
  ];
  for (const bytes of fatal) assert.equal(refusal(bytes).fatal, true);
  // An ext value has no JSON form.
  const ext = Uint8Array.from([
    0x83,
    0xa1,
    0x79,
    0x03,
    0xa1,
    0x74,
    0xa1,
    0x62,
    0xa1,
    0x62,
    0xd4,
    0x05,
    0x00,
  ]);
  assert.deepEqual(refusal(ext).reason, "invalid b: ext type 5");
});

Deno.test("encodeMsgpackDelivery: the same keys, ids kept as integers digit for digit", () => {
  const bytes = encodeMsgpackDelivery({
    uid: "alice",
    seq: 7,
    type: 4,
    from: "bob",
    channel: "news",
    body: '{"id":12345678901234567890,"ts":1700000000000,"x":1.5,"t":"hi"}',
  });
  assert.deepEqual(reader.unpack(bytes), {
    y: 4,
    f: "bob",
    t: "alice",
    c: "news",
    b: { id: 12345678901234567890n, ts: 1700000000000n, x: 1.5, t: "hi" },
    s: 7,
  });
  // Volatile: no s.
  const volatile = encodeMsgpackDelivery({
    uid: "alice",
    seq: 0,
    type: 3,
    from: "op",
    body: '"x"',
  });
  assert.deepEqual(reader.unpack(volatile), { y: 3, f: "op", t: "alice", b: "x" });
});

Deno.test("encodeMsgpackDelivery: a payload nested past the encoder goes as its JSON text", () => {
  const deep = "[".repeat(5000) + "]".repeat(5000);
  const bytes = encodeMsgpackDelivery({ uid: "alice", seq: 1, type: 3, from: "op", body: deep });
  assert.deepEqual(reader.unpack(bytes), { y: 3, f: "op", t: "alice", b: deep, s: 1 });
});

Deno.test("encodeMsgpackDelivery: an s past 32 bits (an accepted loss's floor) is an integer", () => {
  const seq = 1_796_190_926_038_020;
  const bytes = encodeMsgpackDelivery({ uid: "alice", seq, type: 3, from: "op", body: '"x"' });
  // The reader takes 64-bit integers as BigInt: a float64 would come back a number.
  assert.deepEqual(reader.unpack(bytes), { y: 3, f: "op", t: "alice", b: "x", s: BigInt(seq) });
  assert.deepEqual(parseMsgpackMessage(pack({ y: 5, s: BigInt(seq) })), { y: 5, s: seq });
});
