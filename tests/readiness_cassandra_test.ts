/**
 * End to end with a real Cassandra (scripts/cassandra.ts): `/readyz` goes `503`, naming the
 * store, while Cassandra is stopped, and back to `200` once it is back, with no message sent
 * meanwhile (an idle shard probes its store).
 */

import assert from "node:assert/strict";
import cassandra from "cassandra-driver";
import { startCassandra } from "../scripts/cassandra.ts";
import { applySchema } from "../src/storage/cassandra_schema.ts";
import { eventually, startDaemon } from "./harness.ts";

// At module level: the JVM outlives single tests, not the file.
const node = await startCassandra();
const DRIVER_TEST = { sanitizeResources: false, sanitizeOps: false };

Deno.test({
  name: "readyz: 503 naming the store while Cassandra is stopped, 200 again after",
  ...DRIVER_TEST,
  async fn() {
    const client = new cassandra.Client({
      contactPoints: [node.contactPoint],
      localDataCenter: node.localDataCenter,
    });
    try {
      await applySchema(client, { keyspace: "readiness" });
    } finally {
      await client.shutdown();
    }
    const daemon = await startDaemon([
      "--storage=cassandra",
      `--cassandra_contact_points=${node.contactPoint}`,
      `--cassandra_local_dc=${node.localDataCenter}`,
      "--cassandra_keyspace=readiness",
      "--cassandra_consistency=ONE",
      "--storage_timeout_ms=2000",
    ]);
    const readyz = () => daemon.admin("/readyz");
    try {
      assert.deepEqual(await readyz(), { status: 200, body: { result: "ready" } });

      await node.pause();
      let during: Awaited<ReturnType<typeof readyz>> | undefined;
      assert.ok(
        await eventually(async () => (during = await readyz()).status === 503, 20_000),
        `still ready with Cassandra stopped: ${JSON.stringify(during)}`,
      );
      assert.match(String(during!.body.error), /^not ready: shard-\d store: /);
      const metrics = await (await fetch(`http://127.0.0.1:${daemon.adminPort}/metrics`)).text();
      assert.match(metrics, /^ipush_store_up\{shard="\d"\} 0$/m);
      assert.deepEqual(await daemon.admin("/healthz"), { status: 200, body: { result: "ok" } });

      await node.resume();
      let after: Awaited<ReturnType<typeof readyz>> | undefined;
      assert.ok(
        await eventually(async () => (after = await readyz()).status === 200, 60_000),
        `not ready again after Cassandra came back: ${JSON.stringify(after)}`,
      );
      assert.deepEqual(after!.body, { result: "ready" });
    } finally {
      assert.equal(await daemon.stop(), 0);
    }
  },
});

Deno.test("stop Cassandra", DRIVER_TEST, () => node.stop());
