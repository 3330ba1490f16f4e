/**
 * Opens the store a configuration names.
 *
 * @module
 */

import type { Config } from "../config/flags.ts";
import { MemoryStore } from "./memory.ts";
import type { Store } from "./store.ts";

/** The store for one shard. */
export function openStore(config: Config): Promise<Store> {
  switch (config.storage) {
    case "memory":
      return Promise.resolve(new MemoryStore());
    default:
      return Promise.reject(new Error(`--storage=${config.storage} is not available yet`));
  }
}
