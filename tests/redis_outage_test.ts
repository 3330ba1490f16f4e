/**
 * End to end: a cluster node whose Redis is gone says so in its log, and still stops on
 * SIGTERM within a bound instead of waiting on Redis forever.
 */

import assert from "node:assert/strict";
import { startRedis } from "../scripts/redis.ts";
import { connected } from "./client.ts";
import { type Daemon, eventually, startStaticCluster } from "./harness.ts";

/** How long a SIGTERM may take with Redis gone: each Redis close waits at most 2 s. */
const STOP_BOUND_MS = 8_000;

Deno.test("redis outage: the node logs it, and SIGTERM still ends it in bounded time", async () => {
  const redis = await startRedis();
  const nodes: Daemon[] = [];
  try {
    nodes.push(
      ...await startStaticCluster(["n1", "n2"], () => [
        `--redis_url=${redis.url}`,
        "--presence_ttl_sec=2",
      ]),
    );
    const client = await connected(nodes[0].clientPort, "during-outage");
    await redis.stop();
    assert.ok(
      await eventually(() => /Redis at \S+ is unreachable/.test(nodes[0].log()), 5_000),
      `no word of the outage in the log:\n${nodes[0].log()}`,
    );
    client.close();
    for (const node of nodes) {
      const started = Date.now();
      const stopped = await Promise.race([
        node.stop("SIGTERM"),
        new Promise<"hung">((resolve) => setTimeout(resolve, STOP_BOUND_MS, "hung")),
      ]);
      assert.equal(stopped, 0, `SIGTERM with Redis gone: ${stopped}\n${node.log()}`);
      assert.ok(Date.now() - started < STOP_BOUND_MS);
      assert.match(node.log(), /stopped/);
    }
  } finally {
    for (const node of nodes) await node.stop("SIGKILL");
    await redis.stop();
  }
});
