import assert from "node:assert/strict";
import { conformance } from "./conformance.ts";
import { MemoryStore } from "./memory.ts";

conformance("MemoryStore", { open: () => Promise.resolve(new MemoryStore()) });

Deno.test("MemoryStore releases acknowledged messages at the ack, and compact counts them", async () => {
  const store = new MemoryStore();
  await store.append(
    [1, 2, 3, 4].map((seq) => ({ uid: "a", seq, type: 3, from: "op", body: "1", expiresAt: 0 })),
  );
  await store.updateDevices([{ uid: "a", device: "", lastAck: 3, seenAt: 0 }]);
  // Gone before any compaction: a short-lived message dies young in the heap.
  const kept = await store.readAfter("a", 0, 100, Date.now());
  assert.deepEqual(kept.map((m) => m.seq), [4]);
  assert.equal(await store.compact(Date.now(), 0), 3);
  assert.equal(await store.compact(Date.now(), 0), 0);
});
