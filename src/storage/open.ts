/**
 * Opens the store a configuration names, for one shard.
 *
 * @module
 */

import type { Config } from "../config/flags.ts";
import { CassandraStore, type ConsistencyName } from "./cassandra.ts";
import { MemoryStore } from "./memory.ts";
import { SqliteStore } from "./sqlite.ts";
import type { Store } from "./store.ts";

/** The file every shard of a node shares under `--storage=sqlite`. */
export const SQLITE_FILE = "ipush.sqlite";

/** The store for one shard. */
export async function openStore(config: Config): Promise<Store> {
  switch (config.storage) {
    case "memory":
      return new MemoryStore();
    case "sqlite":
      await Deno.mkdir(config.data_dir, { recursive: true });
      return new SqliteStore(`${config.data_dir}/${SQLITE_FILE}`, {
        synchronous: config.sqlite_synchronous,
        busyTimeout: config.storage_timeout_ms,
      });
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
