import assert from "node:assert/strict";
import { WorkQueue } from "./work_queue.ts";

Deno.test("WorkQueue: at most `limit` run at once, in the order pushed", async () => {
  let running = 0;
  let most = 0;
  const started: number[] = [];
  const queue = new WorkQueue<number>(3, async (item) => {
    started.push(item);
    most = Math.max(most, ++running);
    await new Promise((resolve) => setTimeout(resolve, item % 2));
    running--;
  });
  for (let i = 0; i < 20; i++) queue.push(i);
  assert.equal(queue.waiting, 17);
  while (started.length < 20 || running > 0) await new Promise((r) => setTimeout(r, 1));
  assert.equal(most, 3);
  assert.deepEqual(started, Array.from({ length: 20 }, (_, i) => i));
  assert.equal(queue.waiting, 0);
});

Deno.test("WorkQueue: an item that fails still frees its place", async () => {
  const done: number[] = [];
  const queue = new WorkQueue<number>(
    1,
    (item) =>
      (item === 0 ? Promise.reject(new Error("no")) : Promise.resolve()).catch(() => {}).then(
        () => void done.push(item),
      ),
  );
  queue.push(0);
  queue.push(1);
  while (done.length < 2) await new Promise((r) => setTimeout(r, 1));
  assert.deepEqual(done, [0, 1]);
});
