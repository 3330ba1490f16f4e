/**
 * Opens the store a configuration names, for one shard.
 *
 * @module
 */

import type { Config } from "../config/flags.ts";
import { CassandraStore, type ConsistencyName } from "./cassandra.ts";
import { MemoryStore } from "./memory.ts";
import { prepareSqliteFile, SqliteStore } from "./sqlite.ts";
import { StorageUnavailableError, type Store } from "./store.ts";

/** Opening attempts: the shards of a node open (and may create) one file at the same time. */
const SQLITE_OPEN_ATTEMPTS = 20;

/** The file every shard of a node shares under `--storage=sqlite`. */
export const SQLITE_FILE = "ipush.sqlite";

/**
 * Readies the node's store before its shards open it, on the main thread: the sqlite file is
 * created, or checked and refused when it is empty or damaged (once, not by every shard at
 * the same moment).
 */
export async function prepareStore(config: Config): Promise<void> {
  if (config.storage !== "sqlite") return;
  await Deno.mkdir(config.data_dir, { recursive: true });
  prepareSqliteFile(`${config.data_dir}/${SQLITE_FILE}`);
}

/** The store for one shard. */
export async function openStore(config: Config): Promise<Store> {
  switch (config.storage) {
    case "memory":
      return new MemoryStore();
    case "sqlite":
      await Deno.mkdir(config.data_dir, { recursive: true });
      return await openSqlite(config);
    case "cassandra":
      return await CassandraStore.open({
        contactPoints: config.cassandra_contact_points.split(",").map((p) => p.trim()),
        localDataCenter: config.cassandra_local_dc,
        keyspace: config.cassandra_keyspace,
        consistency: config.cassandra_consistency as ConsistencyName,
        requestTimeoutMs: config.storage_timeout_ms,
      });
  }
}

/**
 * Opens the node's sqlite file. Switching a new file to WAL mode takes a lock that the busy
 * timeout does not cover, so a shard that meets another shard's open retries.
 */
async function openSqlite(config: Config): Promise<SqliteStore> {
  for (let attempt = 1;; attempt++) {
    try {
      return new SqliteStore(`${config.data_dir}/${SQLITE_FILE}`, {
        synchronous: config.sqlite_synchronous,
        busyTimeout: config.storage_timeout_ms,
      });
    } catch (error) {
      if (!(error instanceof StorageUnavailableError) || attempt === SQLITE_OPEN_ATTEMPTS) {
        throw error;
      }
      await new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * 80));
    }
  }
}
