import assert from "node:assert/strict";
import { StorageUnavailableError } from "./store.ts";
import { freeTurnOf, newWriteTurn, WriteTurn } from "./write_turn.ts";

/** Whether `promise` has settled after the pending microtasks and one timer turn. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  promise.then(() => done = true, () => done = true);
  await new Promise((resolve) => setTimeout(resolve, 10));
  return done;
}

Deno.test("WriteTurn: one holder at a time; the next waiter gets it when it is given back", async () => {
  const buffer = newWriteTurn();
  const [one, two, three] = [1, 2, 3].map((holder) => new WriteTurn(buffer, holder, 5000));
  await one.take();
  const second = two.take();
  const third = three.take();
  assert.equal(await settled(second), false, "held by shard 1");
  one.give();
  await second;
  assert.equal(await settled(third), false, "now held by shard 2");
  two.give();
  await third;
  three.give();
  await one.take(); // free again
  one.give();
});

Deno.test("WriteTurn: a writer that waits past its timeout fails with store busy", async () => {
  const buffer = newWriteTurn();
  await new WriteTurn(buffer, 1, 5000).take();
  await assert.rejects(
    new WriteTurn(buffer, 2, 30).take(),
    (error) => error instanceof StorageUnavailableError && error.message === "store busy",
  );
});

Deno.test("freeTurnOf: a dead holder's turn is freed for a waiter; another's is kept", async () => {
  const buffer = newWriteTurn();
  await new WriteTurn(buffer, 1, 5000).take();
  const waiting = new WriteTurn(buffer, 2, 5000).take();
  freeTurnOf(buffer, 3);
  assert.equal(await settled(waiting), false, "shard 3 did not hold it");
  freeTurnOf(buffer, 1);
  await waiting;
});
