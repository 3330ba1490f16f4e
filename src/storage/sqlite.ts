/**
 * The embedded durable store: one SQLite file through Deno's built-in `node:sqlite`.
 *
 * The daemon gives each shard a file of its own, opened `exclusive` (`sqlite_backend.ts`).
 * Several connections may still share one file (the store then relies on SQLite's write
 * lock: `busy_timeout` makes a writer wait for it, synchronously, instead of failing).
 *
 * Durability: the file runs in WAL mode. With `synchronous: "normal"` (the default) a
 * committed transaction is in the operating system's cache once `append` resolves, so it
 * survives a crash or `kill -9` of the process but not a power loss or kernel panic; with
 * `synchronous: "full"` every commit is also fsync'd, which survives power loss too. See
 * `docs/storage.md` for the cost of each.
 *
 * A file kept `exclusive` is written through a log:
 * - An `append` is one row of `log` (a few sequential pages) and is durable once that row is.
 *   The row also carries the device updates (acks) made since the row before. Those wait in
 *   memory until then or until the next fold: a crash loses them, which costs a redelivery.
 * - Commits are folded into the tables later, many at a time: those older than
 *   {@linkcode FOLD_GRACE_MS}, looked for every {@linkcode FOLD_AFTER_MS} and taken in
 *   transactions of about {@linkcode FOLD_CHUNK} messages; all of them once
 *   {@linkcode FOLD_AT} messages wait. A fold also deletes the log rows it folded, so a crash
 *   leaves each commit either folded or still in the log, and opening the file folds the rest.
 * - Folding many commits at once is where it pays. A message that every device of its uid has
 *   acknowledged by then is never written to `messages` (the next `compact` would delete
 *   it), and a uid's `last_seq` and a device's cursor are written once a fold, not once a
 *   commit. Writing each commit into the tables costs a page of the `(uid, seq)` B-tree per
 *   uid a commit instead (docs/performance.md has both measured).
 * - A uid's state and messages are read from the tables plus what the log holds of it in
 *   memory. The rarer reads over every uid (`uids`, `compact`, a hand-off's `importUsers` and
 *   `deleteUsers`) and `close` fold everything first.
 *
 * A store that shares its file with other connections writes each commit into the tables at
 * once, since they could not see its log.
 *
 * @module
 */

import { DatabaseSync, type StatementSync } from "node:sqlite";
import type { HandedUser, StoredMessage, StoredType } from "../core/messages.ts";
import {
  compactionFloor,
  type DeviceState,
  type DeviceUpdate,
  mergeDeviceUpdate,
  StorageUnavailableError,
  type Store,
  type UserState,
} from "./store.ts";

/** How a {@linkcode SqliteStore} trades commit latency for durability. */
export interface SqliteStoreOptions {
  /**
   * `"normal"` (default): a commit survives a crash of the process, not a power loss.
   * `"full"`: every commit is fsync'd and survives a power loss too.
   */
  synchronous?: "normal" | "full";
  /** How long a write waits for another connection's transaction, in milliseconds (5000). */
  busyTimeout?: number;
  /**
   * Keep the file to this connection (`locking_mode = EXCLUSIVE`): what a shard does with its
   * own file. No other connection can open it meanwhile; in return no transaction takes a
   * file lock or finds its page cache invalidated by another writer, and the WAL index lives
   * in the process's memory.
   */
  exclusive?: boolean;
}

// The messages table keeps its rowid (rows land at the end of the table in append order) and
// indexes (uid, seq) through its primary key: measured, this appends 1.4 to 4.6 times faster
// than a WITHOUT ROWID table clustered on (uid, seq), whose rows scatter over one page per
// uid, for a read-after-seq about 1.3 times slower (docs/storage.md). A device's `purged_ack`
// is its `last_ack` when `compact` last worked out its uid's floor, so that `compact` visits
// only uids whose cursors moved since; the partial index holds exactly those devices, and a
// device that goes quiet is put back in it (`purged_ack` -1) once, when it does.
const SCHEMA = `
  CREATE TABLE IF NOT EXISTS messages (
    uid TEXT NOT NULL,
    seq INTEGER NOT NULL,
    type INTEGER NOT NULL,
    sender TEXT NOT NULL,
    channel TEXT,
    body TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (uid, seq)
  );
  CREATE INDEX IF NOT EXISTS messages_by_expiry ON messages (expires_at) WHERE expires_at > 0;
  CREATE TABLE IF NOT EXISTS users (
    uid TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL DEFAULT 0
  ) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS devices (
    uid TEXT NOT NULL,
    device TEXT NOT NULL,
    last_ack INTEGER NOT NULL DEFAULT 0,
    seen_at INTEGER NOT NULL DEFAULT 0,
    purged_ack INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (uid, device)
  ) WITHOUT ROWID;
  CREATE INDEX IF NOT EXISTS devices_to_purge ON devices (uid) WHERE last_ack > purged_ack;
  CREATE INDEX IF NOT EXISTS devices_by_seen ON devices (seen_at);
  CREATE TABLE IF NOT EXISTS members (
    channel TEXT NOT NULL,
    uid TEXT NOT NULL,
    PRIMARY KEY (channel, uid)
  ) WITHOUT ROWID;
  CREATE INDEX IF NOT EXISTS members_by_uid ON members (uid, channel);
  CREATE TABLE IF NOT EXISTS home (shards INTEGER NOT NULL);
  CREATE TABLE IF NOT EXISTS bus_mark (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    entry TEXT NOT NULL
  );
  CREATE TABLE IF NOT EXISTS log (
    id INTEGER PRIMARY KEY,
    entry TEXT NOT NULL
  );
`;

/**
 * The schema's version, in `PRAGMA user_version`: 1 since cursors are per device, 2 since a
 * file records the shard count it is homed for (`home`, `sqlite_backend.ts`), 3 since it
 * keeps its shard's bus mark (`bus_mark`, one row; a file of version 2 gets the empty table),
 * 4 since commits go through `log` (an earlier version gets the empty table; an earlier ipush
 * would not read a version-4 file's log, so a file goes back only with its log empty, after a
 * clean stop).
 */
const SCHEMA_VERSION = 4;

/**
 * From a file of version 0 (one `last_ack` per uid, in `users`): each uid's cursor becomes
 * that of its default device, seen at the migration, so that no message is lost or compacted
 * early; the old columns go.
 */
const MIGRATE_FROM_0 = `
  INSERT INTO devices (uid, device, last_ack, seen_at, purged_ack)
    SELECT uid, '', last_ack, ?, purged_ack FROM users WHERE last_ack > 0;
`;
const DROP_FROM_0 = `
  DROP INDEX IF EXISTS users_to_purge;
  ALTER TABLE users DROP COLUMN last_ack;
  ALTER TABLE users DROP COLUMN purged_ack;
`;

/**
 * Makes sure `path` is an ipush store before any shard opens it: creates it (with its schema)
 * when it does not exist, and refuses one that exists but is empty or damaged. SQLite itself
 * would take a zero-length file for a new, empty database, and so start every uid at `s` 1
 * again, reusing sequence numbers, with nothing logged; and it opens a file with a damaged
 * page, failing only the reads that meet it. `quick_check` reads every page once, so it takes
 * time proportional to the file (about a second a GB).
 *
 * @throws {Error} naming the file, what is wrong and what to do.
 */
export function prepareSqliteFile(path: string): void {
  let size: number | undefined;
  try {
    size = Deno.statSync(path).size;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  const refuse = (what: string, remedy: string) =>
    new Error(`${path} ${what}: refusing to start on it. ${remedy}`);
  if (size === 0) {
    throw refuse(
      "is empty (0 bytes), not an ipush store",
      "Starting on it would begin every uid at s=1 again. Restore the file from a backup, " +
        "or move it away to start with an empty store.",
    );
  }
  let db: DatabaseSync;
  try {
    db = new DatabaseSync(path);
  } catch (error) {
    throw refuse(`cannot be opened (${(error as Error).message})`, "Check its permissions.");
  }
  try {
    let verdict: string;
    try {
      const rows = db.prepare("PRAGMA quick_check(1)").all() as Record<string, string>[];
      verdict = String(Object.values(rows[0] ?? {})[0] ?? "no answer").replace(/\s*\n\s*/g, "; ");
    } catch (error) {
      verdict = (error as Error).message;
    }
    if (verdict !== "ok") {
      throw refuse(
        `is damaged (quick_check: ${verdict})`,
        "Restore it from a backup, or recover what it holds into a new file with " +
          "`sqlite3 <file> .recover | sqlite3 <new file>` and start on that.",
      );
    }
  } finally {
    db.close();
  }
  // A new file gets its schema now, while no shard has it open.
  void new SqliteStore(path).close();
}

/**
 * The page size of a new store file, in bytes (SQLite's default is 4096). A delivery's rows (its
 * message and index entry, its uid's `last_seq`, its device's cursor) sit on random pages, and
 * a commit writes each page it dirtied whole to the WAL and, at a checkpoint, back to the file:
 * with 1 KB pages the unicast p99 at half the maximum fell from 13.4–17.3 to 9.2–14.3 ms
 * (median 14.5 → 10.0, 6 and 9 rounds), and a uid's backlog reads back in half the time; a
 * payload over ~1 KB takes overflow pages (docs/storage.md).
 */
const PAGE_SIZE = 1024;

/** Rows `compact` deletes per transaction: about a millisecond of work between yields. */
const COMPACT_CHUNK = 500;

/** How often the log is looked at for commits due to be folded, in milliseconds. */
const FOLD_AFTER_MS = 250;

/**
 * How old a commit is before it is folded (unless everything is, for `uids`, `compact`, a
 * hand-off or `close`): the acks of its deliveries are on their way meanwhile, and a message
 * they acknowledge is then never written to `messages`. At the fan-out maximum a delivery is acked 80–250 ms after its
 * commit (the p50 and p99 of the load generator's latency).
 */
const FOLD_GRACE_MS = 250;

/**
 * About the most messages one fold transaction takes (whole commits: the last one taken may
 * pass it). A fold yields to the event loop between such chunks, which bounds how long it
 * keeps the shard from its sockets: ~10 µs a message it writes (few acked, as for offline
 * recipients), less than 1 µs one it does not, and ~3 µs a uid for its cursors and `last_seq`.
 */
const FOLD_CHUNK = 4096;

/**
 * The logged messages past which commits are folded without their grace, and each new commit
 * folds a chunk before it answers: bounds memory, and slows appends to what the tables take.
 */
const FOLD_AT = 65_536;

/** A commit written to `log` and not folded into the tables yet. */
interface Logged {
  /** Its log row. */
  id: number;
  /** When it was logged (`performance.now()`); 0 for one found in the file at open. */
  at: number;
  messages: readonly StoredMessage[];
}

interface MessageRow {
  seq: number;
  type: StoredType;
  sender: string;
  channel: string | null;
  body: string;
  expires_at: number;
}

/** A {@linkcode Store} in one SQLite file, shareable by the workers of one process. */
export class SqliteStore implements Store {
  #db: DatabaseSync;
  #insertMessage: StatementSync;
  #raiseLastSeq: StatementSync;
  #readAfter: StatementSync;
  #lastSeq: StatementSync;
  #devices: StatementSync;
  #ackDevice: StatementSync;
  #seeDevice: StatementSync;
  #subscribe: StatementSync;
  #unsubscribe: StatementSync;
  #members: StatementSync;
  #channels: StatementSync;
  #deleteExpired: StatementSync;
  #markGoneQuiet: StatementSync;
  #usersToPurge: StatementSync;
  #deleteAcked: StatementSync;
  #markPurged: StatementSync;
  #uids: StatementSync;
  #deleteMessages: StatementSync;
  #deleteMemberships: StatementSync;
  #deleteUser: StatementSync;
  #deleteDevices: StatementSync;
  #setBusMark: StatementSync;
  #busMark: StatementSync;
  #lowestCursor: StatementSync;
  #logCommit: StatementSync;
  #readLog: StatementSync;
  #deleteLog: StatementSync;
  /** Devices seen before this had gone quiet at the last `compact`. */
  #quietBefore = 0;
  /** Whether commits go through `log` (an exclusive file) or into the tables at once. */
  #logging: boolean;
  #logged: Logged[] = [];
  /** The messages in `#logged`. */
  #loggedMessages = 0;
  /** Device updates not in any log row yet: the next commit's row takes them. */
  #unlogged: DeviceUpdate[] = [];
  /** Device updates not written to `devices` yet, one a device, by uid. */
  #unwritten = new Map<string, Map<string, DeviceUpdate>>();
  /** The messages of `#logged` by uid, in seq order: what a read adds to the tables' rows. */
  #loggedOf = new Map<string, StoredMessage[]>();
  #foldTimer: ReturnType<typeof setTimeout> | undefined;
  /** The last fold failed: reads try it again first, and fail with it while it does. */
  #foldFailed = false;
  /** Messages never written because acknowledged when folded, since the last `compact`. */
  #elided = 0;

  /**
   * Opens (creating if absent) the database at `path`.
   *
   * @throws {StorageUnavailableError} when the file cannot be opened or set up.
   */
  constructor(path: string, options: SqliteStoreOptions = {}) {
    const { synchronous = "normal", busyTimeout = 5000 } = options;
    this.#logging = options.exclusive === true;
    try {
      // The busy timeout is set at open so that even switching to WAL waits for a sibling
      // worker that is creating the same file.
      this.#db = new DatabaseSync(path, { timeout: busyTimeout });
    } catch (error) {
      throw unavailable(error);
    }
    try {
      if (options.exclusive) this.#db.exec("PRAGMA locking_mode = EXCLUSIVE");
      // Takes effect on a new file only: a file keeps the page size it was made with.
      this.#db.exec(`PRAGMA page_size = ${PAGE_SIZE}`);
      this.#db.exec("PRAGMA journal_mode = WAL");
      this.#db.exec(`PRAGMA synchronous = ${synchronous === "full" ? "FULL" : "NORMAL"}`);
      // Checkpoint the WAL into the file every 4000 pages rather than 1000 (the default).
      // A batch for 1000 uids dirties ~1000 index pages, so with the default every such commit
      // is followed by a checkpoint; with room for a few commits, pages rewritten by each are
      // copied back once (2.4 times the throughput for batches of 1000, docs/storage.md), at
      // the price of a longer pause (~20-40 ms) when a checkpoint does run.
      this.#db.exec("PRAGMA wal_autocheckpoint = 4000");
      this.#transaction(() => migrate(this.#db));
      this.#insertMessage = this.#db.prepare(
        `INSERT INTO messages (uid, seq, type, sender, channel, body, expires_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)`,
      );
      this.#raiseLastSeq = this.#db.prepare(
        `INSERT INTO users (uid, last_seq) VALUES (?, ?)
         ON CONFLICT (uid) DO UPDATE SET last_seq = max(last_seq, excluded.last_seq)`,
      );
      this.#readAfter = this.#db.prepare(
        `SELECT seq, type, sender, channel, body, expires_at FROM messages
         WHERE uid = ? AND seq > ? AND (expires_at = 0 OR expires_at > ?)
         ORDER BY seq LIMIT ?`,
      );
      this.#lastSeq = this.#db.prepare("SELECT last_seq FROM users WHERE uid = ?");
      this.#devices = this.#db.prepare(
        "SELECT device, last_ack, seen_at FROM devices WHERE uid = ?",
      );
      // An ack sets only `last_ack`, a connect only `seen_at`: a column in the SET list has
      // its index rewritten even when its value stays (an ack 1.2-1.4x slower, measured).
      this.#ackDevice = this.#db.prepare(
        `INSERT INTO devices (uid, device, last_ack) VALUES (?, ?, ?)
         ON CONFLICT (uid, device) DO UPDATE SET last_ack = max(last_ack, excluded.last_ack)`,
      );
      this.#seeDevice = this.#db.prepare(
        `INSERT INTO devices (uid, device, seen_at) VALUES (?, ?, ?)
         ON CONFLICT (uid, device) DO UPDATE SET seen_at = max(seen_at, excluded.seen_at)`,
      );
      this.#subscribe = this.#db.prepare(
        "INSERT OR IGNORE INTO members (channel, uid) VALUES (?, ?)",
      );
      this.#unsubscribe = this.#db.prepare("DELETE FROM members WHERE channel = ? AND uid = ?");
      this.#members = this.#db.prepare("SELECT uid FROM members WHERE channel = ?");
      this.#channels = this.#db.prepare("SELECT channel FROM members WHERE uid = ?");
      this.#deleteExpired = this.#db.prepare(
        `DELETE FROM messages WHERE rowid IN (
           SELECT rowid FROM messages WHERE expires_at > 0 AND expires_at <= ? LIMIT ?)`,
      );
      this.#markGoneQuiet = this.#db.prepare(
        "UPDATE devices SET purged_ack = -1 WHERE seen_at >= ? AND seen_at < ?",
      );
      this.#usersToPurge = this.#db.prepare(
        "SELECT DISTINCT uid FROM devices WHERE last_ack > purged_ack LIMIT ?",
      );
      // Deletes the first ?3 messages of a user at or below its floor: the bound keeps one
      // user with a long acknowledged backlog from making one long transaction.
      this.#deleteAcked = this.#db.prepare(
        `DELETE FROM messages WHERE uid = ?1 AND seq <= (
           SELECT max(seq) FROM (
             SELECT seq FROM messages WHERE uid = ?1 AND seq <= ?2 ORDER BY seq LIMIT ?3))`,
      );
      this.#markPurged = this.#db.prepare("UPDATE devices SET purged_ack = last_ack WHERE uid = ?");
      this.#uids = this.#db.prepare(
        `SELECT uid FROM users UNION SELECT uid FROM devices UNION SELECT uid FROM members
         UNION SELECT DISTINCT uid FROM messages`,
      );
      this.#deleteMessages = this.#db.prepare("DELETE FROM messages WHERE uid = ?");
      this.#deleteMemberships = this.#db.prepare("DELETE FROM members WHERE uid = ?");
      this.#deleteUser = this.#db.prepare("DELETE FROM users WHERE uid = ?");
      this.#deleteDevices = this.#db.prepare("DELETE FROM devices WHERE uid = ?");
      this.#setBusMark = this.#db.prepare(
        "INSERT OR REPLACE INTO bus_mark (one, entry) VALUES (1, ?)",
      );
      this.#busMark = this.#db.prepare("SELECT entry FROM bus_mark");
      this.#lowestCursor = this.#db.prepare(
        "SELECT min(last_ack) AS floor FROM devices WHERE uid = ?",
      );
      this.#logCommit = this.#db.prepare("INSERT INTO log (entry) VALUES (?)");
      this.#readLog = this.#db.prepare("SELECT id, entry FROM log ORDER BY id");
      this.#deleteLog = this.#db.prepare("DELETE FROM log WHERE id <= ?");
      // What a crash left in the log (or a clean stop that could not fold it).
      for (
        const { id, entry } of this.#readLog.iterate() as Iterable<{ id: number; entry: string }>
      ) {
        const { messages, devices } = decodeCommit(entry);
        this.#log(id, 0, messages);
        this.#leaveUnwritten(devices);
      }
      this.#fold();
    } catch (error) {
      this.#db.close();
      throw unavailable(error);
    }
  }

  append(messages: readonly StoredMessage[], busMark?: string): Promise<void> {
    return this.#run(() => {
      if (messages.length === 0 && busMark === undefined) return;
      this.#commit(messages, () => {
        // In the copies' transaction: a crash leaves both or neither.
        if (busMark !== undefined) this.#setBusMark.run(busMark);
      });
    });
  }

  /**
   * Makes a commit of messages durable: one log row when logging (folded later, with the
   * device updates waiting for a write), otherwise written into the tables; `also` runs in
   * the same transaction.
   */
  #commit(messages: readonly StoredMessage[], also: () => void): void {
    if (!this.#logging) {
      this.#transaction(() => {
        this.#write(messages, [], false);
        also();
      });
      return;
    }
    const devices = this.#unlogged;
    const id = this.#transaction(() => {
      const { lastInsertRowid } = this.#logCommit.run(encodeCommit(messages, devices));
      also();
      return Number(lastInsertRowid);
    });
    this.#unlogged = [];
    this.#log(id, performance.now(), messages);
    // Past the mark the folds are not keeping up (recipients offline, nothing acked): each
    // commit then folds a chunk itself, so that appends slow down to what the tables take
    // rather than the log growing in memory. That fold may fail: the commit stands.
    if (this.#loggedMessages > FOLD_AT) {
      this.#run(() => this.#fold(Infinity, FOLD_CHUNK)).catch(() => {
        this.#foldFailed = true;
      });
    }
    this.#scheduleFold(FOLD_AFTER_MS);
  }

  /** Keeps a logged commit's messages until they are folded. */
  #log(id: number, at: number, messages: readonly StoredMessage[]): void {
    this.#logged.push({ id, at, messages });
    this.#loggedMessages += messages.length;
    for (const message of messages) {
      const list = this.#loggedOf.get(message.uid);
      if (list) list.push(message);
      else this.#loggedOf.set(message.uid, [message]);
    }
  }

  /** Keeps device updates until a fold writes them. */
  #leaveUnwritten(updates: readonly DeviceUpdate[]): void {
    for (const update of updates) {
      let devices = this.#unwritten.get(update.uid);
      if (!devices) this.#unwritten.set(update.uid, devices = new Map());
      // A fold's commits ack the same devices again and again: each row is written once.
      mergeDeviceUpdate(devices, update);
    }
  }

  #scheduleFold(delay: number): void {
    if (this.#foldTimer !== undefined) return;
    if (this.#logged.length === 0 && this.#unwritten.size === 0) return;
    this.#foldTimer = setTimeout(() => {
      this.#foldTimer = undefined;
      if (this.#db.isOpen) this.#foldDue();
    }, delay);
    this.#foldTimer.unref();
  }

  /**
   * Folds a chunk of the commits that are due (past their grace, or all past
   * {@linkcode FOLD_AT}), and comes back for the next chunk after the event loop's other work.
   * One that fails is tried again later, and by the next read, which fails with it while it
   * does (the readiness watch sees it there): the commits are durable in the log meanwhile.
   */
  #foldDue(): void {
    const before = () => this.#loggedMessages > FOLD_AT ? Infinity : graceEnd();
    try {
      this.#fold(before(), FOLD_CHUNK);
    } catch {
      this.#foldFailed = true;
      return this.#scheduleFold(FOLD_AFTER_MS);
    }
    const due = this.#logged.length > 0 && this.#logged[0].at < before();
    this.#scheduleFold(due ? 0 : FOLD_AFTER_MS);
  }

  /**
   * Folds the logged commits made before `before`, oldest first, up to `limit` messages (all
   * of them by default), into the tables in one transaction with the delete of their log
   * rows, and writes every device update not written yet: a cursor only moves forward, so the
   * copy of one in a log row left for later changes nothing when that row is folded.
   */
  #fold(before = Infinity, limit = Infinity): void {
    const logged = this.#logged;
    let taken = 0;
    let count = 0;
    while (taken < logged.length && logged[taken].at < before && (taken === 0 || count < limit)) {
      count += logged[taken++].messages.length;
    }
    if (taken === 0 && this.#unwritten.size === 0) return;
    const messages = taken === 1
      ? logged[0].messages
      : logged.slice(0, taken).flatMap((commit) => commit.messages);
    const devices = [...this.#unwritten.values()].flatMap((byDevice) => [...byDevice.values()]);
    const elided = this.#transaction(() => {
      const elided = this.#write(messages, devices, true);
      if (taken > 0) this.#deleteLog.run(logged[taken - 1].id);
      return elided;
    });
    this.#elided += elided;
    this.#logged = logged.slice(taken);
    this.#loggedMessages -= messages.length;
    // Each uid's folded messages are the oldest it had logged.
    for (const { uid } of messages) {
      const list = this.#loggedOf.get(uid)!;
      list.shift();
      if (list.length === 0) this.#loggedOf.delete(uid);
    }
    this.#unwritten.clear();
    // Written to the table now: no log row needs to carry them.
    this.#unlogged = [];
    this.#foldFailed = false;
  }

  /**
   * Writes messages and device updates into the tables (inside a transaction), the updates
   * first. With `elide`, a message at or below the lowest cursor of its uid's devices is not
   * written: every device known has it, so the next `compact` would delete it (that lowest
   * cursor is never above `compactionFloor`). Returns how many were not.
   */
  #write(
    messages: readonly StoredMessage[],
    devices: readonly DeviceUpdate[],
    elide: boolean,
  ): number {
    for (const { uid, device, lastAck, seenAt } of devices) {
      if (lastAck > 0) this.#ackDevice.run(uid, device, lastAck);
      if (seenAt > 0) this.#seeDevice.run(uid, device, seenAt);
    }
    const floors = new Map<string, number>();
    // The highest seq per uid: one users upsert per uid, not per message.
    const seqs = new Map<string, number>();
    let elided = 0;
    for (const m of messages) {
      if (m.seq > (seqs.get(m.uid) ?? 0)) seqs.set(m.uid, m.seq);
      if (elide) {
        let floor = floors.get(m.uid);
        if (floor === undefined) {
          const row = this.#lowestCursor.get(m.uid) as { floor: number | null };
          floors.set(m.uid, floor = row.floor ?? 0);
        }
        if (m.seq <= floor) {
          elided++;
          continue;
        }
      }
      this.#insertMessage.run(m.uid, m.seq, m.type, m.from, m.channel ?? null, m.body, m.expiresAt);
    }
    for (const [uid, high] of seqs) this.#raiseLastSeq.run(uid, high);
    return elided;
  }

  busMark(shard?: string): Promise<string | null> {
    if (shard !== undefined) return Promise.resolve(null);
    return this.#run(() => {
      const row = this.#busMark.get() as { entry: string } | undefined;
      return row?.entry ?? null;
    });
  }

  /** The tables' rows, then what the log holds of the uid: its newest messages. */
  readAfter(uid: string, afterSeq: number, limit: number, now: number): Promise<StoredMessage[]> {
    return this.#run(() => {
      if (this.#foldFailed) this.#fold();
      const rows = this.#readAfter.all(uid, afterSeq, now, limit) as unknown as MessageRow[];
      const found = rows.map((row) => {
        const message: StoredMessage = {
          uid,
          seq: row.seq,
          type: row.type,
          from: row.sender,
          body: row.body,
          expiresAt: row.expires_at,
        };
        if (row.channel !== null) message.channel = row.channel;
        return message;
      });
      for (const message of this.#loggedOf.get(uid) ?? []) {
        if (found.length === limit) break;
        const live = message.expiresAt === 0 || message.expiresAt > now;
        if (message.seq > afterSeq && live) found.push(message);
      }
      return found;
    });
  }

  /** The tables' state, raised by what the log and the unwritten updates hold of the uid. */
  userState(uid: string): Promise<UserState> {
    return this.#run(() => {
      if (this.#foldFailed) this.#fold();
      const row = this.#lastSeq.get(uid) as { last_seq: number } | undefined;
      const logged = this.#loggedOf.get(uid);
      const lastSeq = Math.max(row?.last_seq ?? 0, logged?.at(-1)?.seq ?? 0);
      const devices = this.#deviceStates(uid);
      for (const { device, lastAck, seenAt } of this.#unwritten.get(uid)?.values() ?? []) {
        const known = devices.get(device);
        devices.set(device, {
          lastAck: Math.max(known?.lastAck ?? 0, lastAck),
          seenAt: Math.max(known?.seenAt ?? 0, seenAt),
        });
      }
      return { lastSeq, devices };
    });
  }

  /**
   * Logging, the updates wait in memory for the next commit of messages or the next fold,
   * whichever comes first (within {@linkcode FOLD_AFTER_MS}): a crash before then loses
   * them, which costs a redelivery of what they acked, never a message. They then take no
   * transaction of their own: most commits of a busy shard are only acks.
   */
  updateDevices(updates: readonly DeviceUpdate[]): Promise<void> {
    return this.#run(() => {
      if (!this.#logging) return this.#transaction(() => void this.#write([], updates, false));
      for (const update of updates) this.#unlogged.push(update);
      this.#leaveUnwritten(updates);
      this.#scheduleFold(FOLD_AFTER_MS);
    });
  }

  #deviceStates(uid: string): Map<string, DeviceState> {
    const rows = this.#devices.all(uid) as { device: string; last_ack: number; seen_at: number }[];
    return new Map(rows.map((r) => [r.device, { lastAck: r.last_ack, seenAt: r.seen_at }]));
  }

  subscribe(channel: string, uid: string): Promise<void> {
    return this.#run(() => void this.#subscribe.run(channel, uid));
  }

  unsubscribe(channel: string, uid: string): Promise<void> {
    return this.#run(() => void this.#unsubscribe.run(channel, uid));
  }

  members(channel: string): Promise<string[]> {
    return this.#run(() => this.#members.all(channel).map((row) => row.uid as string));
  }

  channels(uid: string): Promise<string[]> {
    return this.#run(() => this.#channels.all(uid).map((row) => row.channel as string));
  }

  /**
   * Deletes expired, then acknowledged, messages in transactions of at most a few hundred
   * rows, yielding to the event loop between them so that a large backlog never stalls the
   * shard for long. Devices that went quiet since the last call have their uids visited once.
   */
  async compact(now: number, liveSince: number): Promise<number> {
    await this.#run(() => this.#fold());
    let removed = this.#elided;
    this.#elided = 0;
    if (liveSince > this.#quietBefore) {
      await this.#run(() => this.#markGoneQuiet.run(this.#quietBefore, liveSince));
      this.#quietBefore = liveSince;
    }
    for (;;) {
      const deleted = await this.#run(() =>
        Number(this.#deleteExpired.run(now, COMPACT_CHUNK).changes)
      );
      removed += deleted;
      if (deleted < COMPACT_CHUNK) break;
      await nextTask();
    }
    for (;;) {
      const { deleted, more } = await this.#run(() =>
        this.#transaction(() => this.#purgeAcked(liveSince))
      );
      removed += deleted;
      if (!more) break;
      await nextTask();
    }
    return removed;
  }

  /** Deletes up to {@linkcode COMPACT_CHUNK} acknowledged messages; says if any may be left. */
  #purgeAcked(liveSince: number): { deleted: number; more: boolean } {
    let budget = COMPACT_CHUNK;
    const users = this.#usersToPurge.all(COMPACT_CHUNK) as { uid: string }[];
    for (const { uid } of users) {
      const floor = compactionFloor(this.#deviceStates(uid).values(), liveSince);
      const deleted = Number(this.#deleteAcked.run(uid, floor, budget).changes);
      budget -= deleted;
      if (budget === 0) return { deleted: COMPACT_CHUNK, more: true };
      this.#markPurged.run(uid);
    }
    return { deleted: COMPACT_CHUNK - budget, more: users.length === COMPACT_CHUNK };
  }

  uids(): Promise<string[]> {
    return this.#run(() => {
      this.#fold();
      return this.#uids.all().map((row) => row.uid as string);
    });
  }

  /** One transaction for the whole batch: a uid is then either taken over whole or not. */
  importUsers(users: readonly HandedUser[]): Promise<void> {
    return this.#run(() => {
      this.#fold();
      this.#transaction(() => {
        for (const { uid, lastSeq, devices, messages, channels } of users) {
          this.#deleteMessages.run(uid);
          this.#deleteMemberships.run(uid);
          this.#write(messages, [], false);
          this.#raiseLastSeq.run(uid, lastSeq);
          for (const { device, lastAck, seenAt } of devices) {
            this.#ackDevice.run(uid, device, lastAck);
            this.#seeDevice.run(uid, device, seenAt);
          }
          for (const channel of channels) this.#subscribe.run(channel, uid);
        }
      });
    });
  }

  deleteUsers(uids: readonly string[]): Promise<void> {
    return this.#run(() => {
      this.#fold();
      this.#transaction(() => {
        for (const uid of uids) {
          this.#deleteMessages.run(uid);
          this.#deleteMemberships.run(uid);
          this.#deleteUser.run(uid);
          this.#deleteDevices.run(uid);
        }
      });
    });
  }

  /** Folds the log first; if that fails, what it holds is folded when the file next opens. */
  close(): Promise<void> {
    return this.#run(() => {
      if (!this.#db.isOpen) return;
      try {
        this.#fold();
      } finally {
        clearTimeout(this.#foldTimer);
        this.#foldTimer = undefined;
        this.#db.close();
      }
    });
  }

  /** Runs `body` as one write transaction; rolls back and rethrows if it throws. */
  #transaction<T>(body: () => T): T {
    // IMMEDIATE takes the write lock up front, so a busy sibling connection is waited for
    // here (busy_timeout) rather than failing a deferred transaction half way.
    this.#db.exec("BEGIN IMMEDIATE");
    try {
      const result = body();
      this.#db.exec("COMMIT");
      return result;
    } catch (error) {
      if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
      throw error;
    }
  }

  /** Runs a synchronous engine call, settling as a promise with engine errors mapped. */
  #run<T>(body: () => T): Promise<T> {
    try {
      return Promise.resolve(body());
    } catch (error) {
      return Promise.reject(isEngineError(error) ? unavailable(error) : error);
    }
  }
}

/**
 * Whether `error` comes from the engine or the file (busy, I/O, full disk, closed database)
 * rather than from the caller. A constraint failure (a seq stored twice) breaks the one-writer
 * contract: it is a bug to surface, not an outage to wait out.
 */
function isEngineError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const { code, errcode } = error as { code?: string; errcode?: number };
  if (code === "ERR_INVALID_STATE") return true; // used after close
  if (code !== "ERR_SQLITE_ERROR") return false;
  const SQLITE_CONSTRAINT = 19;
  if (errcode !== undefined) return (errcode & 0xff) !== SQLITE_CONSTRAINT;
  return !error.message.includes("constraint failed");
}

/**
 * Brings the schema of `db` to {@linkcode SCHEMA_VERSION} (run inside a transaction): a new
 * file gets it whole, a file of an earlier version is migrated without losing anything.
 */
function migrate(db: DatabaseSync): void {
  const { user_version: version } = db.prepare("PRAGMA user_version").get() as {
    user_version: number;
  };
  if (version === SCHEMA_VERSION) return;
  const legacy = db.prepare("SELECT 1 FROM sqlite_schema WHERE name = 'users'").get() !== undefined;
  db.exec(SCHEMA);
  if (legacy && version === 0) {
    db.prepare(MIGRATE_FROM_0).run(Date.now());
    db.exec(DROP_FROM_0);
  }
  db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
}

/**
 * A commit as its log row holds it: JSON, each run of messages alike but for uid and seq (a
 * channel message's copies) as one group, `[type, from, channel, body, expiresAt, uid, seq,
 * uid, seq, ...]`, so that a copy takes a dozen bytes.
 */
function encodeCommit(messages: readonly StoredMessage[], devices: readonly DeviceUpdate[]) {
  const m: (string | number | null)[][] = [];
  let group: (string | number | null)[] = [];
  let last: StoredMessage | undefined;
  for (const message of messages) {
    const { uid, seq, type, from, channel = null, body, expiresAt } = message;
    if (
      last === undefined || type !== last.type || from !== last.from ||
      channel !== (last.channel ?? null) || body !== last.body || expiresAt !== last.expiresAt
    ) {
      m.push(group = [type, from, channel, body, expiresAt]);
    }
    group.push(uid, seq);
    last = message;
  }
  const d = devices.map(({ uid, device, lastAck, seenAt }) => [uid, device, lastAck, seenAt]);
  return JSON.stringify({ m, d });
}

/** The commit of a log row (`encodeCommit`). */
function decodeCommit(entry: string): { messages: StoredMessage[]; devices: DeviceUpdate[] } {
  const into = { messages: [] as StoredMessage[], devices: [] as DeviceUpdate[] };
  const { m, d } = JSON.parse(entry) as {
    m: [StoredType, string, string | null, string, number, ...(string | number)[]][];
    d: [string, string, number, number][];
  };
  for (const [type, from, channel, body, expiresAt, ...copies] of m) {
    for (let i = 0; i < copies.length; i += 2) {
      const uid = copies[i] as string;
      const message: StoredMessage = {
        uid,
        seq: copies[i + 1] as number,
        type,
        from,
        body,
        expiresAt,
      };
      if (channel !== null) message.channel = channel;
      into.messages.push(message);
    }
  }
  for (const [uid, device, lastAck, seenAt] of d) {
    into.devices.push({ uid, device, lastAck, seenAt });
  }
  return into;
}

/** The end of the grace a fold leaves the newest commits (`FOLD_GRACE_MS`). */
function graceEnd(): number {
  return performance.now() - FOLD_GRACE_MS;
}

function unavailable(error: unknown): StorageUnavailableError {
  const reason = error instanceof Error ? error.message : String(error);
  return new StorageUnavailableError(`sqlite: ${reason}`, { cause: error });
}

function nextTask(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}
