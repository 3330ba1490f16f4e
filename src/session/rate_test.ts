import assert from "node:assert/strict";
import { Allowances, MessageBudget } from "./rate.ts";

Deno.test("MessageBudget: a burst at once, then the rate", () => {
  const bucket = new MessageBudget({ perSec: 10, burst: 2 }, 0);
  assert.ok(bucket.take() && bucket.take());
  assert.equal(bucket.take(), false, "the burst is spent");
  bucket.fill(99);
  assert.equal(bucket.take(), false, "99 ms earn 0.99 of a message");
  bucket.fill(100);
  assert.ok(bucket.take(), "100 ms earn one");
  bucket.fill(10_000);
  assert.ok(bucket.full && bucket.take() && bucket.take() && !bucket.take(), "never past a burst");
  assert.ok(bucket.forgive() && bucket.forgive() && !bucket.forgive(), "refusals: a burst too");
  bucket.fill(5_000);
  assert.equal(bucket.take(), false, "a clock set back earns nothing");
});

Deno.test("Allowances: one bucket a uid's device, forgotten once full again", () => {
  const allowances = new Allowances({ perSec: 10, burst: 1 });
  assert.ok(allowances.of("u1", "tab", 0).take());
  assert.equal(allowances.of("u1", "tab", 0).take(), false, "the same bucket");
  assert.ok(allowances.of("u1", "phone", 0).take(), "another device's");
  allowances.sweep(50);
  assert.equal(allowances.size, 2, "not full yet");
  allowances.sweep(100);
  assert.equal(allowances.size, 0);
});
