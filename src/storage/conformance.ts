/**
 * The behaviour every {@linkcode Store} must show, as one test suite each backend runs from
 * its own test file:
 *
 * ```ts
 * conformance("MemoryStore", { open: () => Promise.resolve(new MemoryStore()) });
 * ```
 *
 * A durable store also passes `reopen`, which adds the cases about surviving a restart.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { DeviceUpdate, Store } from "./store.ts";
import type { HandedUser, StoredMessage } from "../core/messages.ts";

/** How the suite gets stores to test. */
export interface StoreFactory {
  /** Opens a fresh, empty store. */
  open(): Promise<Store>;
  /**
   * Closes `store` and opens the same data again, as a restart would. Only durable stores
   * give it; it adds the restart cases.
   */
  reopen?(store: Store): Promise<Store>;
  /** Runs once after every case, e.g. to remove the store's files. */
  cleanup?(): Promise<void>;
}

/** A store under test; `reopen` replaces it, and the case closes whichever is current. */
interface Subject {
  store: Store;
}

type Case = (subject: Subject) => Promise<void>;

const NOW = 1_700_000_000_000;
/** Devices seen before this hold nothing back in `compact(NOW, LIVE_SINCE)`. */
const LIVE_SINCE = NOW - 86_400_000;

/** Registers one `Deno.test` named after `name` with a step per conformance case. */
export function conformance(name: string, factory: StoreFactory): void {
  Deno.test(`${name} conforms to Store`, async (t) => {
    const step = (caseName: string, body: Case) =>
      t.step(caseName, async () => {
        const subject = { store: await factory.open() };
        try {
          await body(subject);
        } finally {
          await subject.store.close();
        }
      });
    try {
      for (const [caseName, body] of Object.entries(cases)) await step(caseName, body);
      const { reopen } = factory;
      if (reopen) {
        for (const [caseName, body] of Object.entries(restartCases(reopen))) {
          await step(caseName, body);
        }
      }
    } finally {
      await factory.cleanup?.();
    }
  });
}

/** A type-3 message with a body naming it, so that a mix-up between messages shows. */
function message(uid: string, seq: number, fields: Partial<StoredMessage> = {}): StoredMessage {
  return { uid, seq, type: 3, from: "op", body: `"${uid}#${seq}"`, expiresAt: 0, ...fields };
}

function messages(uid: string, from: number, to: number): StoredMessage[] {
  const found = [];
  for (let seq = from; seq <= to; seq++) found.push(message(uid, seq));
  return found;
}

function seqsOf(found: readonly StoredMessage[]): number[] {
  return found.map((m) => m.seq);
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

const sorted = (values: string[]) => values.toSorted();

/** An ack of `seq` by `uid`'s `device` (the default device unless named). */
function ack(uid: string, seq: number, device = ""): DeviceUpdate {
  return { uid, device, lastAck: seq, seenAt: 0 };
}

/** `uid`'s `device` connecting at `at`. */
function seen(uid: string, device: string, at: number): DeviceUpdate {
  return { uid, device, lastAck: 0, seenAt: at };
}

/** A uid's devices as `{device: [lastAck, seenAt]}`, for comparisons. */
async function devicesOf(store: Store, uid: string): Promise<Record<string, [number, number]>> {
  const { devices } = await store.userState(uid);
  return Object.fromEntries([...devices].map(([id, d]) => [id, [d.lastAck, d.seenAt]]));
}

async function lastSeqOf(store: Store, uid: string): Promise<number> {
  return (await store.userState(uid)).lastSeq;
}

/** A hand-off of `uid` with `lastSeq`, the messages `from`..`to` and the given rest. */
function handed(
  uid: string,
  lastSeq: number,
  [from, to]: [number, number],
  fields: Partial<HandedUser> = {},
): HandedUser {
  return { uid, lastSeq, devices: [], messages: messages(uid, from, to), channels: [], ...fields };
}

const cases: Record<string, Case> = {
  "busMark is null until an append carries one, then the last one carried": async ({ store }) => {
    assert.equal(await store.busMark(), null);
    await store.append(messages("alice", 1, 2), "1700000000000-3");
    assert.equal(await store.busMark(), "1700000000000-3");
    await store.append(messages("alice", 3, 3));
    assert.equal(await store.busMark(), "1700000000000-3", "an append without one leaves it");
    await store.append([message("bob", 1, { type: 4, channel: "news" })], "1700000000001-0");
    assert.equal(await store.busMark(), "1700000000001-0");
    assert.deepEqual(seqsOf(await store.readAfter("bob", 0, 100, NOW)), [1]);
    // Another shard's is never this one's (a shared store has it only if that shard wrote it).
    assert.equal(await store.busMark("elsewhere/0"), null);
  },

  "hand-offs neither carry nor change the bus mark": async ({ store }) => {
    await store.append(messages("alice", 1, 2), "1700000000000-7");
    await store.importUsers([handed("carol", 4, [3, 4])]);
    await store.deleteUsers(["alice"]);
    assert.equal(await store.busMark(), "1700000000000-7");
  },

  "readAfter returns appended messages in seq order with every field": async ({ store }) => {
    const written = [
      message("alice", 1),
      message("alice", 2, { type: 4, channel: "news", from: "bob", body: '{"k":[1,"é"]}' }),
      message("alice", 3, { expiresAt: NOW + 60_000 }),
    ];
    await store.append(written);
    assert.deepEqual(await store.readAfter("alice", 0, 100, NOW), written);
  },

  "readAfter returns only messages after the given seq": async ({ store }) => {
    await store.append(messages("alice", 1, 5));
    assert.deepEqual(seqsOf(await store.readAfter("alice", 3, 100, NOW)), [4, 5]);
    assert.deepEqual(await store.readAfter("alice", 5, 100, NOW), []);
  },

  "readAfter returns at most limit messages, lowest seq first": async ({ store }) => {
    await store.append(messages("alice", 1, 10));
    assert.deepEqual(seqsOf(await store.readAfter("alice", 2, 3, NOW)), [3, 4, 5]);
  },

  "readAfter of an unknown uid is empty": async ({ store }) => {
    await store.append(messages("alice", 1, 2));
    assert.deepEqual(await store.readAfter("bob", 0, 100, NOW), []);
  },

  "userState of an unknown uid is zeros": async ({ store }) => {
    await store.append(messages("alice", 1, 2));
    assert.deepEqual(await store.userState("bob"), { lastSeq: 0, devices: new Map() });
  },

  "lastSeq follows the highest seq appended per uid": async ({ store }) => {
    await store.append([...messages("alice", 1, 3), message("bob", 1)]);
    assert.equal(await lastSeqOf(store, "alice"), 3);
    await store.append(messages("alice", 4, 7));
    assert.equal(await lastSeqOf(store, "alice"), 7);
    assert.equal(await lastSeqOf(store, "bob"), 1);
  },

  "an ack moves its device's cursor forward and ignores a smaller seq": async ({ store }) => {
    await store.append(messages("alice", 1, 9));
    await store.updateDevices([ack("alice", 5)]);
    assert.deepEqual(await devicesOf(store, "alice"), { "": [5, 0] });
    await store.updateDevices([ack("alice", 3)]);
    assert.deepEqual(await devicesOf(store, "alice"), { "": [5, 0] });
    await store.updateDevices([ack("alice", 8)]);
    assert.deepEqual(await devicesOf(store, "alice"), { "": [8, 0] });
    assert.equal(await lastSeqOf(store, "alice"), 9);
  },

  "each device has its own cursor; when it was seen only moves forward": async ({ store }) => {
    await store.append(messages("alice", 1, 9));
    await store.updateDevices([seen("alice", "phone", NOW - 10), seen("alice", "tablet", NOW)]);
    await store.updateDevices([ack("alice", 6, "phone"), seen("alice", "phone", NOW - 20)]);
    assert.deepEqual(await devicesOf(store, "alice"), {
      phone: [6, NOW - 10],
      tablet: [0, NOW],
    });
    await store.updateDevices([ack("alice", 2, "tablet"), seen("alice", "phone", NOW + 5)]);
    assert.deepEqual(await devicesOf(store, "alice"), {
      phone: [6, NOW + 5],
      tablet: [2, NOW],
    });
  },

  "one call records several uids and devices, each only forward": async ({ store }) => {
    await store.append([...messages("alice", 1, 9), ...messages("bob", 1, 4)]);
    await store.updateDevices([ack("alice", 6)]);
    await store.updateDevices([
      ack("alice", 2),
      ack("bob", 3),
      ack("bob", 1, "watch"),
      ack("carol", 1),
    ]);
    assert.deepEqual(await devicesOf(store, "alice"), { "": [6, 0] });
    assert.deepEqual(await devicesOf(store, "bob"), { "": [3, 0], watch: [1, 0] });
    assert.deepEqual(await devicesOf(store, "carol"), { "": [1, 0] });
    assert.deepEqual(seqsOf(await store.readAfter("bob", 3, 100, NOW)), [4]);
  },

  "expired messages are not read": async ({ store }) => {
    await store.append([
      message("alice", 1, { expiresAt: NOW - 1 }),
      message("alice", 2, { expiresAt: NOW }),
      message("alice", 3, { expiresAt: NOW + 1 }),
      message("alice", 4, { expiresAt: 0 }),
    ]);
    assert.deepEqual(seqsOf(await store.readAfter("alice", 0, 100, NOW)), [3, 4]);
    // Expiry is relative to the reader's clock: earlier, all were live.
    assert.deepEqual(seqsOf(await store.readAfter("alice", 0, 100, NOW - 10)), [1, 2, 3, 4]);
  },

  "compact removes expired messages and counts them": async ({ store }) => {
    await store.append([
      message("alice", 1, { expiresAt: NOW - 1 }),
      message("alice", 2, { expiresAt: NOW + 1 }),
      message("bob", 1, { expiresAt: NOW }),
      message("bob", 2),
    ]);
    assert.equal(await store.compact(NOW, LIVE_SINCE), 2);
    // Read with an earlier clock: only deletion, not the expiry filter, hides them now.
    assert.deepEqual(seqsOf(await store.readAfter("alice", 0, 100, NOW - 10)), [2]);
    assert.deepEqual(seqsOf(await store.readAfter("bob", 0, 100, NOW - 10)), [2]);
    assert.equal(await store.compact(NOW, LIVE_SINCE), 0);
  },

  "compact removes acknowledged messages and keeps the rest": async ({ store }) => {
    await store.append([...messages("alice", 1, 10), ...messages("bob", 1, 3)]);
    await store.updateDevices([ack("alice", 6)]);
    assert.equal(await store.compact(NOW, LIVE_SINCE), 6);
    assert.deepEqual(seqsOf(await store.readAfter("alice", 0, 100, NOW)), range(7, 10));
    assert.deepEqual(seqsOf(await store.readAfter("bob", 0, 100, NOW)), [1, 2, 3]);
    assert.equal(await store.compact(NOW, LIVE_SINCE), 0);
    await store.updateDevices([ack("alice", 8)]);
    assert.equal(await store.compact(NOW, LIVE_SINCE), 2);
    assert.deepEqual(seqsOf(await store.readAfter("alice", 0, 100, NOW)), [9, 10]);
  },

  "compact keeps what a live device has not acked yet": async ({ store }) => {
    await store.append(messages("alice", 1, 10));
    await store.updateDevices([seen("alice", "phone", NOW), seen("alice", "tablet", NOW)]);
    await store.updateDevices([ack("alice", 6, "phone"), ack("alice", 2, "tablet")]);
    assert.equal(await store.compact(NOW, LIVE_SINCE), 2);
    // The tablet still gets everything after its own cursor.
    assert.deepEqual(seqsOf(await store.readAfter("alice", 2, 100, NOW)), range(3, 10));
    await store.updateDevices([ack("alice", 9, "tablet")]);
    assert.equal(await store.compact(NOW, LIVE_SINCE), 4);
    assert.deepEqual(seqsOf(await store.readAfter("alice", 0, 100, NOW)), range(7, 10));
  },

  "a device not seen since liveSince holds nothing back": async ({ store }) => {
    await store.append(messages("alice", 1, 10));
    await store.updateDevices([
      seen("alice", "phone", NOW),
      seen("alice", "old-tablet", LIVE_SINCE - 1),
      ack("alice", 6, "phone"),
    ]);
    assert.equal(await store.compact(NOW, LIVE_SINCE), 6);
    assert.deepEqual(seqsOf(await store.readAfter("alice", 0, 100, NOW)), range(7, 10));
  },

  "a device that goes quiet later no longer holds back the next compact": async ({ store }) => {
    await store.append(messages("alice", 1, 10));
    await store.updateDevices([
      seen("alice", "phone", NOW),
      seen("alice", "tablet", LIVE_SINCE + 1),
      ack("alice", 8, "phone"),
      ack("alice", 3, "tablet"),
    ]);
    assert.equal(await store.compact(NOW, LIVE_SINCE), 3);
    // A day later, with no write in between: the tablet has gone quiet, the phone has not.
    await store.updateDevices([seen("alice", "phone", NOW + 86_400_000)]);
    assert.equal(await store.compact(NOW + 86_400_000, LIVE_SINCE + 2), 5);
    assert.deepEqual(seqsOf(await store.readAfter("alice", 0, 100, NOW)), [9, 10]);
  },

  "with no live device, only what some device acked goes": async ({ store }) => {
    await store.append(messages("alice", 1, 10));
    await store.updateDevices([
      seen("alice", "phone", LIVE_SINCE - 10),
      seen("alice", "tablet", LIVE_SINCE - 20),
      ack("alice", 6, "phone"),
      ack("alice", 2, "tablet"),
    ]);
    assert.equal(await store.compact(NOW, LIVE_SINCE), 6);
    assert.deepEqual(seqsOf(await store.readAfter("alice", 0, 100, NOW)), range(7, 10));
  },

  "compact counts a message both acknowledged and expired once": async ({ store }) => {
    await store.append([message("alice", 1, { expiresAt: NOW - 1 }), message("alice", 2)]);
    await store.updateDevices([ack("alice", 1)]);
    assert.equal(await store.compact(NOW, LIVE_SINCE), 1);
    assert.deepEqual(seqsOf(await store.readAfter("alice", 0, 100, NOW)), [2]);
  },

  "compact clears a backlog larger than one pass": async ({ store }) => {
    const batch = [...messages("alice", 1, 1_500), ...messages("bob", 1, 10)];
    for (let i = 0; i < 1_200; i++) batch.push(message(`user${i}`, 1, { expiresAt: NOW - 1 }));
    await store.append(batch);
    await store.updateDevices([ack("alice", 1_400)]);
    await store.updateDevices([ack("bob", 10)]);
    assert.equal(await store.compact(NOW, LIVE_SINCE), 1_400 + 10 + 1_200);
    assert.deepEqual(seqsOf(await store.readAfter("alice", 0, 1_000, NOW)), range(1_401, 1_500));
    assert.deepEqual(await store.readAfter("bob", 0, 100, NOW), []);
    assert.deepEqual(await store.readAfter("user7", 0, 100, 0), []);
  },

  "lastSeq and the cursors survive compaction": async ({ store }) => {
    await store.append(messages("alice", 1, 3));
    await store.updateDevices([ack("alice", 3)]);
    assert.equal(await store.compact(NOW, LIVE_SINCE), 3);
    assert.equal(await lastSeqOf(store, "alice"), 3);
    assert.deepEqual(await devicesOf(store, "alice"), { "": [3, 0] });
    await store.append(messages("alice", 4, 4));
    assert.deepEqual(seqsOf(await store.readAfter("alice", 3, 100, NOW)), [4]);
  },

  "membership is kept both ways": async ({ store }) => {
    await store.subscribe("news", "alice");
    await store.subscribe("news", "bob");
    await store.subscribe("sport", "alice");
    assert.deepEqual(sorted(await store.members("news")), ["alice", "bob"]);
    assert.deepEqual(sorted(await store.channels("alice")), ["news", "sport"]);
    assert.deepEqual(await store.channels("bob"), ["news"]);
    assert.deepEqual(await store.members("weather"), []);
    assert.deepEqual(await store.channels("carol"), []);
  },

  "unsubscribe removes the pair both ways and nothing else": async ({ store }) => {
    await store.subscribe("news", "alice");
    await store.subscribe("news", "bob");
    await store.subscribe("sport", "alice");
    await store.unsubscribe("news", "alice");
    assert.deepEqual(await store.members("news"), ["bob"]);
    assert.deepEqual(await store.channels("alice"), ["sport"]);
    await store.unsubscribe("news", "carol");
    await store.unsubscribe("weather", "bob");
    assert.deepEqual(await store.members("news"), ["bob"]);
    assert.deepEqual(await store.channels("bob"), ["news"]);
  },

  "subscribe is idempotent": async ({ store }) => {
    await store.subscribe("news", "alice");
    await store.subscribe("news", "alice");
    assert.deepEqual(await store.members("news"), ["alice"]);
    assert.deepEqual(await store.channels("alice"), ["news"]);
    await store.unsubscribe("news", "alice");
    assert.deepEqual(await store.members("news"), []);
    assert.deepEqual(await store.channels("alice"), []);
  },

  "importUsers sets lastSeq even with no message left, and cursors and channels": async (
    { store },
  ) => {
    await store.importUsers([
      handed("alice", 40, [1, 0], {
        devices: [{ device: "phone", lastAck: 40, seenAt: NOW }],
        channels: ["news", "sport"],
      }),
      handed("bob", 9, [7, 9], { devices: [{ device: "", lastAck: 6, seenAt: NOW - 5 }] }),
    ]);
    assert.equal(await lastSeqOf(store, "alice"), 40);
    assert.deepEqual(await store.readAfter("alice", 0, 100, NOW), []);
    assert.deepEqual(await devicesOf(store, "alice"), { phone: [40, NOW] });
    assert.deepEqual(sorted(await store.channels("alice")), ["news", "sport"]);
    assert.deepEqual(await store.members("sport"), ["alice"]);
    assert.equal(await lastSeqOf(store, "bob"), 9);
    assert.deepEqual(await store.readAfter("bob", 0, 100, NOW), messages("bob", 7, 9));
    assert.deepEqual(await devicesOf(store, "bob"), { "": [6, NOW - 5] });
    // Numbering goes on from the imported lastSeq.
    await store.append(messages("alice", 41, 41));
    assert.equal(await lastSeqOf(store, "alice"), 41);
  },

  "importUsers replaces stale messages and channels, never lowers seq or cursors": async (
    { store },
  ) => {
    await store.append([...messages("alice", 1, 30), ...messages("bob", 1, 2)]);
    await store.updateDevices([ack("alice", 25), seen("alice", "", NOW), ack("alice", 3, "tab")]);
    await store.subscribe("news", "alice");
    await store.subscribe("news", "bob");
    await store.importUsers([
      handed("alice", 28, [26, 28], {
        devices: [{ device: "", lastAck: 10, seenAt: NOW - 9 }, {
          device: "tab",
          lastAck: 11,
          seenAt: NOW - 1,
        }],
        channels: ["sport"],
      }),
    ]);
    assert.equal(await lastSeqOf(store, "alice"), 30);
    assert.deepEqual(await devicesOf(store, "alice"), { "": [25, NOW], tab: [11, NOW - 1] });
    assert.deepEqual(await store.readAfter("alice", 0, 100, NOW), messages("alice", 26, 28));
    assert.deepEqual(await store.channels("alice"), ["sport"]);
    assert.deepEqual(await store.members("news"), ["bob"]);
    assert.deepEqual(seqsOf(await store.readAfter("bob", 0, 100, NOW)), [1, 2]);
  },

  "uids lists every uid with a message, a cursor or a membership": async ({ store }) => {
    assert.deepEqual(await store.uids(), []);
    await store.append(messages("alice", 1, 2));
    await store.updateDevices([seen("bob", "phone", NOW)]);
    await store.subscribe("news", "carol");
    await store.importUsers([handed("dave", 5, [1, 0])]);
    assert.deepEqual(sorted(await store.uids()), ["alice", "bob", "carol", "dave"]);
  },

  "deleteUsers removes everything of those uids and nothing else": async ({ store }) => {
    await store.append([...messages("alice", 1, 3), ...messages("bob", 1, 2)]);
    await store.updateDevices([ack("alice", 1), seen("alice", "phone", NOW), seen("bob", "", NOW)]);
    await store.subscribe("news", "alice");
    await store.subscribe("news", "bob");
    await store.subscribe("sport", "carol");
    await store.deleteUsers(["alice", "carol"]);
    assert.deepEqual(await store.uids(), ["bob"]);
    assert.deepEqual(await store.userState("alice"), { lastSeq: 0, devices: new Map() });
    assert.deepEqual(await store.readAfter("alice", 0, 100, NOW), []);
    assert.deepEqual(await store.channels("alice"), []);
    assert.deepEqual(await store.members("news"), ["bob"]);
    assert.deepEqual(await store.members("sport"), []);
    assert.deepEqual(seqsOf(await store.readAfter("bob", 0, 100, NOW)), [1, 2]);
    assert.deepEqual(await devicesOf(store, "bob"), { "": [0, NOW] });
  },

  "a batch of 5,000 messages is stored whole": async ({ store }) => {
    const batch: StoredMessage[] = [];
    for (let i = 0; i < 50; i++) batch.push(...messages(`user${i}`, 1, 100));
    await store.append(batch);
    for (const uid of ["user0", "user25", "user49"]) {
      assert.deepEqual(await store.readAfter(uid, 0, 1_000, NOW), messages(uid, 1, 100));
      assert.equal(await lastSeqOf(store, uid), 100);
    }
  },

  "interleaved uids in one batch keep each uid's messages and order": async ({ store }) => {
    const batch: StoredMessage[] = [];
    for (let seq = 1; seq <= 10; seq++) {
      for (let i = 0; i < 200; i++) batch.push(message(`user${i}`, seq));
    }
    await store.append(batch);
    for (let i = 0; i < 200; i++) {
      assert.deepEqual(await store.readAfter(`user${i}`, 0, 100, NOW), messages(`user${i}`, 1, 10));
    }
  },

  "concurrent appends for different uids all land": async ({ store }) => {
    await Promise.all(
      range(0, 19).map(async (i) => {
        for (let seq = 1; seq <= 20; seq += 5) {
          await store.append(messages(`user${i}`, seq, seq + 4));
        }
      }),
    );
    for (let i = 0; i < 20; i++) {
      assert.deepEqual(seqsOf(await store.readAfter(`user${i}`, 0, 100, NOW)), range(1, 20));
      assert.equal(await lastSeqOf(store, `user${i}`), 20);
    }
  },
};

function restartCases(reopen: (store: Store) => Promise<Store>): Record<string, Case> {
  return {
    "messages, state and membership survive a reopen": async (subject) => {
      const written = [message("alice", 1), message("alice", 2, { type: 4, channel: "news" })];
      await subject.store.append(written);
      // The tablet has acked nothing: it holds every message back.
      await subject.store.updateDevices([
        seen("alice", "phone", NOW),
        seen("alice", "tablet", NOW),
        ack("alice", 1, "phone"),
      ]);
      await subject.store.subscribe("news", "alice");
      subject.store = await reopen(subject.store);
      assert.deepEqual(await subject.store.readAfter("alice", 0, 100, NOW), written);
      assert.equal(await lastSeqOf(subject.store, "alice"), 2);
      assert.deepEqual(await devicesOf(subject.store, "alice"), {
        phone: [1, NOW],
        tablet: [0, NOW],
      });
      assert.deepEqual(await subject.store.members("news"), ["alice"]);
      assert.deepEqual(await subject.store.channels("alice"), ["news"]);
    },

    "the bus mark survives a reopen, with the copies it was written with": async (subject) => {
      const copy = message("alice", 1, { type: 4, channel: "news" });
      await subject.store.append([copy], "1700000000000-2");
      subject.store = await reopen(subject.store);
      assert.equal(await subject.store.busMark(), "1700000000000-2");
      assert.deepEqual(await subject.store.readAfter("alice", 0, 100, NOW), [copy]);
    },

    "an imported lastSeq survives a reopen": async (subject) => {
      await subject.store.importUsers([handed("alice", 17, [16, 17])]);
      subject.store = await reopen(subject.store);
      assert.equal(await lastSeqOf(subject.store, "alice"), 17);
      assert.deepEqual(seqsOf(await subject.store.readAfter("alice", 0, 100, NOW)), [16, 17]);
    },

    "lastSeq survives compaction and a reopen, so no seq is reused": async (subject) => {
      await subject.store.append(messages("alice", 1, 5));
      await subject.store.updateDevices([ack("alice", 5)]);
      assert.equal(await subject.store.compact(NOW, LIVE_SINCE), 5);
      subject.store = await reopen(subject.store);
      assert.equal(await lastSeqOf(subject.store, "alice"), 5);
      assert.deepEqual(await subject.store.readAfter("alice", 0, 100, NOW), []);
    },
  };
}
