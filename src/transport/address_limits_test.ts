import assert from "node:assert/strict";
import { addressKey, AddressLimits, MAX_BUCKETS } from "./address_limits.ts";

Deno.test("addressKey: IPv4 as it is (also v4-mapped), IPv6 as its /64", () => {
  assert.equal(addressKey("192.0.2.7"), "192.0.2.7");
  assert.equal(addressKey("::ffff:192.0.2.7"), "192.0.2.7");
  assert.equal(addressKey("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
  assert.equal(addressKey("2001:db8:1:2::9"), "2001:db8:1:2::/64");
  assert.equal(addressKey("2001:0db8:0001:0002:ffff::1"), "2001:db8:1:2::/64");
  assert.equal(addressKey("2001:db8::1"), "2001:db8:0:0::/64");
  assert.equal(addressKey("::1"), "0:0:0:0::/64");
  assert.equal(addressKey("fe80::1%eth0"), "fe80:0:0:0::/64");
  assert.equal(addressKey(""), "");
});

Deno.test("AddressLimits: handshakes under way are counted per address, up to the limit", () => {
  const limits = new AddressLimits({ handshakes: 2, headsPerSec: 0 });
  assert.ok(limits.startHandshake("a"));
  assert.ok(limits.startHandshake("a"));
  assert.ok(!limits.startHandshake("a"), "a third from a");
  assert.ok(limits.startHandshake("b"), "b has its own count");
  limits.endHandshake("a");
  assert.ok(limits.startHandshake("a"));
  assert.ok(!limits.startHandshake("a"));
});

Deno.test("AddressLimits: request heads a second, a second's worth at once", () => {
  const limits = new AddressLimits({ handshakes: 10, headsPerSec: 4 });
  const t0 = 1_000_000;
  for (let i = 0; i < 4; i++) assert.ok(limits.takeHead("a", t0), `head ${i}`);
  assert.ok(!limits.takeHead("a", t0));
  assert.ok(limits.takeHead("b", t0), "b has its own bucket");
  assert.ok(!limits.takeHead("a", t0 + 200), "0.8 of a head earned");
  assert.ok(limits.takeHead("a", t0 + 250));
  assert.ok(!limits.takeHead("a", t0 + 250));
  // Long idle: a full bucket again, not more.
  for (let i = 0; i < 4; i++) assert.ok(limits.takeHead("a", t0 + 60_000));
  assert.ok(!limits.takeHead("a", t0 + 60_000));
});

Deno.test("AddressLimits: without a head rate, heads are not limited", () => {
  const limits = new AddressLimits({ handshakes: 10, headsPerSec: 0 });
  for (let i = 0; i < 10_000; i++) assert.ok(limits.takeHead("a", 0));
});

Deno.test("AddressLimits: past MAX_BUCKETS addresses, full buckets are dropped first", () => {
  const limits = new AddressLimits({ handshakes: 10, headsPerSec: 1 });
  const t0 = 1_000_000;
  assert.ok(limits.takeHead("busy", t0));
  for (let i = 1; i < MAX_BUCKETS; i++) limits.takeHead(`idle${i}`, t0 - 10_000);
  // Ten seconds on, every idle bucket is full again and is dropped for the new address;
  // the busy one, emptied just now, is kept.
  assert.ok(limits.takeHead("new", t0));
  assert.ok(!limits.takeHead("busy", t0), "the busy address is still limited");
});
