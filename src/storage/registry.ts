/**
 * The store backends, by the `--storage` name, and the flags every backend shares. A new
 * backend is one module exporting a {@linkcode StoreBackend} and its line below.
 *
 * @module
 */

import { type FlagSpecs, type FlagValues, oneOf, positive, text } from "../core/flag_spec.ts";
import { cassandraBackend } from "./cassandra.ts";
import { memoryBackend } from "./memory.ts";
import { sqliteBackend } from "./sqlite_backend.ts";
import type { StoreBackend } from "./store.ts";
import type { Log } from "../core/log.ts";

/** Every backend. */
const BACKENDS = [sqliteBackend, cassandraBackend, memoryBackend] as const;

/** The storage flags: which backend, what they share, and each backend's own. */
export const STORAGE_FLAGS = {
  storage: oneOf(
    ["memory", "sqlite", "cassandra"],
    "sqlite",
    "message store: sqlite (embedded, durable) | cassandra | memory (lost on restart)",
  ),
  data_dir: text("data", "directory for stored data"),
  storage_timeout_ms: positive(
    "3000",
    "a store request slower than this fails (and the send is refused with 503)",
  ),
  storage_queue_limit: positive(
    "100000",
    "messages waiting for storage before sends are refused with 503",
  ),
  ...sqliteBackend.flags,
  ...cassandraBackend.flags,
};

/** The settings a store is opened with. */
export type StorageConfig = FlagValues<typeof STORAGE_FLAGS>;

/** The backend `--storage` names. */
export function backendOf(config: StorageConfig): StoreBackend<FlagSpecs, StorageConfig> {
  const backend = BACKENDS.find((b) => b.name === config.storage);
  if (!backend) throw new Error(`unknown --storage=${config.storage}`);
  return backend as StoreBackend<FlagSpecs, StorageConfig>;
}

/** Readies the node's store on the main thread, before any shard opens it. */
export async function prepareStore(
  config: StorageConfig,
  shardIds: readonly string[],
  log: Log,
): Promise<void> {
  await backendOf(config).prepare?.(config, shardIds, log);
}
