import assert from "node:assert/strict";
import { rejection } from "../testing/support.ts";
import { MemoryStore } from "./memory.ts";
import { StorageUnavailableError, type Store } from "./store.ts";
import { StoreWatch } from "./watched.ts";

/** A memory store whose calls fail while `down` is set, and that counts its userState reads. */
class FlakyStore extends MemoryStore {
  down = false;
  reads = 0;
  override append(...args: Parameters<Store["append"]>): Promise<void> {
    if (this.down) return Promise.reject(new StorageUnavailableError("no host answered"));
    return super.append(...args);
  }
  override userState(uid: string) {
    this.reads++;
    if (this.down) return Promise.reject(new StorageUnavailableError("no host answered"));
    return super.userState(uid);
  }
}

const message = (seq: number) => ({
  uid: "u1",
  seq,
  type: 3 as const,
  from: "op",
  body: '"x"',
  expiresAt: 0,
});

function watched() {
  const inner = new FlakyStore();
  const heard = { failed: [] as string[], committed: [] as number[] };
  const watch = new StoreWatch(inner, {
    failed: (error) => heard.failed.push(error.message),
    committed: (seconds) => heard.committed.push(seconds),
  });
  return { inner, watch, heard };
}

Deno.test("StoreWatch: calls pass through; a failure is remembered until a call succeeds", async () => {
  const { inner, watch, heard } = watched();
  await watch.store.append([message(1)]);
  assert.deepEqual(await watch.store.userState("u1"), { lastSeq: 1, devices: new Map() });
  assert.equal(watch.error, null);
  assert.equal(heard.committed.length, 1, "an append is a commit");
  assert.ok(heard.committed[0] >= 0 && heard.committed[0] < 1);

  inner.down = true;
  const error = await rejection(watch.store.append([message(2)]));
  assert.ok(error instanceof StorageUnavailableError, "the store's own error reaches the caller");
  assert.equal(watch.error, "no host answered");
  assert.deepEqual(heard.failed, ["no host answered"]);
  assert.equal(heard.committed.length, 1, "a failed append is no commit");

  inner.down = false;
  await watch.store.members("c1");
  assert.equal(watch.error, null);
});

Deno.test("StoreWatch: an idle store is probed, a busy or recently used one is not", async () => {
  const { inner, watch } = watched();
  watch.probe(60_000);
  assert.equal(inner.reads, 0, "used within the idle time (created just now)");
  inner.down = true;
  watch.probe(0);
  assert.equal(inner.reads, 1);
  await new Promise((resolve) => setTimeout(resolve));
  assert.equal(watch.error, "no host answered", "the probe's failure is the store's state");
  inner.down = false;
  const pending = watch.store.userState("u1");
  watch.probe(0);
  assert.equal(inner.reads, 2, "no probe while a call is under way");
  await pending;
  watch.probe(0);
  assert.equal(inner.reads, 3);
  await new Promise((resolve) => setTimeout(resolve));
  assert.equal(watch.error, null, "the store is back");
});
