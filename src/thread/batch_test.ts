import assert from "node:assert/strict";
import { perTurn } from "./batch.ts";

const nextTurn = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

Deno.test("perTurn: items queued in one turn are sent once, together, in order", async () => {
  const sent: number[][] = [];
  const queue = perTurn<number>((items) => sent.push(items));
  for (let i = 0; i < 100; i++) queue(i);
  assert.deepEqual(sent, [], "nothing is sent synchronously");
  await nextTurn();
  assert.equal(sent.length, 1);
  assert.deepEqual(sent[0], Array.from({ length: 100 }, (_, i) => i));
});

Deno.test("perTurn: each turn gets its own batch", async () => {
  const sent: string[][] = [];
  const queue = perTurn<string>((items) => sent.push(items));
  queue("a");
  queue("b");
  await nextTurn();
  queue("c");
  await nextTurn();
  await nextTurn();
  assert.deepEqual(sent, [["a", "b"], ["c"]]);
});

Deno.test("perTurn: an item queued from inside send goes in a later batch", async () => {
  const sent: number[][] = [];
  let queue: (item: number) => void = () => {};
  queue = perTurn<number>((items) => {
    sent.push(items);
    if (items[0] === 1) queue(2);
  });
  queue(1);
  await nextTurn();
  assert.deepEqual(sent, [[1], [2]]);
});

Deno.test("perTurn: batchers are independent", async () => {
  const a: number[][] = [];
  const b: number[][] = [];
  const queueA = perTurn<number>((items) => a.push(items));
  const queueB = perTurn<number>((items) => b.push(items));
  queueA(1);
  queueB(2);
  queueA(3);
  await nextTurn();
  assert.deepEqual(a, [[1, 3]]);
  assert.deepEqual(b, [[2]]);
});

Deno.test("perTurn: the batch is sent before timers and I/O of the same turn", async () => {
  const order: string[] = [];
  const queue = perTurn<string>((items) => order.push(`send ${items.join(",")}`));
  setTimeout(() => order.push("timer"), 0);
  queue("x");
  queue("y");
  await nextTurn();
  await nextTurn();
  assert.deepEqual(order, ["send x,y", "timer"]);
});
