import assert from "node:assert/strict";
import { setImmediate } from "node:timers";
import { FencedError, Journal, StorageBusyError } from "./journal.ts";
import { MemoryStore } from "./memory.ts";
import { type DeviceUpdate, StorageUnavailableError } from "./store.ts";
import type { StoredMessage } from "../core/messages.ts";
import { rejection } from "../testing/support.ts";

const NOW = 1_700_000_000_000;

function message(uid: string, seq: number): StoredMessage {
  return { uid, seq, type: 3, from: "op", body: `"m${seq}"`, expiresAt: 0 };
}

const tick = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

/** A deferred, for hanging a store call until the test releases it. */
function deferred(): { promise: Promise<void>; resolve(): void; reject(error: Error): void } {
  let resolve!: () => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<void>((yes, no) => {
    resolve = yes;
    reject = no;
  });
  return { promise, resolve, reject };
}

/**
 * A MemoryStore that records `append` and `ack` calls, and can be made to fail or to hang
 * them.
 */
class FakeStore extends MemoryStore {
  appends: StoredMessage[][] = [];
  /** Every ack the store was given, and in how many calls. */
  acks: [string, number][] = [];
  ackCalls = 0;
  /** When set, `append` rejects with it (after recording the call). */
  appendError: Error | null = null;
  /** How many of the next `append` calls fail (with a plain Error), whatever `appendError` is. */
  failingAppends = 0;
  /** When set, `ack` rejects with it. */
  ackError: Error | null = null;
  /** When set, `append` waits for it before storing. */
  appendGate: Promise<void> | null = null;

  /** The bus mark each `append` call carried. */
  busMarks: (string | undefined)[] = [];

  override async append(messages: readonly StoredMessage[], busMark?: string): Promise<void> {
    this.appends.push([...messages]);
    this.busMarks.push(busMark);
    const fail = this.failingAppends > 0;
    if (fail) this.failingAppends--;
    if (this.appendGate) await this.appendGate;
    if (fail) throw new Error("planned failure");
    if (this.appendError) throw this.appendError;
    return super.append(messages, busMark);
  }

  override updateDevices(updates: readonly DeviceUpdate[]): Promise<void> {
    for (const { uid, device, lastAck } of updates) {
      if (lastAck > 0) this.acks.push([device ? `${uid}/${device}` : uid, lastAck]);
    }
    this.ackCalls++;
    if (this.ackError) return Promise.reject(this.ackError);
    return super.updateDevices(updates);
  }

  /** The default device's cursor. */
  async lastAck(uid: string): Promise<number> {
    return (await this.userState(uid)).devices.get("")?.lastAck ?? 0;
  }

  async stored(uid: string): Promise<number[]> {
    return (await this.readAfter(uid, 0, 1000, NOW)).map((m) => m.seq);
  }
}

function journal(store: FakeStore, limit = 1000): { journal: Journal; ackErrors: Error[] } {
  const ackErrors: Error[] = [];
  return { journal: new Journal(store, limit, (error) => ackErrors.push(error)), ackErrors };
}

Deno.test("Journal: appends made in one turn go to the store in one call", async () => {
  const store = new FakeStore();
  const { journal: j } = journal(store);
  const done = [
    j.append([message("a", 1)]),
    j.append([message("b", 1), message("b", 2)]),
    j.append([message("a", 2)]),
  ];
  assert.equal(j.queued, 4);
  assert.equal(store.appends.length, 0, "nothing is written synchronously");
  await Promise.all(done);
  assert.equal(store.appends.length, 1);
  assert.deepEqual(
    store.appends[0].map((m) => `${m.uid}${m.seq}`),
    ["a1", "b1", "b2", "a2"],
  );
  assert.deepEqual(await store.stored("a"), [1, 2]);
  assert.deepEqual(await store.stored("b"), [1, 2]);
  assert.equal(j.queued, 0);
});

Deno.test("Journal: a commit gives the store the latest bus mark of its appends, with them", async () => {
  const store = new FakeStore();
  const { journal: j } = journal(store);
  // Compared as stream ids, not strings: "10-0" is after "9-5".
  await Promise.all([
    j.append([message("a", 1)], "9-5"),
    j.append([message("b", 1)]),
    j.append([message("a", 2)], "10-0"),
  ]);
  await j.append([message("a", 3)]);
  assert.deepEqual(store.busMarks, ["10-0", undefined]);
  assert.equal(await store.busMark(), "10-0");
});

Deno.test("Journal: a failed commit's bus mark goes with its messages, not to the next", async () => {
  const store = new FakeStore();
  const { journal: j } = journal(store);
  store.failingAppends = 1;
  await assert.rejects(j.append([message("a", 1)], "5-0"));
  await j.append([message("a", 2)]);
  assert.deepEqual(store.busMarks, ["5-0", undefined]);
  assert.equal(await store.busMark(), null);
});

Deno.test("Journal: appends and acks from several callbacks of one pass share a commit", async () => {
  const store = new FakeStore();
  const { journal: j } = journal(store);
  const done: Promise<void>[] = [];
  // Two I/O-like callbacks of the same pass, with the microtask checkpoint between them.
  await new Promise<void>((resolve) => {
    setImmediate(() => {
      done.push(j.append([message("a", 1)]));
      j.ack("z", "", 3);
    });
    setImmediate(() => {
      done.push(j.append([message("b", 1)]));
      j.ack("y", "", 2);
      resolve();
    });
  });
  await Promise.all(done);
  await j.flush();
  assert.equal(store.appends.length, 1);
  assert.deepEqual(store.appends[0].map((m) => m.uid), ["a", "b"]);
  assert.equal(store.ackCalls, 1);
});

Deno.test("Journal: an empty append resolves without touching the store", async () => {
  const store = new FakeStore();
  const { journal: j } = journal(store);
  await j.append([]);
  await j.flush();
  assert.equal(store.appends.length, 0);
});

Deno.test("Journal: a promise resolves only once its batch is durable", async () => {
  const store = new FakeStore();
  const gate = deferred();
  store.appendGate = gate.promise;
  const { journal: j } = journal(store);
  let durable = false;
  const done = j.append([message("a", 1)]).then(() => durable = true);
  await tick();
  await tick();
  assert.equal(store.appends.length, 1);
  assert.equal(durable, false);
  gate.resolve();
  await done;
  assert.equal(durable, true);
});

Deno.test("Journal: appends made while a commit is in flight form the next batch, in order", async () => {
  const store = new FakeStore();
  const gate = deferred();
  store.appendGate = gate.promise;
  const { journal: j } = journal(store);
  const order: string[] = [];
  const first = j.append([message("a", 1)]).then(() => order.push("first"));
  await tick();
  assert.equal(store.appends.length, 1);
  // The first batch hangs in the store; these queue behind it.
  const second = j.append([message("a", 2)]).then(() => order.push("second"));
  const third = j.append([message("a", 3), message("b", 1)]).then(() => order.push("third"));
  await tick();
  assert.equal(store.appends.length, 1, "one batch at a time");
  assert.equal(j.queued, 3);
  gate.resolve();
  await Promise.all([first, second, third]);
  assert.equal(store.appends.length, 2);
  assert.deepEqual(store.appends[1].map((m) => `${m.uid}${m.seq}`), ["a2", "a3", "b1"]);
  assert.deepEqual(order, ["first", "second", "third"]);
  assert.deepEqual(await store.stored("a"), [1, 2, 3]);
});

Deno.test("Journal: a failing store rejects the batch's waiters with StorageUnavailableError", async () => {
  const store = new FakeStore();
  const cause = new Error("connection refused");
  store.appendError = cause;
  const { journal: j } = journal(store);
  const one = j.append([message("a", 1)]);
  const two = j.append([message("b", 1)]);
  const errors = await Promise.all([rejection(one), rejection(two)]);
  for (const error of errors) {
    assert.ok(error instanceof StorageUnavailableError);
    assert.equal((error as Error).cause, cause);
  }
  assert.equal(store.appends.length, 1);
  // The store recovers: later appends work.
  store.appendError = null;
  await j.append([message("a", 1)]);
  assert.deepEqual(await store.stored("a"), [1]);
});

Deno.test("Journal: a StorageUnavailableError from the store is passed through as is", async () => {
  const store = new FakeStore();
  const error = new StorageUnavailableError("cassandra down");
  store.appendError = error;
  const { journal: j } = journal(store);
  assert.equal(await rejection(j.append([message("a", 1)])), error);
});

Deno.test("Journal: a failed batch does not fail the next one", async () => {
  const store = new FakeStore();
  const gate = deferred();
  store.appendGate = gate.promise;
  store.failingAppends = 1;
  const { journal: j } = journal(store);
  const first = j.append([message("a", 1)]);
  await tick();
  const second = j.append([message("a", 2)]);
  gate.resolve();
  assert.ok((await rejection(first)) instanceof StorageUnavailableError);
  await second;
  assert.equal(store.appends.length, 2);
  assert.deepEqual(await store.stored("a"), [2]);
});

Deno.test("Journal: past the queue limit an append is refused at once with StorageBusyError", async () => {
  const store = new FakeStore();
  const { journal: j } = journal(store, 3);
  const accepted = j.append([message("a", 1), message("a", 2)]);
  const refused = j.append([message("a", 3), message("a", 4)]);
  assert.equal(j.queued, 2, "the refused messages are not queued");
  // Up to the limit exactly is fine.
  const fits = j.append([message("a", 3)]);
  assert.equal(j.queued, 3);
  let settled = false;
  refused.catch(() => settled = true);
  await Promise.resolve();
  assert.equal(settled, true, "refused without waiting for the store");
  const error = await rejection(refused);
  assert.ok(error instanceof StorageBusyError);
  assert.ok(error instanceof StorageUnavailableError, "busy is a kind of unavailable (503)");
  assert.equal((error as Error).message, "storage busy");
  await Promise.all([accepted, fits]);
  assert.deepEqual(await store.stored("a"), [1, 2, 3]);
  assert.equal(store.appends.length, 1);
});

Deno.test("Journal: a single append larger than the limit is refused", async () => {
  const store = new FakeStore();
  const { journal: j } = journal(store, 2);
  const error = await rejection(j.append([message("a", 1), message("a", 2), message("a", 3)]));
  assert.ok(error instanceof StorageBusyError);
  await j.flush();
  assert.equal(store.appends.length, 0);
});

Deno.test("Journal: the limit counts the batch in flight too (a hung store holds no more)", async () => {
  const store = new FakeStore();
  const gate = deferred();
  store.appendGate = gate.promise;
  const { journal: j } = journal(store, 2);
  const first = j.append([message("a", 1), message("a", 2)]);
  await tick();
  // The first two are in flight (not counted by `queued`) and fill the limit.
  assert.equal(j.queued, 0);
  assert.ok((await rejection(j.append([message("a", 3)]))) instanceof StorageBusyError);
  gate.resolve();
  await first;
  await j.append([message("a", 3), message("a", 4)]);
  assert.deepEqual(await store.stored("a"), [1, 2, 3, 4]);
});

Deno.test("Journal: acks are coalesced to the highest per uid", async () => {
  const store = new FakeStore();
  const { journal: j } = journal(store);
  j.ack("a", "", 3);
  j.ack("a", "", 7);
  j.ack("a", "", 5); // lower: ignored
  j.ack("b", "", 1);
  await j.flush();
  assert.deepEqual(store.acks.sort(), [["a", 7], ["b", 1]]);
  assert.equal(store.ackCalls, 1);
  assert.equal(await store.lastAck("a"), 7);
  assert.equal(await store.lastAck("b"), 1);
});

Deno.test("Journal: acks go with the same commit as appends, after them", async () => {
  const store = new FakeStore();
  const { journal: j } = journal(store);
  const calls: string[] = [];
  const append = store.append.bind(store);
  const update = store.updateDevices.bind(store);
  store.append = (messages) => {
    calls.push("append");
    return append(messages);
  };
  store.updateDevices = (updates) => {
    calls.push(`ack ${updates.map((u) => `${u.uid},${u.lastAck}`).join(" ")}`);
    return update(updates);
  };
  j.ack("a", "", 1);
  const done = j.append([message("a", 2)]);
  await done;
  await j.flush();
  assert.deepEqual(calls, ["append", "ack a,1"]);
});

Deno.test("Journal: a failed ack is reported and retried with the next commit", async () => {
  const store = new FakeStore();
  const ackFailure = new Error("ack write failed");
  store.ackError = ackFailure;
  const { journal: j, ackErrors } = journal(store);
  j.ack("a", "", 4);
  await tick();
  assert.deepEqual(ackErrors, [ackFailure]);
  assert.deepEqual(store.acks, [["a", 4]]);
  assert.equal(await store.lastAck("a"), 0);
  // No retry loop against a store that is down.
  await tick();
  await tick();
  assert.equal(store.acks.length, 1);
  // The next commit (here triggered by an append) carries the kept ack.
  store.ackError = null;
  await j.append([message("b", 1)]);
  await tick();
  assert.deepEqual(store.acks, [["a", 4], ["a", 4]]);
  assert.equal(await store.lastAck("a"), 4);
  assert.equal(ackErrors.length, 1);
});

Deno.test("Journal: flush() makes one more attempt at a failed ack, then settles", async () => {
  const store = new FakeStore();
  store.ackError = new Error("down");
  const { journal: j, ackErrors } = journal(store);
  j.ack("a", "", 4);
  await j.flush();
  // The scheduled commit failed, flush() tried once more, and gave up without a loop.
  assert.deepEqual(store.acks, [["a", 4], ["a", 4]]);
  assert.equal(ackErrors.length, 2);
  await tick();
  assert.equal(store.acks.length, 2);
  // A flush once the store is back stores it.
  store.ackError = null;
  await j.flush();
  assert.equal(await store.lastAck("a"), 4);
});

Deno.test("Journal: a kept ack merges with a newer one for the same uid", async () => {
  const store = new FakeStore();
  store.ackError = new Error("down");
  const { journal: j, ackErrors } = journal(store);
  j.ack("a", "", 4);
  await tick();
  assert.equal(ackErrors.length, 1);
  store.ackError = null;
  j.ack("a", "", 9);
  await tick();
  assert.deepEqual(store.acks, [["a", 4], ["a", 9]]);
  assert.equal(await store.lastAck("a"), 9);
  // And an older ack after the failure does not move it back.
  store.ackError = new Error("down");
  j.ack("b", "", 5);
  await tick();
  store.ackError = null;
  j.ack("b", "", 2);
  await tick();
  assert.deepEqual(store.acks.slice(-1), [["b", 5]]);
  assert.equal(await store.lastAck("b"), 5);
});

Deno.test("Journal: flush() waits for the commit in flight and for what is queued", async () => {
  const store = new FakeStore();
  const gate = deferred();
  store.appendGate = gate.promise;
  const { journal: j } = journal(store);
  const first = j.append([message("a", 1)]);
  await tick();
  const second = j.append([message("a", 2)]);
  j.ack("a", "", 1);
  let flushed = false;
  const flushing = j.flush().then(() => flushed = true);
  await tick();
  assert.equal(flushed, false, "flush waits for the hung store");
  store.appendGate = null;
  gate.resolve();
  await flushing;
  // Everything queued before flush() was called is done: both appends, then the ack.
  await Promise.all([first, second]);
  assert.equal((await store.userState("a")).lastSeq, 2);
  assert.equal(await store.lastAck("a"), 1);
  assert.deepEqual(await store.stored("a"), [2]);
  assert.equal(j.queued, 0);
});

Deno.test("Journal: flush() settles, not rejects, when the store fails", async () => {
  const store = new FakeStore();
  store.appendError = new Error("down");
  const { journal: j } = journal(store);
  const appended = j.append([message("a", 1)]);
  appended.catch(() => {});
  await j.flush();
  assert.ok((await rejection(appended)) instanceof StorageUnavailableError);
});

Deno.test("Journal: flush() on an idle journal resolves at once", async () => {
  const store = new FakeStore();
  const { journal: j } = journal(store);
  await j.flush();
  assert.equal(store.appends.length, 0);
  assert.equal(store.acks.length, 0);
});

Deno.test("Journal: past the fence nothing reaches the store; acks wait for it to reopen", async () => {
  const store = new FakeStore();
  let open = false;
  const j = new Journal(store, 1000, () => {}, () => open);
  j.ack("a", "", 1);
  await assert.rejects(j.append([message("a", 1)]), FencedError);
  assert.equal(store.appends.length, 0, "no message written while fenced");
  assert.equal(store.ackCalls, 0, "no cursor written while fenced");
  open = true;
  await j.append([message("a", 2)]);
  assert.deepEqual(await store.stored("a"), [2]);
  assert.equal(await store.lastAck("a"), 1, "the held ack went with the next commit");
});
