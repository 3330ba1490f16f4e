/**
 * The node's Redis connections (cluster bus and presence). Redis can go away at any time, and
 * a node must neither hang on it nor pile up work for it: commands fail at once while it is
 * unreachable (no offline queue, which would hold every command of an outage in memory and
 * never let a shutdown finish), the log says when it becomes unreachable, every
 * {@linkcode DOWN_LOG_MS} while it stays so, and when it is back, and closing never waits
 * more than {@linkcode CLOSE_TIMEOUT_MS}.
 *
 * @module
 */

import { createClient } from "redis";
import type { Log } from "../core/log.ts";

/** A connected Redis client, as node-redis makes it. */
export type RedisClient = ReturnType<typeof createClient>;

/** How often an outage is logged again while it lasts. */
const DOWN_LOG_MS = 30_000;
/** The longest a client's close may wait for its replies before it is dropped. */
export const CLOSE_TIMEOUT_MS = 2_000;
/** How long a connection attempt may take. */
const CONNECT_TIMEOUT_MS = 3_000;

/** Connects to Redis, failing with a message that names the URL. */
export async function connectRedis(url: string, log: Log): Promise<RedisClient> {
  const client = createClient({
    url,
    disableOfflineQueue: true,
    socket: {
      connectTimeout: CONNECT_TIMEOUT_MS,
      // Retry forever, at most a second apart: an outage ends when Redis is back.
      reconnectStrategy: (retries: number) => Math.min(50 * 2 ** retries, 1000),
    },
  });
  watchConnection(client, url, log);
  try {
    await client.connect();
  } catch (error) {
    client.destroy();
    throw new Error(`cannot reach Redis at ${url}: ${(error as Error).message}`);
  }
  return client;
}

/** A second connection to the same server (a subscriber), watched the same way. */
export async function duplicateRedis(
  client: RedisClient,
  url: string,
  log: Log,
): Promise<RedisClient> {
  const copy = client.duplicate();
  watchConnection(copy, url, log);
  await copy.connect();
  return copy;
}

/** Closes `client` gracefully if Redis answers within the timeout, and drops it otherwise. */
export async function closeRedis(client: RedisClient): Promise<void> {
  if (!client.isOpen) return;
  if (client.isReady) {
    const closed = client.close().then(() => true, () => false);
    const timeout = new Promise<false>((resolve) => setTimeout(resolve, CLOSE_TIMEOUT_MS, false));
    if (await Promise.race([closed, timeout])) return;
  }
  client.destroy();
}

/** Logs the connection going down (and again while it stays down) and coming back. */
function watchConnection(client: RedisClient, url: string, log: Log): void {
  let downSince = 0;
  let lastLogged = 0;
  client.on("error", (error: Error) => {
    const now = Date.now();
    if (downSince === 0) downSince = now;
    if (now - lastLogged < DOWN_LOG_MS) return;
    lastLogged = now;
    const seconds = Math.round((now - downSince) / 1000);
    log("warn", `Redis at ${url} is unreachable (${seconds} s): ${error.message}`, {
      redis_url: url,
      down_sec: seconds,
    });
  });
  client.on("ready", () => {
    if (downSince === 0) return;
    const seconds = Math.round((Date.now() - downSince) / 1000);
    log("info", `Redis at ${url} is reachable again after ${seconds} s`, {
      redis_url: url,
      down_sec: seconds,
    });
    downSince = 0;
    lastLogged = 0;
  });
}
