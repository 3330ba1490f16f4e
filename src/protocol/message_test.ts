import assert from "node:assert/strict";
import type { Delivery } from "../core/messages.ts";
import {
  encodeDelivery,
  encodeError,
  encodeListed,
  HEARTBEAT,
  MessageError,
  parseClientMessage,
  Type,
} from "./message.ts";

const encoder = new TextEncoder();
const parse = (text: string) => parseClientMessage(encoder.encode(text));

function assertRejected(input: string | Uint8Array, reason: string, fatal: boolean): void {
  const data = typeof input === "string" ? encoder.encode(input) : input;
  assert.throws(
    () => parseClientMessage(data),
    (error: unknown) => {
      assert.ok(error instanceof MessageError, `${String(input)}: not a MessageError`);
      assert.equal(error.reason, reason, String(input));
      assert.equal(error.fatal, fatal, `${String(input)}: fatal`);
      return true;
    },
  );
}

// ---------------------------------------------------------------------------------------------
// Client → server: the examples of PROTOCOL.md §2

Deno.test("parseClientMessage: the client → server examples of PROTOCOL.md", () => {
  assert.deepEqual(parse('{"y":1,"f":"user001","c":"channel001"}'), { y: 1, c: "channel001" });
  assert.deepEqual(parse('{"y":2,"f":"user001","c":"channel001"}'), { y: 2, c: "channel001" });
  assert.deepEqual(parse('{"y":3,"f":"user001","t":"user002","b":"hello"}'), {
    y: 3,
    t: "user002",
    b: '"hello"',
  });
  assert.deepEqual(parse('{"y":4,"f":"user001","c":"channel1","b":"hello"}'), {
    y: 4,
    c: "channel1",
    b: '"hello"',
  });
  assert.deepEqual(parse('{"y":5,"f":"user001","s":1}'), { y: 5, s: 1 });
  assert.deepEqual(parse('{"y":0}'), { y: 0 });
  assert.deepEqual(parse(HEARTBEAT), { y: 0 });
});

Deno.test("parseClientMessage: `f` is ignored, whatever it is", () => {
  assert.deepEqual(parse('{"y":3,"f":"someone_else","t":"u2","b":1}'), { y: 3, t: "u2", b: "1" });
  assert.deepEqual(parse('{"y":3,"f":{"not":"a name"},"t":"u2","b":1}'), {
    y: 3,
    t: "u2",
    b: "1",
  });
  assert.deepEqual(parse('{"y":5,"s":7}'), { y: 5, s: 7 }); // and may be missing
  assert.equal("f" in parse('{"y":1,"f":"x","c":"c1"}'), false);
});

Deno.test("parseClientMessage: unknown keys are dropped from the result", () => {
  assert.deepEqual(parse('{"y":0,"b":"x","extra":1}'), { y: 0 });
  assert.deepEqual(parse('{"y":1,"c":"c1","t":"u9","b":"x"}'), { y: 1, c: "c1" });
});

Deno.test("parseClientMessage: bodies are kept as JSON text, any JSON value", () => {
  assert.deepEqual(parse('{"y":3,"t":"u","b":{"k":[1,2,{"z":null}]}}'), {
    y: 3,
    t: "u",
    b: '{"k":[1,2,{"z":null}]}',
  });
  assert.equal((parse('{"y":3,"t":"u","b":null}') as { b: string }).b, "null");
  assert.equal((parse('{"y":3,"t":"u","b":false}') as { b: string }).b, "false");
  assert.equal((parse('{"y":4,"c":"c","b":[]}') as { b: string }).b, "[]");
  assert.equal((parse('{"y":4,"c":"c","b":""}') as { b: string }).b, '""');
  assert.equal((parse('{"y":3,"t":"u","b":"\\u00e9\\n"}') as { b: string }).b, '"\\u00e9\\n"');
});

Deno.test("parseClientMessage: a body is relayed as the client wrote it, not re-serialised", () => {
  const body = (text: string) => (parse(text) as { b: string }).b;
  // 64-bit ids, a number beyond double range and duplicate names survive verbatim.
  assert.equal(body('{"y":3,"t":"u","b":12345678901234567890}'), "12345678901234567890");
  assert.equal(body('{"y":3,"t":"u","b":9007199254740993}'), "9007199254740993");
  assert.equal(body('{"y":4,"c":"c","b":1e400}'), "1e400");
  assert.equal(body('{"y":3,"t":"u","b":{"a":1,"a":2}}'), '{"a":1,"a":2}');
  assert.equal(body('{"y":3,"t":"u","b":1.50}'), "1.50");
  assert.equal(body('{"y":3,"t":"u","b":"\\u0041\\/"}'), '"\\u0041\\/"');
  // White space outside strings goes (no raw line break reaches a frame); inside it stays.
  assert.equal(body('{"y":3,"t":"u","b" : {\n "k" : [ 1 , "a b" ]\n}\n}'), '{"k":[1,"a b"]}');
  // `b` named with an escape, and the last of two `b` (as JSON.parse reads it).
  assert.equal(body('{"y":3,"t":"u","\\u0062":7}'), "7");
  assert.equal(body('{"y":3,"t":"u","b":1,"b":[2]}'), "[2]");
});

Deno.test("parseClientMessage: the largest safe seq is a valid ack", () => {
  assert.deepEqual(parse(`{"y":5,"s":${Number.MAX_SAFE_INTEGER}}`), {
    y: 5,
    s: Number.MAX_SAFE_INTEGER,
  });
});

// ---------------------------------------------------------------------------------------------
// Errors and their `fatal` flag

Deno.test("parseClientMessage: bad JSON is fatal", () => {
  assertRejected("", "bad json", true);
  assertRejected("{", "bad json", true);
  assertRejected("{'y':0}", "bad json", true);
  assertRejected('{"y":0}x', "bad json", true);
  assertRejected(Uint8Array.of(0x7b, 0xff, 0x7d), "bad json", true); // not UTF-8
});

Deno.test("parseClientMessage: a frame that is not an object is fatal", () => {
  for (const text of ["null", "[]", '[{"y":0}]', "0", '"y"', "true"]) {
    assertRejected(text, "frame is not a json object", true);
  }
});

Deno.test("parseClientMessage: an unknown or missing y is fatal", () => {
  for (const text of ["{}", '{"y":6}', '{"y":-1}', '{"y":"3"}', '{"y":3.5}', '{"y":null}']) {
    assertRejected(text, "unknown type", true);
  }
});

Deno.test("parseClientMessage: invalid t is not fatal", () => {
  assertRejected('{"y":3,"b":"x"}', "invalid t", false);
  assertRejected('{"y":3,"t":"","b":"x"}', "invalid t", false);
  assertRejected('{"y":3,"t":"a b","b":"x"}', "invalid t", false);
  assertRejected('{"y":3,"t":42,"b":"x"}', "invalid t", false);
  assertRejected(`{"y":3,"t":"${"u".repeat(65)}","b":"x"}`, "invalid t", false);
});

Deno.test("parseClientMessage: invalid c is not fatal, for y 1, 2 and 4", () => {
  for (const y of [1, 2, 4]) {
    assertRejected(`{"y":${y},"b":"x"}`, "invalid c", false);
    assertRejected(`{"y":${y},"c":"","b":"x"}`, "invalid c", false);
    assertRejected(`{"y":${y},"c":"ch/1","b":"x"}`, "invalid c", false);
    assertRejected(`{"y":${y},"c":["c1"],"b":"x"}`, "invalid c", false);
  }
});

Deno.test("parseClientMessage: a missing b is not fatal", () => {
  assertRejected('{"y":3,"t":"user002"}', "missing b", false);
  assertRejected('{"y":4,"c":"channel1"}', "missing b", false);
});

Deno.test("parseClientMessage: invalid s is not fatal", () => {
  for (const s of ["0", "-1", "1.5", '"1"', "null", "true", "1e300", "9007199254740992"]) {
    assertRejected(`{"y":5,"s":${s}}`, "invalid s", false);
  }
  assertRejected('{"y":5}', "invalid s", false);
});

// ---------------------------------------------------------------------------------------------
// Server → client

const toOne: Delivery = {
  uid: "user001",
  seq: 123,
  type: 3,
  from: "user002",
  body: '"hello"',
};
const toChannel: Delivery = { ...toOne, type: 4, channel: "channel1" };

Deno.test("encodeDelivery: the y=3 example of PROTOCOL.md, byte for byte", () => {
  assert.equal(encodeDelivery(toOne), '{"y":3,"f":"user002","t":"user001","b":"hello","s":123}');
});

Deno.test("encodeDelivery: the y=4 example of PROTOCOL.md, byte for byte", () => {
  assert.equal(
    encodeDelivery(toChannel),
    '{"y":4,"f":"user002","t":"user001","c":"channel1","b":"hello","s":123}',
  );
});

Deno.test("encodeDelivery: a volatile message (seq 0) has no s", () => {
  assert.equal(
    encodeDelivery({ ...toOne, seq: 0 }),
    '{"y":3,"f":"user002","t":"user001","b":"hello"}',
  );
  assert.equal(
    encodeDelivery({ ...toChannel, seq: 0 }),
    '{"y":4,"f":"user002","t":"user001","c":"channel1","b":"hello"}',
  );
});

Deno.test("encodeDelivery: copies of one message differ in t and s only, the next is its own", () => {
  const body = '{"task":7}';
  const copies = ["a", "b"].map((uid, i) =>
    encodeDelivery({ ...toChannel, uid, seq: 10 + i, from: "board", body })
  );
  assert.deepEqual(copies, [
    '{"y":4,"f":"board","t":"a","c":"channel1","b":{"task":7},"s":10}',
    '{"y":4,"f":"board","t":"b","c":"channel1","b":{"task":7},"s":11}',
  ]);
  // The same body again, each time with one thing that is not shared.
  assert.equal(
    encodeDelivery({ ...toChannel, uid: "a", seq: 12, from: "board", channel: "c2", body }),
    '{"y":4,"f":"board","t":"a","c":"c2","b":{"task":7},"s":12}',
  );
  assert.equal(
    encodeDelivery({ ...toChannel, uid: "a", seq: 13, from: "other", channel: "c2", body }),
    '{"y":4,"f":"other","t":"a","c":"c2","b":{"task":7},"s":13}',
  );
  assert.equal(
    encodeDelivery({ ...toOne, uid: "a", seq: 14, from: "other", body }),
    '{"y":3,"f":"other","t":"a","b":{"task":7},"s":14}',
  );
  assert.equal(
    encodeDelivery({ ...toOne, uid: "a", seq: 15, from: "other", body: '{"task":8}' }),
    '{"y":3,"f":"other","t":"a","b":{"task":8},"s":15}',
  );
});

Deno.test("encodeDelivery: non-string bodies pass through as JSON", () => {
  const body = '{"k":[1,2],"n":null}';
  const text = encodeDelivery({ ...toOne, body, seq: 1 });
  assert.equal(text, `{"y":3,"f":"user002","t":"user001","b":${body},"s":1}`);
  assert.deepEqual(JSON.parse(text).b, { k: [1, 2], n: null });
  assert.equal(JSON.parse(encodeDelivery({ ...toOne, body: "42" })).b, 42);
});

Deno.test("encodeDelivery: senders needing escapes stay valid JSON", () => {
  const text = encodeDelivery({ ...toOne, from: 'op "x"\n' });
  assert.equal(JSON.parse(text).f, 'op "x"\n');
});

Deno.test("encodeDelivery: round trip through parseClientMessage keeps the body", () => {
  const parsed = parse('{"y":3,"t":"user001","b":{"deep":{"a":[true,"\u00e9"]}}}');
  assert.equal(parsed.y, Type.Message);
  const delivered = JSON.parse(
    encodeDelivery({
      uid: "user001",
      seq: 9,
      type: 3,
      from: "me",
      body: (parsed as { b: string }).b,
    }),
  );
  assert.deepEqual(delivered, {
    y: 3,
    f: "me",
    t: "user001",
    b: { deep: { a: [true, "\u00e9"] } },
    s: 9,
  });
});

// ---------------------------------------------------------------------------------------------
// The `/msg` listing

Deno.test("encodeListed: the /msg example of PROTOCOL.md §3, byte for byte", () => {
  // The example, with its `, ...` elision removed.
  const example =
    '{"result":["{\\"b\\":\\"this is a channel message\\",\\"c\\":\\"channel1\\",\\"f\\":\\"webservice\\",\\"s\\":1,\\"t\\":\\"user78\\",\\"y\\":4}\\n"]}';
  const listed = encodeListed({
    uid: "user78",
    seq: 1,
    type: 4,
    from: "webservice",
    channel: "channel1",
    body: '"this is a channel message"',
  });
  assert.equal(listed.endsWith("\n"), true);
  assert.equal(JSON.stringify({ result: [listed] }), example);
});

Deno.test("encodeListed: y=3 has no c; keys sorted; a trailing newline", () => {
  const listed = encodeListed({ ...toOne, body: '{"z":1,"a":2}' });
  assert.equal(listed, '{"b":{"z":1,"a":2},"f":"user002","s":123,"t":"user001","y":3}\n');
  const keys = Object.keys(JSON.parse(listed));
  assert.deepEqual(keys, [...keys].sort());
  assert.deepEqual(Object.keys(JSON.parse(encodeListed(toChannel))), [
    "b",
    "c",
    "f",
    "s",
    "t",
    "y",
  ]);
});

Deno.test("encodeError and HEARTBEAT", () => {
  assert.equal(encodeError("invalid t"), '{"error":"invalid t"}');
  assert.equal(encodeError('a "quoted" reason'), '{"error":"a \\"quoted\\" reason"}');
  assert.equal(HEARTBEAT, '{"y":0}');
});
