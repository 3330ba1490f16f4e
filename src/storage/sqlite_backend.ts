/**
 * `--storage=sqlite`, the embedded durable default, and where its data lives: one SQLite file
 * per shard, `shard-<k>.sqlite` under
 * `--data_dir` for the node's shard k, each holding the uids that shard owns. A shard keeps
 * its file to itself (`exclusive`), so no transaction of one shard ever waits for another's
 * lock, re-reads pages another wrote, or takes a file lock (measured on one `/pub` a message
 * against one file shared by two shards: 40 % less CPU a delivered message, and no
 * synchronous busy-handler sleeps on the shards' event loops).
 *
 * The uid → shard map depends on the node's shards, so a start with another `--workers`
 * than the files were homed for (each file records it), or on the single file of ipush
 * before this layout (`ipush.sqlite`), first moves every uid's rows (messages, its `last_seq`,
 * device cursors, memberships) into the file of the shard that now owns it, on the main
 * thread before any shard opens a file. Each move of a source file's uids to one target is
 * one transaction over both files, in rollback-journal mode for the move, so that it is
 * atomic across the two (SQLite's super-journal): a crash part way leaves every uid whole
 * in one file or the other, and the next start goes on from there. Only once every file is
 * homed does each record the new shard count (and drop its bus mark, `store.ts`); a file no
 * shard owns any more is then deleted.
 *
 * Every file is checked first ({@linkcode prepareSqliteFile}): an empty or damaged one stops
 * the start before anything is moved.
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import { type FlagValues, oneOf } from "../core/flag_spec.ts";
import { ShardMap } from "../core/shard_map.ts";
import { prepareSqliteFile, SqliteStore } from "./sqlite.ts";
import type { StoreBackend } from "./store.ts";

/** The file of ipush before one file per shard: moved into the shards' files at start. */
export const LEGACY_FILE = "ipush.sqlite";

/** The file of the node's shard `k` (0-based) under `dir`. */
export function shardFile(dir: string, k: number): string {
  return `${dir}/shard-${k}.sqlite`;
}

const SHARD_FILE = /^shard-(\d+)\.sqlite$/;

/** What re-homing did, for the log. */
export interface Homing {
  /** Files whose uids were looked at (0 when every file was already homed). */
  sources: number;
  /** Uids moved to another file. */
  moved: number;
}

/**
 * Readies the node's shard files under `dir` for the shards `shardIds` (their map ids, in
 * shard order): checks every file present, creates the missing ones, and re-homes uids if
 * the files were homed for another shard count.
 *
 * @throws {Error} naming a file that is empty or damaged, and what to do.
 */
export function prepareShardFiles(dir: string, shardIds: readonly string[]): Homing {
  const n = shardIds.length;
  const present = new Map<number, string>();
  let legacy: string | null = null;
  for (const entry of Deno.readDirSync(dir)) {
    const match = SHARD_FILE.exec(entry.name);
    if (match) present.set(Number(match[1]), `${dir}/${entry.name}`);
    else if (entry.name === LEGACY_FILE) legacy = `${dir}/${LEGACY_FILE}`;
  }
  for (const path of [...present.values(), ...(legacy ? [legacy] : [])]) prepareSqliteFile(path);
  const targets = Array.from({ length: n }, (_, k) => shardFile(dir, k));
  for (const path of targets) prepareSqliteFile(path);
  const extras = [...present].filter(([k]) => k >= n).map(([, path]) => path);
  const homed = legacy === null && extras.length === 0 &&
    targets.every((path) => homedFor(path) === n);
  if (homed) return { sources: 0, moved: 0 };

  const map = new ShardMap(shardIds.map((id) => ({ id, host: "", port: 0 })));
  let moved = 0;
  const sources = [...targets, ...extras, ...(legacy ? [legacy] : [])];
  for (const source of sources) moved += moveAway(source, targets, map);
  // A file's bus mark vouches for the copies of the uids it held: with uids moved between
  // files it vouches for nothing, and each file starts without one (a redelivered entry may
  // then store a copy twice, never none).
  for (const path of targets) recordHome(path, n);
  for (const path of [...extras, ...(legacy ? [legacy] : [])]) removeFile(path);
  return { sources: sources.length, moved };
}

/** The shard count `path` was homed for; 0 if it never was. */
function homedFor(path: string): number {
  const db = new DatabaseSync(path);
  try {
    const row = db.prepare("SELECT shards FROM home").get() as { shards: number } | undefined;
    return row?.shards ?? 0;
  } finally {
    db.close();
  }
}

function recordHome(path: string, shards: number): void {
  const db = new DatabaseSync(path);
  try {
    db.exec("BEGIN IMMEDIATE");
    db.exec("DELETE FROM home");
    db.prepare("INSERT INTO home (shards) VALUES (?)").run(shards);
    db.exec("DELETE FROM bus_mark");
    db.exec("COMMIT");
  } finally {
    db.close();
  }
}

/** Moves the uids of `source` that `map` homes in another of `targets` there; how many. */
function moveAway(source: string, targets: readonly string[], map: ShardMap): number {
  const db = new DatabaseSync(source);
  let moved = 0;
  try {
    // The WAL goes into the file first: a move is then one rollback-journal transaction.
    db.exec("PRAGMA journal_mode = DELETE");
    const uids = db.prepare(
      `SELECT uid FROM users UNION SELECT uid FROM devices UNION SELECT uid FROM members
       UNION SELECT DISTINCT uid FROM messages`,
    ).all() as { uid: string }[];
    const byTarget = new Map<string, string[]>();
    for (const { uid } of uids) {
      const home = targets[map.indexOf(uid)];
      if (home === source) continue;
      const list = byTarget.get(home) ?? [];
      list.push(uid);
      byTarget.set(home, list);
    }
    for (const [target, list] of byTarget) {
      moveUids(db, target, list);
      moved += list.length;
    }
    db.exec("PRAGMA journal_mode = WAL");
  } finally {
    db.close();
  }
  return moved;
}

/** One transaction over `db` and `target`: the rows of `uids` go from one to the other. */
function moveUids(db: DatabaseSync, target: string, uids: readonly string[]): void {
  db.prepare("ATTACH DATABASE ? AS target").run(target);
  try {
    db.exec("PRAGMA target.journal_mode = DELETE");
    db.exec("BEGIN IMMEDIATE");
    try {
      db.exec("CREATE TEMP TABLE IF NOT EXISTS moving (uid TEXT PRIMARY KEY) WITHOUT ROWID");
      db.exec("DELETE FROM moving");
      const add = db.prepare("INSERT INTO moving (uid) VALUES (?)");
      for (const uid of uids) add.run(uid);
      db.exec(MOVE);
      db.exec("COMMIT");
    } catch (error) {
      if (db.isTransaction) db.exec("ROLLBACK");
      throw error;
    }
    db.exec("PRAGMA target.journal_mode = WAL");
  } finally {
    db.exec("DETACH DATABASE target");
  }
}

/** Copies the moving uids' rows into `target` (keeping the larger cursor), then deletes them. */
const MOVE = `
  INSERT OR IGNORE INTO target.messages (uid, seq, type, sender, channel, body, expires_at)
    SELECT uid, seq, type, sender, channel, body, expires_at FROM main.messages
    WHERE uid IN (SELECT uid FROM moving);
  INSERT INTO target.users (uid, last_seq)
    SELECT uid, last_seq FROM main.users WHERE uid IN (SELECT uid FROM moving)
    ON CONFLICT (uid) DO UPDATE SET last_seq = max(last_seq, excluded.last_seq);
  INSERT INTO target.devices (uid, device, last_ack, seen_at, purged_ack)
    SELECT uid, device, last_ack, seen_at, purged_ack FROM main.devices
    WHERE uid IN (SELECT uid FROM moving)
    ON CONFLICT (uid, device) DO UPDATE SET last_ack = max(last_ack, excluded.last_ack),
      seen_at = max(seen_at, excluded.seen_at), purged_ack = min(purged_ack, excluded.purged_ack);
  INSERT OR IGNORE INTO target.members (channel, uid)
    SELECT channel, uid FROM main.members WHERE uid IN (SELECT uid FROM moving);
  DELETE FROM main.messages WHERE uid IN (SELECT uid FROM moving);
  DELETE FROM main.users WHERE uid IN (SELECT uid FROM moving);
  DELETE FROM main.devices WHERE uid IN (SELECT uid FROM moving);
  DELETE FROM main.members WHERE uid IN (SELECT uid FROM moving);
`;

function removeFile(path: string): void {
  for (const suffix of ["", "-wal", "-shm", "-journal"]) {
    try {
      Deno.removeSync(path + suffix);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
}

/** The flags of `--storage=sqlite`. */
const SQLITE_FLAGS = {
  sqlite_synchronous: oneOf(
    ["normal", "full"],
    "normal",
    "sqlite: normal survives a process crash; full (an fsync a commit) also power loss",
  ),
};

/** What the sqlite backend reads of the settings. */
type SqliteConfig = FlagValues<typeof SQLITE_FLAGS> & {
  data_dir: string;
  storage_timeout_ms: number;
};

/** `--storage=sqlite`: a file per shard under `--data_dir`, readied by the main thread. */
export const sqliteBackend: StoreBackend<typeof SQLITE_FLAGS, SqliteConfig> = {
  name: "sqlite",
  shared: false,
  flags: SQLITE_FLAGS,
  async prepare(config, shardIds, log) {
    await Deno.mkdir(config.data_dir, { recursive: true });
    const { sources, moved } = prepareShardFiles(config.data_dir, shardIds);
    if (moved > 0) {
      log(
        "info",
        `sqlite: homed ${moved} uids in ${shardIds.length} shard files (${sources} read)`,
      );
    }
  },
  open(config, shard) {
    return Promise.resolve(
      new SqliteStore(shardFile(config.data_dir, shard), {
        synchronous: config.sqlite_synchronous,
        busyTimeout: config.storage_timeout_ms,
        exclusive: true,
      }),
    );
  },
};
