/**
 * End to end: `/readyz` while a shard worker crashes and is restarted — `503` naming the
 * shard, `200` once it runs again — and `/metrics` keeps answering meanwhile.
 */

import assert from "node:assert/strict";
import { eventually, startDaemon } from "./harness.ts";

Deno.test("readyz: 503 naming a crashed shard until it is restarted; /metrics answers throughout", async () => {
  const daemon = await startDaemon(["--debug_api=true"]);
  try {
    assert.equal((await daemon.admin("/readyz")).status, 200);
    assert.equal((await daemon.admin("/debug/crash?shard=1", { method: "POST" })).status, 200);
    let during: Awaited<ReturnType<typeof daemon.admin>> | undefined;
    assert.ok(
      await eventually(async () => (during = await daemon.admin("/readyz")).status === 503, 5_000),
      "ready with a shard crashed",
    );
    assert.deepEqual(during!.body, { error: "not ready: shard-1 is not running" });
    const metrics = await fetch(`http://127.0.0.1:${daemon.adminPort}/metrics`);
    assert.equal(metrics.status, 200);
    assert.match(await metrics.text(), /^ipush_shards_up 1$/m);
    assert.ok(
      await eventually(async () => (await daemon.admin("/readyz")).status === 200, 10_000),
      `not ready after the restart:\n${daemon.log()}`,
    );
  } finally {
    assert.equal(await daemon.stop(), 0);
  }
});
