import assert from "node:assert/strict";
import { type HeapReading, QUIET_DRIFT_BYTES, quietCollector, SLACK_BYTES } from "./quiet_gc.ts";

const MB = 1 << 20;

/** A heap to drive the collector: `gc` sets it to its live size and counts. */
function fakeHeap(live: number) {
  const heap = { heapTotal: live + MB, heapUsed: live, collections: 0 };
  const gc = () => {
    heap.collections++;
    heap.heapTotal = live + MB;
    heap.heapUsed = live;
  };
  return { heap, gc, read: (): HeapReading => ({ ...heap }) };
}

Deno.test("quietCollector collects a quiet heap that grew past the slack, once", () => {
  const { heap, gc, read } = fakeHeap(13 * MB);
  const tick = quietCollector(gc, read)!;
  heap.heapTotal = 48 * MB; // a burst of handshakes
  heap.heapUsed = 21 * MB;
  assert.equal(tick(), null, "the first tick after the burst sees it still moving");
  heap.heapUsed += QUIET_DRIFT_BYTES / 4;
  assert.equal(tick()?.toBytes, 14 * MB);
  assert.equal(heap.collections, 1);
  assert.equal(tick(), null, "nothing to give back after the collection");
  assert.equal(heap.collections, 1);
});

Deno.test("quietCollector leaves a busy heap alone, however large", () => {
  const { heap, gc, read } = fakeHeap(13 * MB);
  const tick = quietCollector(gc, read)!;
  heap.heapTotal = 60 * MB;
  for (let i = 0; i < 10; i++) {
    heap.heapUsed = (i % 2 === 0 ? 30 : 20) * MB; // V8's own collections under load
    assert.equal(tick(), null);
  }
  assert.equal(heap.collections, 0);
});

Deno.test("quietCollector leaves a quiet heap alone within the slack", () => {
  const { heap, gc, read } = fakeHeap(13 * MB);
  const tick = quietCollector(gc, read)!;
  heap.heapTotal += SLACK_BYTES;
  assert.equal(tick(), null);
  assert.equal(tick(), null);
  assert.equal(heap.collections, 0);
});

Deno.test("quietCollector is null without gc", () => {
  assert.equal(quietCollector(undefined), null);
});

Deno.test("quietCollector gives a real isolate's heap back after a burst", async () => {
  // A child with gc(): a burst of short-lived objects leaves the heap committed, then ticks.
  const script = `
    const { quietCollector } = await import(${
    JSON.stringify(import.meta.resolve("./quiet_gc.ts"))
  });
    const tick = quietCollector();
    let keep = [];
    for (let i = 0; i < 400000; i++) {
      keep.push({ i, text: "x" + i, list: [i] });
      if (keep.length > 50000) keep = [];
    }
    keep = null;
    const before = Deno.memoryUsage().heapTotal;
    const ticks = [tick(), tick(), tick()].map((collection) => collection !== null);
    console.log(JSON.stringify({ before, after: Deno.memoryUsage().heapTotal, ticks }));
  `;
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--v8-flags=--expose-gc", script],
  }).output();
  assert.equal(code, 0, new TextDecoder().decode(stderr));
  const result = JSON.parse(new TextDecoder().decode(stdout));
  assert.deepEqual(result.ticks.filter(Boolean).length, 1, `ticks ${result.ticks}`);
  assert.ok(
    result.after < result.before / 2,
    `heap ${result.before} -> ${result.after} bytes committed`,
  );
});
