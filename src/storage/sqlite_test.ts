import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { conformance } from "./conformance.ts";
import { prepareSqliteFile, SqliteStore, type SqliteStoreOptions } from "./sqlite.ts";
import { StorageUnavailableError, type Store } from "./store.ts";
import type { StoredMessage } from "../core/messages.ts";

const SQLITE_MODULE = new URL("./sqlite.ts", import.meta.url).href;
const NOW = 1_700_000_000_000;

// Both ways a store writes: into the tables at once (a shared file), and through its log
// (an exclusive file, the daemon's).
for (
  const [name, options] of [["SqliteStore", {}], ["SqliteStore, exclusive", {
    exclusive: true,
  }]] as const
) {
  let suiteDir: string | undefined;
  const paths = new WeakMap<Store, string>();
  const openAt = (path: string): SqliteStore => {
    const store = new SqliteStore(path, options);
    paths.set(store, path);
    return store;
  };
  conformance(name, {
    async open() {
      suiteDir ??= await Deno.makeTempDir({ prefix: "ipush-sqlite-test-" });
      return openAt(`${suiteDir}/${crypto.randomUUID()}.db`);
    },
    async reopen(store) {
      const path = paths.get(store);
      assert.ok(path, "reopen of a store this factory did not open");
      await store.close();
      return openAt(path);
    },
    async cleanup() {
      if (suiteDir) await Deno.remove(suiteDir, { recursive: true });
    },
  });
}

async function withTempDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "ipush-sqlite-test-" });
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function message(uid: string, seq: number): StoredMessage {
  return { uid, seq, type: 3, from: "op", body: `"${uid}#${seq}"`, expiresAt: 0 };
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

Deno.test("SqliteStore puts the file in WAL mode", async () => {
  await withTempDir(async (dir) => {
    const store = new SqliteStore(`${dir}/wal.db`);
    const probe = new DatabaseSync(`${dir}/wal.db`);
    try {
      assert.deepEqual({ ...probe.prepare("PRAGMA journal_mode").get() }, { journal_mode: "wal" });
    } finally {
      probe.close();
      await store.close();
    }
  });
});

Deno.test("SqliteStore makes a new file with 1 KB pages, and keeps an older file's 4 KB", async () => {
  await withTempDir(async (dir) => {
    const pageSize = (path: string) => {
      const probe = new DatabaseSync(path);
      try {
        return (probe.prepare("PRAGMA page_size").get() as { page_size: number }).page_size;
      } finally {
        probe.close();
      }
    };
    const made = new SqliteStore(`${dir}/new.db`);
    await made.append([message("alice", 1)]);
    await made.close();
    assert.equal(pageSize(`${dir}/new.db`), 1024);
    // A file of an earlier version: SQLite's default page size, and a message in it.
    const old = new DatabaseSync(`${dir}/old.db`);
    old.exec(
      "PRAGMA page_size = 4096; PRAGMA journal_mode = WAL; CREATE TABLE x (a); DROP TABLE x;",
    );
    old.close();
    const kept = new SqliteStore(`${dir}/old.db`);
    await kept.append([message("alice", 1)]);
    assert.deepEqual((await kept.readAfter("alice", 0, 10, 0)).map((m) => m.seq), [1]);
    await kept.close();
    assert.equal(pageSize(`${dir}/old.db`), 4096);
  });
});

Deno.test("SqliteStore rolls a failed batch back whole", async () => {
  await withTempDir(async (dir) => {
    const store = new SqliteStore(`${dir}/rollback.db`);
    try {
      await store.append([message("alice", 1)]);
      // alice#1 again breaks the primary key after bob#1 went in: bob#1 must go too.
      await assert.rejects(
        store.append([message("bob", 1), message("alice", 1)]),
        (error) => error instanceof Error && !(error instanceof StorageUnavailableError),
      );
      assert.deepEqual(await store.readAfter("bob", 0, 10, NOW), []);
      assert.deepEqual(await store.userState("bob"), { lastSeq: 0, devices: new Map() });
      assert.deepEqual(await store.userState("alice"), { lastSeq: 1, devices: new Map() });
    } finally {
      await store.close();
    }
  });
});

Deno.test("SqliteStore reports a write lock held past busyTimeout as unavailable", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/busy.db`;
    const store = new SqliteStore(path, { busyTimeout: 50 });
    const holder = new DatabaseSync(path);
    try {
      holder.exec("BEGIN IMMEDIATE");
      await assert.rejects(store.append([message("alice", 1)]), StorageUnavailableError);
      await assert.rejects(
        store.updateDevices([{ uid: "alice", device: "", lastAck: 1, seenAt: 0 }]),
        StorageUnavailableError,
      );
      holder.exec("ROLLBACK");
      await store.append([message("alice", 1)]);
      assert.deepEqual(await store.userState("alice"), { lastSeq: 1, devices: new Map() });
    } finally {
      holder.close();
      await store.close();
    }
  });
});

Deno.test("SqliteStore reports an unopenable file and a closed store as unavailable", async () => {
  await withTempDir(async (dir) => {
    assert.throws(() => new SqliteStore(`${dir}/missing/dir/x.db`), StorageUnavailableError);
    const store = new SqliteStore(`${dir}/closed.db`);
    await store.close();
    await assert.rejects(store.readAfter("alice", 0, 10, NOW), StorageUnavailableError);
    await assert.rejects(store.append([message("alice", 1)]), StorageUnavailableError);
  });
});

const SHARDS = 4;
const SHARD_USERS = 20;
const SHARD_SEQS = 200;

// Each worker (JavaScript, so that it is not type-checked again) is a shard: it opens the shared file itself and appends batches for its own
// uids as fast as it can, so that the shards' transactions contend for the write lock.
const SHARD_WORKER = `
import { SqliteStore } from ${JSON.stringify(SQLITE_MODULE)};
self.onmessage = async ({ data: { path, shard } }) => {
  try {
    const store = new SqliteStore(path);
    for (let seq = 1; seq <= ${SHARD_SEQS}; seq += 10) {
      const batch = [];
      for (let user = 0; user < ${SHARD_USERS}; user++) {
        for (let s = seq; s < seq + 10; s++) {
          batch.push({ uid: "shard" + shard + "-user" + user, seq: s, type: 3, from: "op",
            body: "{}", expiresAt: 0 });
        }
      }
      await store.append(batch);
    }
    await store.close();
    self.postMessage("done");
  } catch (error) {
    self.postMessage(String(error));
  }
};
`;

Deno.test("SqliteStore lets several worker shards share one file", async () => {
  await withTempDir(async (dir) => {
    const script = `${dir}/shard_worker.js`;
    await Deno.writeTextFile(script, SHARD_WORKER);
    const path = `${dir}/shared.db`;
    const results = await Promise.all(
      range(0, SHARDS - 1).map((shard) => {
        const worker = new Worker(new URL(`file://${script}`), { type: "module" });
        const done = new Promise<string>((resolve) => {
          worker.onmessage = ({ data }) => resolve(data);
          worker.onerror = (event) => {
            event.preventDefault();
            resolve(event.message);
          };
        });
        worker.postMessage({ path, shard });
        return done.finally(() => worker.terminate());
      }),
    );
    assert.deepEqual(results, Array(SHARDS).fill("done"));
    const store = new SqliteStore(path);
    try {
      for (let shard = 0; shard < SHARDS; shard++) {
        for (const user of [0, SHARD_USERS - 1]) {
          const uid = `shard${shard}-user${user}`;
          const stored = await store.readAfter(uid, 0, 1_000, NOW);
          assert.deepEqual(stored.map((m) => m.seq), range(1, SHARD_SEQS));
          assert.deepEqual(await store.userState(uid), { lastSeq: SHARD_SEQS, devices: new Map() });
        }
      }
    } finally {
      await store.close();
    }
  });
});

const CRASH_BATCH = 200;

// Appends batches for ever and prints each batch's last seq once its append resolved.
const CRASH_WRITER = `
import { SqliteStore } from ${JSON.stringify(SQLITE_MODULE)};
const store = new SqliteStore(Deno.args[0], JSON.parse(Deno.args[1]));
const encoder = new TextEncoder();
for (let seq = 1; ; seq += ${CRASH_BATCH}) {
  const batch = [];
  for (let s = seq; s < seq + ${CRASH_BATCH}; s++) {
    batch.push({ uid: "victim", seq: s, type: 3, from: "op", body: '"x"', expiresAt: 0 });
  }
  await store.append(batch);
  Deno.stdout.writeSync(encoder.encode((seq + ${CRASH_BATCH} - 1) + "\\n"));
}
`;

/** `source` as a script in `dir`, to run with `args` in a process of its own. */
async function writer(dir: string, source: string, args: string[]): Promise<Deno.Command> {
  const script = `${dir}/writer.js`;
  await Deno.writeTextFile(script, source);
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-config", "--allow-read", "--allow-write", script, ...args],
    cwd: dir,
    stdout: "piped",
    stderr: "piped",
  });
}

for (const options of [{}, { exclusive: true }] satisfies SqliteStoreOptions[]) {
  const mode = options.exclusive ? "an exclusive" : "a shared";
  Deno.test(`SqliteStore keeps every append that resolved before a kill -9, ${mode} file`, async () => {
    await withTempDir(async (dir) => {
      const path = `${dir}/crash.db`;
      const child = (await writer(dir, CRASH_WRITER, [path, JSON.stringify(options)])).spawn();
      const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let output = "";
      // Let it commit a good number of batches, then kill it wherever it is.
      while (output.split("\n").length <= 50) {
        const { value, done } = await lines.read();
        if (done) {
          const error = await new Response(child.stderr).text();
          assert.fail(`the writer stopped by itself: ${error}`);
        }
        output += value;
      }
      child.kill("SIGKILL");
      for (let read = await lines.read(); !read.done; read = await lines.read()) {
        output += read.value;
      }
      await child.stderr.cancel();
      assert.equal((await child.status).signal, "SIGKILL");

      // The text after the last newline, if any, is a report cut short by the kill.
      const reported = output.split("\n").slice(0, -1).map(Number);
      const lastResolved = reported.at(-1)!;
      assert.deepEqual(reported, range(1, reported.length).map((i) => i * CRASH_BATCH));

      const store = new SqliteStore(path, options);
      try {
        const { lastSeq } = await store.userState("victim");
        assert.ok(lastSeq >= lastResolved, `lastSeq ${lastSeq} < resolved ${lastResolved}`);
        assert.equal(lastSeq % CRASH_BATCH, 0, "a batch was kept in part");
        const stored = await store.readAfter("victim", 0, lastSeq + CRASH_BATCH, NOW);
        assert.deepEqual(stored.map((m) => m.seq), range(1, lastSeq));
      } finally {
        await store.close();
      }
    });
  });
}

Deno.test("prepareSqliteFile: creates a new file, refuses an empty or foreign one", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/new.sqlite`;
    prepareSqliteFile(path);
    const store = new SqliteStore(path);
    assert.deepEqual(await store.userState("u"), { lastSeq: 0, devices: new Map() });
    await store.close();
    prepareSqliteFile(path); // a good file passes again

    const empty = `${dir}/empty.sqlite`;
    await Deno.writeFile(empty, new Uint8Array(0));
    assert.throws(() => prepareSqliteFile(empty), /empty \(0 bytes\), not an ipush store/);

    const foreign = `${dir}/foreign.sqlite`;
    await Deno.writeTextFile(foreign, "not a database ".repeat(400));
    assert.throws(() => prepareSqliteFile(foreign), /is damaged \(quick_check: .*not a database/);
  });
});

Deno.test("SqliteStore migrates a file from before devices without losing anything", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/v0.sqlite`;
    // The schema as it was, one cursor a uid: alice has acked 2 of 3, bob nothing.
    const old = new DatabaseSync(path);
    old.exec(`
      CREATE TABLE messages (uid TEXT NOT NULL, seq INTEGER NOT NULL, type INTEGER NOT NULL,
        sender TEXT NOT NULL, channel TEXT, body TEXT NOT NULL, expires_at INTEGER NOT NULL,
        PRIMARY KEY (uid, seq));
      CREATE TABLE users (uid TEXT PRIMARY KEY, last_seq INTEGER NOT NULL DEFAULT 0,
        last_ack INTEGER NOT NULL DEFAULT 0, purged_ack INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
      CREATE INDEX users_to_purge ON users (uid) WHERE last_ack > purged_ack;
      CREATE TABLE members (channel TEXT NOT NULL, uid TEXT NOT NULL,
        PRIMARY KEY (channel, uid)) WITHOUT ROWID;
      INSERT INTO messages VALUES ('alice', 1, 3, 'op', NULL, '"a1"', 0),
        ('alice', 2, 3, 'op', NULL, '"a2"', 0), ('alice', 3, 3, 'op', NULL, '"a3"', 0),
        ('bob', 1, 3, 'op', NULL, '"b1"', 0);
      INSERT INTO users VALUES ('alice', 3, 2, 0), ('bob', 1, 0, 0);
      INSERT INTO members VALUES ('news', 'alice');
    `);
    old.close();
    const before = Date.now();
    const store = new SqliteStore(path);
    try {
      const alice = await store.userState("alice");
      assert.equal(alice.lastSeq, 3);
      assert.equal(alice.devices.get("")?.lastAck, 2, "the cursor is the default device's");
      assert.ok(alice.devices.get("")!.seenAt >= before, "seen at the migration: it holds back");
      assert.deepEqual(await store.userState("bob"), { lastSeq: 1, devices: new Map() });
      assert.deepEqual((await store.readAfter("alice", 0, 10, Date.now())).map((m) => m.body), [
        '"a1"',
        '"a2"',
        '"a3"',
      ]);
      assert.deepEqual(await store.members("news"), ["alice"]);
      // What was acked goes at the next compaction; what was not stays.
      assert.equal(await store.compact(Date.now(), 0), 2);
      assert.deepEqual((await store.readAfter("alice", 0, 10, Date.now())).map((m) => m.seq), [3]);
    } finally {
      await store.close();
    }
    // Opening again changes nothing more.
    const again = new SqliteStore(path);
    assert.equal((await again.userState("alice")).devices.get("")?.lastAck, 2);
    await again.close();
  });
});

Deno.test("SqliteStore opens a file of schema 2 (before the bus mark) with no mark, and keeps one", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/v2.db`;
    const before = new SqliteStore(path);
    await before.append([message("alice", 1)]);
    await before.close();
    // What a file written before the bus mark looks like.
    const db = new DatabaseSync(path);
    db.exec("DROP TABLE bus_mark; PRAGMA user_version = 2");
    db.close();
    const store = new SqliteStore(path);
    try {
      assert.equal(await store.busMark(), null);
      assert.deepEqual((await store.readAfter("alice", 0, 10, NOW)).map((m) => m.seq), [1]);
      await store.append([message("alice", 2)], "1700000000000-0");
      assert.equal(await store.busMark(), "1700000000000-0");
    } finally {
      await store.close();
    }
  });
});

// Commits to the log, then stops without closing the store: no fold ran (none was due). The
// ack of alice goes with bob's message; the ack of bob, with no commit after it, nowhere.
const LOG_WRITER = `
import { SqliteStore } from ${JSON.stringify(SQLITE_MODULE)};
const store = new SqliteStore(Deno.args[0], { exclusive: true });
const batch = [];
for (let seq = 1; seq <= 10; seq++) {
  batch.push({ uid: "alice", seq, type: 3, from: "op", body: '"a' + seq + '"', expiresAt: 0 });
}
await store.append(batch);
await store.updateDevices([{ uid: "alice", device: "", lastAck: 6, seenAt: 0 }]);
await store.append([{ uid: "bob", seq: 1, type: 4, from: "op", channel: "news", body: '"b"', expiresAt: 0 }]);
await store.updateDevices([{ uid: "bob", device: "", lastAck: 1, seenAt: 0 }]);
// With an argument, wait that long first: the store's own timer folds meanwhile.
if (Deno.args[1]) await new Promise((resolve) => setTimeout(resolve, Number(Deno.args[1])));
Deno.exit(0);
`;

/** Runs LOG_WRITER on a new file in `dir`, waiting `waitMs` before it exits; returns the file. */
async function writeLog(dir: string, waitMs?: number): Promise<string> {
  const path = `${dir}/log.db`;
  const command = await writer(dir, LOG_WRITER, [path, ...(waitMs ? [String(waitMs)] : [])]);
  const { code, stderr } = await command.output();
  assert.equal(code, 0, new TextDecoder().decode(stderr));
  return path;
}

/** A query's rows, on the file of a store that is not open. */
function query(path: string, sql: string): unknown[] {
  const db = new DatabaseSync(path);
  try {
    return db.prepare(sql).all().map((row) => ({ ...row }));
  } finally {
    db.close();
  }
}

Deno.test("SqliteStore, exclusive: commits left in the log are folded at the next open, acked ones never written", async () => {
  await withTempDir(async (dir) => {
    const path = await writeLog(dir);
    const rows = (table: string) => query(path, `SELECT count(*) AS n FROM ${table}`)[0];
    assert.deepEqual(rows("log"), { n: 2 });
    assert.deepEqual(rows("messages"), { n: 0 });

    const store = new SqliteStore(path, { exclusive: true });
    try {
      assert.deepEqual((await store.readAfter("alice", 0, 100, NOW)).map((m) => m.body), [
        '"a7"',
        '"a8"',
        '"a9"',
        '"a10"',
      ]);
      assert.deepEqual(await store.readAfter("bob", 0, 100, NOW), [
        { uid: "bob", seq: 1, type: 4, from: "op", channel: "news", body: '"b"', expiresAt: 0 },
      ]);
      assert.equal((await store.userState("alice")).lastSeq, 10);
      // Bob's ack was lost with the process: bob 1 is delivered again, never lost.
      assert.deepEqual(await store.userState("bob"), { lastSeq: 1, devices: new Map() });
      // The six acked before the fold were never written, and count as compacted.
      assert.equal(await store.compact(NOW, 0), 6);
      assert.equal(await store.compact(NOW, 0), 0);
    } finally {
      await store.close();
    }
    assert.deepEqual(rows("log"), { n: 0 });
    assert.deepEqual(rows("messages"), { n: 5 });
  });
});

Deno.test("SqliteStore, exclusive: a running store folds its log by itself, acks without a row too", async () => {
  await withTempDir(async (dir) => {
    // FOLD_GRACE_MS and FOLD_AFTER_MS are 250 ms each: folded within 500 ms, on a busy box
    // well within 2.5 s.
    const path = await writeLog(dir, 2_500);
    assert.deepEqual(query(path, "SELECT count(*) AS n FROM log"), [{ n: 0 }]);
    assert.deepEqual(query(path, "SELECT uid, seq FROM messages ORDER BY uid, seq"), [
      { uid: "alice", seq: 7 },
      { uid: "alice", seq: 8 },
      { uid: "alice", seq: 9 },
      { uid: "alice", seq: 10 },
      // Bob's ack was in memory when the fold took bob 1: that message is never written.
    ]);
    assert.deepEqual(query(path, "SELECT uid, last_ack FROM devices ORDER BY uid"), [
      { uid: "alice", last_ack: 6 },
      { uid: "bob", last_ack: 1 },
    ]);
    assert.deepEqual(query(path, "SELECT uid, last_seq FROM users ORDER BY uid"), [
      { uid: "alice", last_seq: 10 },
      { uid: "bob", last_seq: 1 },
    ]);
  });
});

// sqlite.ts's FOLD_AT: past this many logged messages, commits are folded without their grace.
const FOLD_AT = 65_536;

// Appends one commit of each size in Deno.args[1] (JSON) for one uid, seqs from 1, waits
// Deno.args[2] ms, and exits without closing the store. Its clock is frozen, so no commit's
// grace ever ends however slow the box: whatever reaches the tables was folded by FOLD_AT.
const FLOOD_WRITER = `
import { SqliteStore } from ${JSON.stringify(SQLITE_MODULE)};
const frozen = performance.now();
performance.now = () => frozen;
const store = new SqliteStore(Deno.args[0], { exclusive: true });
let seq = 0;
for (const size of JSON.parse(Deno.args[1])) {
  const batch = [];
  for (const end = seq + size; seq < end;) {
    seq++;
    batch.push({ uid: "flood", seq, type: 3, from: "op", body: '"flood#' + seq + '"', expiresAt: 0 });
  }
  await store.append(batch);
}
await new Promise((resolve) => setTimeout(resolve, Number(Deno.args[2])));
Deno.exit(0);
`;

for (
  const { name, sizes, waitMs } of [
    {
      // The appends never yield to the event loop, so no fold timer runs meanwhile.
      name: "each commit past it folds a chunk before it answers",
      sizes: Array<number>(FOLD_AT / 1_024 + 16).fill(1_024),
      waitMs: 0,
    },
    {
      // The last commit's own chunk (~4096 messages) leaves the log past FOLD_AT.
      name: "the fold timer takes what the commits leave past it",
      sizes: [...Array<number>(FOLD_AT / 16).fill(16), 16_384],
      // FOLD_AFTER_MS is 250 ms, then a chunk an event-loop turn: on a busy box well within.
      waitMs: 2_500,
    },
  ]
) {
  Deno.test(`SqliteStore, exclusive: FOLD_AT bounds the log inside the grace (${name}), losing nothing`, async () => {
    await withTempDir(async (dir) => {
      const path = `${dir}/flood.db`;
      const command = await writer(dir, FLOOD_WRITER, [path, JSON.stringify(sizes), `${waitMs}`]);
      const { code, stderr } = await command.output();
      assert.equal(code, 0, new TextDecoder().decode(stderr));
      const total = sizes.reduce((sum, size) => sum + size, 0);
      const [{ n: logRows }] = query(path, "SELECT count(*) AS n FROM log") as { n: number }[];
      const folded = (query(path, "SELECT seq FROM messages ORDER BY seq") as { seq: number }[])
        .map((row) => row.seq);
      // The tables hold the oldest commits whole, the log the rest: no more than the bound.
      const foldedCommits = sizes.slice(0, sizes.length - logRows);
      assert.deepEqual(folded, range(1, foldedCommits.reduce((sum, size) => sum + size, 0)));
      assert.ok(total - folded.length <= FOLD_AT, `${total - folded.length} messages still logged`);

      const store = new SqliteStore(path, { exclusive: true });
      try {
        const stored = await store.readAfter("flood", 0, total + 1, NOW);
        assert.deepEqual(stored.map((m) => m.seq), range(1, total));
        assert.ok(stored.every((m) => m.body === `"flood#${m.seq}"`), "a message was mixed up");
        assert.equal((await store.userState("flood")).lastSeq, total);
      } finally {
        await store.close();
      }
      assert.deepEqual(query(path, "SELECT count(*) AS n FROM log"), [{ n: 0 }]);
      assert.deepEqual(query(path, "SELECT count(*) AS n FROM messages"), [{ n: total }]);
    });
  });
}

Deno.test("SqliteStore, exclusive: a fold that fails makes a uid's reads fail with it", async () => {
  await withTempDir(async (dir) => {
    const store = new SqliteStore(`${dir}/fold.db`, { exclusive: true });
    try {
      await store.append([message("alice", 1), message("alice", 2)]);
      assert.equal(await store.compact(NOW, 0), 0); // folded
      // alice 2 again breaks the one-writer contract: the log takes it, its fold cannot.
      await store.append([message("alice", 2)]);
      assert.equal((await store.userState("alice")).lastSeq, 2, "read before the fold");
      // FOLD_GRACE_MS and FOLD_AFTER_MS are 250 ms each.
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      const constraint = (error: unknown) =>
        error instanceof Error && !(error instanceof StorageUnavailableError) &&
        /constraint/i.test(error.message);
      await assert.rejects(store.userState("alice"), constraint);
      await assert.rejects(store.readAfter("bob", 0, 10, NOW), constraint);
    } finally {
      await store.close().catch(() => {});
    }
  });
});
