import assert from "node:assert/strict";
import { hash32, type ShardAddress, ShardMap } from "./shard_map.ts";
import { prng } from "../testing/support.ts";

function shards(count: number, node = "node"): ShardAddress[] {
  return Array.from({ length: count }, (_, k) => ({
    id: `${node}/${k}`,
    host: "127.0.0.1",
    port: 9010 + k,
  }));
}

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.@-";

function randomUids(count: number, seed: number): string[] {
  const random = prng(seed);
  const uids = new Set<string>();
  while (uids.size < count) {
    const length = 1 + Math.floor(random() * 24);
    let uid = "";
    for (let i = 0; i < length; i++) uid += ALPHABET[Math.floor(random() * ALPHABET.length)];
    uids.add(uid);
  }
  return [...uids];
}

Deno.test("hash32: deterministic unsigned 32-bit values", () => {
  assert.equal(hash32("user001"), hash32("user001"));
  assert.notEqual(hash32("user001"), hash32("user002"));
  for (const text of ["", "a", "user001", "\u00e9\u20ac", "x".repeat(1000)]) {
    const h = hash32(text);
    assert.ok(Number.isInteger(h) && h >= 0 && h <= 0xffffffff, `${text}: ${h}`);
  }
});

Deno.test("ShardMap: deterministic, also across instances built from equal lists", () => {
  const a = new ShardMap(shards(6));
  const b = new ShardMap(shards(6).map((s) => ({ ...s })));
  for (const uid of randomUids(2000, 1)) {
    const index = a.indexOf(uid);
    assert.equal(a.indexOf(uid), index);
    assert.equal(b.indexOf(uid), index);
    assert.equal(a.shardOf(uid), a.shards[index]);
  }
});

Deno.test("ShardMap: every uid maps to a valid index", () => {
  for (const count of [1, 2, 6, 60]) {
    const map = new ShardMap(shards(count));
    const seen = new Set<number>();
    for (const uid of randomUids(5000, count)) {
      const index = map.indexOf(uid);
      assert.ok(Number.isInteger(index) && index >= 0 && index < count, `${uid}: ${index}`);
      seen.add(index);
    }
    // With 5000 uids every shard gets some.
    assert.equal(seen.size, count);
  }
});

Deno.test("ShardMap: the hash uses the id, not the address or the list order", () => {
  const base = shards(6);
  const moved = base.map((s, k) => ({ ...s, host: "10.9.9.9", port: 20000 + k }));
  const reversed = [...base].reverse();
  const a = new ShardMap(base);
  const b = new ShardMap(moved);
  const c = new ShardMap(reversed);
  for (const uid of randomUids(3000, 7)) {
    assert.equal(b.indexOf(uid), a.indexOf(uid));
    assert.equal(c.shardOf(uid).id, a.shardOf(uid).id);
  }
});

Deno.test("ShardMap: adding a 7th shard to 6 moves only uids to the new shard, about 1/7", () => {
  const six = new ShardMap(shards(6));
  const seven = new ShardMap(shards(7));
  const uids = randomUids(70_000, 0x7);
  let moved = 0;
  for (const uid of uids) {
    const before = six.shardOf(uid).id;
    const after = seven.shardOf(uid).id;
    if (before === after) continue;
    moved++;
    assert.equal(after, "node/6", `${uid} moved between old shards: ${before} -> ${after}`);
  }
  const fraction = moved / uids.length;
  console.log(`6 -> 7 shards: ${moved} of ${uids.length} uids moved (${fraction.toFixed(4)})`);
  assert.ok(Math.abs(fraction - 1 / 7) < 0.01, `moved fraction ${fraction}, expected ~${1 / 7}`);
});

Deno.test("ShardMap: removing a shard moves only that shard's uids", () => {
  const all = shards(6);
  const five = all.filter((s) => s.id !== "node/2");
  const before = new ShardMap(all);
  const after = new ShardMap(five);
  for (const uid of randomUids(20_000, 0x5)) {
    const owner = before.shardOf(uid).id;
    if (owner !== "node/2") assert.equal(after.shardOf(uid).id, owner, uid);
  }
});

Deno.test("ShardMap: balance of 100,000 random uids over 6 shards, max/min < 1.1", () => {
  const map = new ShardMap(shards(6));
  const counts = new Array(6).fill(0);
  for (const uid of randomUids(100_000, 0xba1a)) counts[map.indexOf(uid)]++;
  const ratio = Math.max(...counts) / Math.min(...counts);
  console.log(`100,000 uids over 6 shards: [${counts.join(", ")}], max/min = ${ratio.toFixed(4)}`);
  assert.equal(counts.reduce((a, b) => a + b, 0), 100_000);
  assert.ok(ratio < 1.1, `max/min ratio ${ratio}`);
});

Deno.test("ShardMap: balance of sequential uids (user0 .. user99999) over 6 shards", () => {
  const map = new ShardMap(shards(6));
  const counts = new Array(6).fill(0);
  for (let i = 0; i < 100_000; i++) counts[map.indexOf(`user${i}`)]++;
  const ratio = Math.max(...counts) / Math.min(...counts);
  console.log(
    `user0..user99999 over 6 shards: [${counts.join(", ")}], max/min = ${ratio.toFixed(4)}`,
  );
  assert.ok(ratio < 1.1, `max/min ratio ${ratio}`);
});

Deno.test("ShardMap: balance of 100,000 random uids over 60 shards", () => {
  const map = new ShardMap(shards(60));
  const counts = new Array(60).fill(0);
  for (const uid of randomUids(100_000, 0x60)) counts[map.indexOf(uid)]++;
  const ratio = Math.max(...counts) / Math.min(...counts);
  console.log(
    `100,000 uids over 60 shards: min ${Math.min(...counts)}, max ${Math.max(...counts)}, ` +
      `max/min = ${ratio.toFixed(4)}`,
  );
  // ~1667 a shard: binomial spread alone gives max/min around 1.1 to 1.15.
  assert.ok(ratio < 1.25, `max/min ratio ${ratio}`);
});

Deno.test("ShardMap: unique ids enforced, at least one shard", () => {
  assert.throws(() => new ShardMap([]), /at least one shard/);
  const dup = [...shards(3), { id: "node/1", host: "10.0.0.2", port: 9999 }];
  assert.throws(() => new ShardMap(dup), /unique/);
  // Same address, different ids: fine.
  const sameAddress = shards(2).map((s) => ({ ...s, port: 9000 }));
  assert.equal(new ShardMap(sameAddress).shards.length, 2);
});

Deno.test("ShardMap: a single shard owns everything", () => {
  const map = new ShardMap(shards(1));
  for (const uid of randomUids(100, 3)) assert.equal(map.indexOf(uid), 0);
});
