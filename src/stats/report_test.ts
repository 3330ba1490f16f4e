import assert from "node:assert/strict";
import { newShardCounters, newShardHistograms, type ShardCounters } from "./counters.ts";
import { type ShardReport, StatsBook } from "./report.ts";

/**
 * The `/stats` shape of PROTOCOL.md §3, written out: a leaf is the type of its value, an
 * object a nested key set. `request` is an open map (one key per request name seen).
 */
const PROTOCOL_SHAPE = {
  auth_fail_number: "number",
  bad_request_number: "number",
  error_number: "number",
  recv_type: {
    ack: "number",
    cmsg: "number",
    hb: "number",
    msg: "number",
    sub: "number",
    unsub: "number",
  },
  redirect_number: "number",
  request: { Connect: "number", Stats: "number" },
  server_start_datetime: "string",
  server_start_timestamp: "number",
  throughput: {
    avg_recv_bytes_per_second: "number",
    avg_recv_number_per_second: "number",
    avg_send_bytes_per_second: "number",
    avg_send_number_per_second: "number",
    max_recv_bytes_per_second: "number",
    max_recv_number_per_second: "number",
    max_send_bytes_per_second: "number",
    max_send_number_per_second: "number",
    total_recv_bytes: "number",
    total_recv_number: "number",
    total_send_bytes: "number",
    total_send_number: "number",
  },
  user: {
    connect: "number",
    disconnect: "number",
    max_user_growth_per_second: "number",
    max_user_number: "number",
    max_user_reduce_per_second: "number",
    reconnect: "number",
    user_number: "number",
  },
} as const;

/** Keys this implementation adds to PROTOCOL.md's shape (allowed: "more keys may be added"). */
const ADDED_KEYS = [
  "auth_unavailable_number",
  "forbidden_number",
  "limited",
  "transport",
  "user.connection_number",
];

type Shape = { readonly [key: string]: Shape | string };

/** Dotted paths of `expected` that `actual` lacks or has with another type. */
function missingOrMistyped(expected: Shape, actual: unknown, prefix = ""): string[] {
  const problems: string[] = [];
  for (const [key, spec] of Object.entries(expected)) {
    const path = prefix + key;
    if (actual === null || typeof actual !== "object" || !(key in actual)) {
      problems.push(`${path}: missing`);
      continue;
    }
    const value = (actual as Record<string, unknown>)[key];
    if (typeof spec === "string") {
      const type: string = typeof value;
      if (type !== spec) problems.push(`${path}: ${type}, not ${spec}`);
    } else problems.push(...missingOrMistyped(spec, value, path + "."));
  }
  return problems;
}

/** Dotted paths of `actual` that `expected` does not name (open maps excluded). */
function extraKeys(expected: Shape, actual: Record<string, unknown>, prefix = ""): string[] {
  const extra: string[] = [];
  for (const [key, value] of Object.entries(actual)) {
    const path = prefix + key;
    const spec = expected[key];
    if (spec === undefined) extra.push(path);
    else if (typeof spec !== "string" && path !== "request") {
      extra.push(...extraKeys(spec, value as Record<string, unknown>, path + "."));
    }
  }
  return extra;
}

function counters(fill: Partial<ShardCounters> = {}): ShardCounters {
  return { ...newShardCounters(), ...fill };
}

/** A shard's report of `counters`, with empty histograms and its store up. */
function shardReport(counters: ShardCounters): ShardReport {
  return { counters, histograms: newShardHistograms(), storeError: null };
}

type Report = {
  [key: string]: unknown;
  recv_type: Record<string, number>;
  request: Record<string, number>;
  throughput: Record<string, number>;
  user: Record<string, number>;
};

const report = (book: StatsBook) => book.report() as Report;

/** Microseconds between 1601-01-01 and 1970-01-01, computed independently of the module. */
const US_1601_TO_1970 = -Date.UTC(1601, 0, 1) * 1000;

Deno.test("report: has every key of PROTOCOL.md's /stats shape, with the right types", () => {
  const book = new StatsBook();
  book.count("Stats");
  const result = book.report();
  assert.deepEqual(missingOrMistyped(PROTOCOL_SHAPE, result), []);
  // Only known additions, so a renamed key shows up here as well as above.
  assert.deepEqual(extraKeys(PROTOCOL_SHAPE, result), ADDED_KEYS);
  // And it is valid JSON with the same keys.
  assert.deepEqual(JSON.parse(JSON.stringify(result)), result);
});

Deno.test("report: the shape checker itself catches a missing or renamed key", () => {
  const book = new StatsBook();
  book.count("Stats");
  const result = structuredClone(book.report()) as Report;
  delete (result.throughput as Record<string, number>).total_send_bytes;
  result.user.users = result.user.user_number;
  delete (result.user as Record<string, number>).user_number;
  assert.deepEqual(missingOrMistyped(PROTOCOL_SHAPE, result), [
    "throughput.total_send_bytes: missing",
    "user.user_number: missing",
  ]);
  assert.deepEqual(extraKeys(PROTOCOL_SHAPE, result), [...ADDED_KEYS, "user.users"]);
});

Deno.test("report: a fresh book is all zeros", () => {
  const r = report(new StatsBook());
  assert.equal(r.auth_fail_number, 0);
  assert.deepEqual(r.recv_type, { ack: 0, cmsg: 0, hb: 0, msg: 0, sub: 0, unsub: 0 });
  assert.deepEqual(r.request, { Connect: 0 });
  for (const [key, value] of Object.entries(r.throughput)) assert.equal(value, 0, key);
  for (const [key, value] of Object.entries(r.user)) assert.equal(value, 0, key);
});

Deno.test("report: counters are summed over shards and the front door", () => {
  const book = new StatsBook();
  const a = counters({
    total_recv_bytes: 100,
    total_recv_number: 10,
    total_send_bytes: 1000,
    total_send_number: 20,
    error_number: 1,
    connect_request_number: 5,
    bad_request_number: 2,
    auth_fail_number: 1,
    redirect_number: 3,
    connect: 4,
    disconnect: 1,
    reconnect: 1,
    user_number: 3,
    connection_number: 4,
  });
  a.recv_hb = 7;
  a.recv_msg = 3;
  const b = counters({
    total_recv_bytes: 50,
    total_recv_number: 5,
    total_send_bytes: 500,
    total_send_number: 6,
    connect_request_number: 2,
    connect: 2,
    user_number: 2,
    connection_number: 2,
  });
  b.recv_hb = 1;
  b.recv_ack = 2;
  book.update(0, shardReport(a));
  book.update(1, shardReport(b));
  book.frontDoor.connect_request_number = 10;
  book.frontDoor.redirect_number = 6;
  book.frontDoor.bad_request_number = 1;
  book.count("Stats");
  book.count("Stats");
  book.count("Pub");

  const r = report(book);
  assert.equal(r.error_number, 1);
  assert.equal(r.bad_request_number, 3);
  assert.equal(r.auth_fail_number, 1);
  assert.equal(r.redirect_number, 9);
  assert.deepEqual(r.recv_type, { ack: 2, cmsg: 0, hb: 8, msg: 3, sub: 0, unsub: 0 });
  assert.deepEqual(r.request, { Connect: 17, Stats: 2, Pub: 1 });
  assert.equal(r.throughput.total_recv_bytes, 150);
  assert.equal(r.throughput.total_recv_number, 15);
  assert.equal(r.throughput.total_send_bytes, 1500);
  assert.equal(r.throughput.total_send_number, 26);
  assert.equal(r.user.connect, 6);
  assert.equal(r.user.disconnect, 1);
  assert.equal(r.user.reconnect, 1);
  assert.equal(r.user.user_number, 5);
  assert.equal(r.user.connection_number, 6);
  assert.equal(r.user.max_user_number, 5);
  // The inputs are not modified by summing.
  assert.equal(a.total_recv_bytes, 100);
  assert.equal(a.recv_hb, 7);
});

Deno.test("report: a later update of a shard replaces its earlier one", () => {
  const book = new StatsBook();
  book.update(0, shardReport(counters({ total_recv_number: 5, user_number: 2 })));
  book.update(0, shardReport(counters({ total_recv_number: 8, user_number: 1 })));
  const r = report(book);
  assert.equal(r.throughput.total_recv_number, 8);
  assert.equal(r.user.user_number, 1);
});

Deno.test("report: retire keeps a shard's totals and drops its gauges", () => {
  const book = new StatsBook();
  const old = counters({
    total_recv_number: 40,
    total_send_bytes: 400,
    connect: 9,
    disconnect: 2,
    user_number: 7,
    connection_number: 8,
  });
  old.recv_msg = 11;
  book.update(0, shardReport(old));
  book.update(
    1,
    shardReport(counters({ total_recv_number: 1, user_number: 1, connection_number: 1 })),
  );
  book.retire(0);
  let r = report(book);
  assert.equal(r.throughput.total_recv_number, 41);
  assert.equal(r.throughput.total_send_bytes, 400);
  assert.equal(r.user.connect, 9);
  assert.equal(r.recv_type.msg, 11);
  assert.equal(r.user.user_number, 1, "the retired shard's users are gone");
  assert.equal(r.user.connection_number, 1);
  // The replacement starts from zero; totals still include the old shard.
  book.update(0, shardReport(counters({ total_recv_number: 3, user_number: 2 })));
  r = report(book);
  assert.equal(r.throughput.total_recv_number, 44);
  assert.equal(r.user.user_number, 3);
  // Retiring twice, or a shard never seen, changes nothing.
  book.retire(0);
  book.retire(0);
  book.retire(5);
  r = report(book);
  assert.equal(r.throughput.total_recv_number, 44);
  assert.equal(r.user.user_number, 1);
});

Deno.test("sample: peaks of per-second rates and of users", () => {
  const book = new StatsBook();
  const shard = counters();
  const set = (fill: Partial<ShardCounters>) => book.update(0, shardReport({ ...shard, ...fill }));

  set({ total_recv_bytes: 0, total_recv_number: 0, user_number: 0 });
  book.sample(); // first sample: a baseline, no rate yet
  let r = report(book);
  assert.equal(r.throughput.max_recv_bytes_per_second, 0);

  set({
    total_recv_bytes: 500,
    total_recv_number: 5,
    total_send_bytes: 900,
    total_send_number: 9,
    user_number: 10,
  });
  book.sample();
  set({
    total_recv_bytes: 700,
    total_recv_number: 6,
    total_send_bytes: 2900,
    total_send_number: 30,
    user_number: 4,
  });
  book.sample();
  set({
    total_recv_bytes: 800,
    total_recv_number: 7,
    total_send_bytes: 3000,
    total_send_number: 31,
    user_number: 6,
  });
  book.sample();

  r = report(book);
  assert.equal(r.throughput.max_recv_bytes_per_second, 500);
  assert.equal(r.throughput.max_recv_number_per_second, 5);
  assert.equal(r.throughput.max_send_bytes_per_second, 2000);
  assert.equal(r.throughput.max_send_number_per_second, 21);
  assert.equal(r.user.max_user_growth_per_second, 10);
  assert.equal(r.user.max_user_reduce_per_second, 6);
  assert.equal(r.user.max_user_number, 10);
  assert.equal(r.user.user_number, 6);
  // Totals are not peaks.
  assert.equal(r.throughput.total_recv_bytes, 800);
});

Deno.test("sample: a retire does not count as a drop in throughput", () => {
  const book = new StatsBook();
  book.update(0, shardReport(counters({ total_recv_bytes: 1000 })));
  book.sample();
  book.retire(0);
  book.update(0, shardReport(counters({ total_recv_bytes: 10 })));
  book.sample();
  // 1000 (retired) + 10: a rise of 10 in that second, not a fall or a spike.
  assert.equal(report(book).throughput.max_recv_bytes_per_second, 10);
});

Deno.test("report: averages are totals over the seconds since start (at least one)", () => {
  const book = new StatsBook();
  book.update(0, shardReport(counters({ total_recv_bytes: 1234, total_send_number: 7 })));
  const r = report(book);
  // Built just now: less than a second has passed, so the divisor is 1.
  assert.equal(r.throughput.avg_recv_bytes_per_second, 1234);
  assert.equal(r.throughput.avg_send_number_per_second, 7);
});

Deno.test("report: server_start_timestamp is microseconds since 1601-01-01 UTC", () => {
  const before = Date.now();
  const book = new StatsBook();
  const after = Date.now();
  const { server_start_timestamp: timestamp } = report(book);
  assert.equal(typeof timestamp, "number");
  const us = timestamp as number;
  assert.ok(Number.isInteger(us));
  assert.ok(us >= before * 1000 + US_1601_TO_1970, `${us} is before the book was made`);
  assert.ok(us <= after * 1000 + US_1601_TO_1970, `${us} is after the book was made`);
  // Exact, even past 2^53: BigInt arithmetic gives the same value.
  const startMs = (us - US_1601_TO_1970) / 1000;
  assert.equal(BigInt(us), BigInt(startMs) * 1000n + 11_644_473_600_000_000n);
  // It is stable: the start time, not the report time.
  assert.equal(report(book).server_start_timestamp, us);
});

Deno.test("the 1601 epoch offset, checked against PROTOCOL.md's example", () => {
  // PROTOCOL.md: "server_start_datetime":"2015/04/16 17:21:57" (the original server ran at
  // UTC+8), "server_start_timestamp":13073649717331811.
  const exampleUs = 13073649717331811n;
  const ms = Number((exampleUs - BigInt(US_1601_TO_1970)) / 1000n);
  assert.equal(new Date(ms).toISOString(), "2015-04-16T09:21:57.331Z");
});

Deno.test("report: server_start_datetime is the start in local time, yyyy/mm/dd hh:mm:ss", () => {
  const before = new Date();
  const book = new StatsBook();
  const text = report(book).server_start_datetime as string;
  const match = /^(\d{4})\/(\d\d)\/(\d\d) (\d\d):(\d\d):(\d\d)$/.exec(text);
  assert.ok(match, text);
  const [, y, mo, d, h, mi, s] = match.map(Number);
  const parsed = new Date(y, mo - 1, d, h, mi, s); // local time
  const diff = parsed.getTime() - Math.floor(before.getTime() / 1000) * 1000;
  assert.ok(diff >= 0 && diff <= 2000, `${text} vs ${before.toString()}`);
});
