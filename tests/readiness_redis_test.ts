/**
 * End to end with a real Redis (scripts/redis.ts): `/readyz` of a cluster node goes `503`
 * while its Redis is killed and back to `200` when Redis is back; `/nodes` shows every member
 * and its health, and a member that dies as down.
 */

import assert from "node:assert/strict";
import { startRedis } from "../scripts/redis.ts";
import { type Daemon, eventually, startStaticCluster } from "./harness.ts";

interface Member {
  id: string;
  self: boolean;
  status: string;
  reasons: string[];
}

async function members(node: Daemon): Promise<Record<string, Member>> {
  const list = (await node.admin("/nodes")).body.result as Member[];
  return Object.fromEntries(list.map((member) => [member.id, member]));
}

Deno.test("readyz: a cluster node is 503 while Redis is killed and 200 when it is back; /nodes tells each member's health", async () => {
  let redis = await startRedis();
  const nodes: Daemon[] = [];
  try {
    nodes.push(
      ...await startStaticCluster(["n1", "n2"], () => [
        `--redis_url=${redis.url}`,
        "--presence_ttl_sec=3",
      ]),
    );
    const [n1, n2] = nodes;
    for (const node of nodes) {
      assert.deepEqual(await node.admin("/readyz"), { status: 200, body: { result: "ready" } });
    }
    // Each node's beat (every second here) carries its health to the others.
    assert.ok(
      await eventually(async () => (await members(n1)).n2?.status === "ready", 5_000),
      JSON.stringify(await members(n1)),
    );
    assert.equal((await members(n1)).n1.self, true);

    const port = redis.port;
    await redis.stop();
    for (const node of nodes) {
      let answer: Awaited<ReturnType<Daemon["admin"]>> | undefined;
      assert.ok(
        await eventually(async () => (answer = await node.admin("/readyz")).status === 503, 10_000),
        `still ready with Redis killed: ${JSON.stringify(answer)}`,
      );
      assert.deepEqual(answer!.body, { error: "not ready: redis unreachable" });
    }
    const blind = await members(n1);
    assert.equal(blind.n1.status, "not ready");
    assert.deepEqual(blind.n1.reasons, ["redis unreachable"]);
    assert.equal(blind.n2.status, "unknown", "nothing is known of the others without Redis");
    const metrics = await (await fetch(`http://127.0.0.1:${n1.adminPort}/metrics`)).text();
    assert.match(metrics, /^ipush_redis_up 0$/m);
    assert.match(metrics, /^ipush_redis_errors_total [1-9]\d*$/m);

    redis = await startRedis({ port });
    for (const node of nodes) {
      assert.ok(
        await eventually(async () => (await node.admin("/readyz")).status === 200, 15_000),
        `not ready after Redis came back:\n${node.log()}`,
      );
    }
    assert.ok(
      await eventually(async () => (await members(n1)).n2.status === "ready", 10_000),
      JSON.stringify(await members(n1)),
    );

    // A member that dies stops beating: down once its liveness key expires.
    await n2.stop("SIGKILL");
    let view: Record<string, Member> | undefined;
    assert.ok(
      await eventually(async () => (view = await members(n1)).n2.status === "down", 10_000),
      JSON.stringify(view),
    );
    assert.equal(view!.n1.status, "ready");
  } finally {
    for (const node of nodes) await node.stop("SIGKILL");
    await redis.stop();
  }
});
