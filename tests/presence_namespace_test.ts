/**
 * End to end: two clusters that share one Redis (each a single node, both named `n1`) keep
 * their presence apart by `--cluster_name`.
 */

import assert from "node:assert/strict";
import { startRedis } from "../scripts/redis.ts";
import { connected, settle } from "./client.ts";
import { type Daemon, eventually, startDaemon } from "./harness.ts";

Deno.test("presence: clusters sharing a Redis do not see each other's users", async () => {
  const redis = await startRedis();
  const daemons: Daemon[] = [];
  try {
    for (const name of ["red", "blue"]) {
      daemons.push(
        await startDaemon([
          "--node_id=n1",
          `--cluster_name=${name}`,
          `--redis_url=${redis.url}`,
        ]),
      );
    }
    const [red, blue] = daemons;
    const client = await connected(red.clientPort, "alice");
    await settle(client);
    const status = async (daemon: Daemon) =>
      ((await daemon.admin("/presence?uid=alice")).body.result as { status: string }).status;
    assert.ok(await eventually(async () => await status(red) === "online", 5_000));
    assert.equal(await status(blue), "offline", "alice is red's, not blue's");
    client.close();
  } finally {
    for (const daemon of daemons) await daemon.stop();
    await redis.stop();
  }
});
