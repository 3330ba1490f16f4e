import assert from "node:assert/strict";
import { testAdmin } from "../testing/admin.ts";
import { type HealthChecks, healthEndpoints } from "./health.ts";

function serve(checks: HealthChecks, draining = false) {
  return testAdmin({ draining: () => draining, mounts: healthEndpoints(checks) });
}

async function get(handler: (request: Request) => Promise<Response>, path: string) {
  const response = await handler(new Request(`http://127.0.0.1:9001${path}`));
  return { status: response.status, body: await response.json(), headers: response.headers };
}

Deno.test("health: /readyz is 200 when nothing is wrong, 503 with every reason otherwise", async () => {
  let reasons: string[] = [];
  const handler = serve({
    check: () => Promise.resolve(reasons),
    members: () => Promise.resolve([]),
  });
  assert.deepEqual(await get(handler, "/healthz").then((r) => [r.status, r.body]), [200, {
    result: "ok",
  }]);
  assert.deepEqual((await get(handler, "/readyz")).body, { result: "ready" });
  reasons = ["shard-1 store: no host answered", "redis unreachable"];
  const refused = await get(handler, "/readyz");
  assert.equal(refused.status, 503);
  assert.deepEqual(refused.body, {
    error: "not ready: shard-1 store: no host answered; redis unreachable",
  });
  assert.equal(refused.headers.get("retry-after"), "1");
  assert.equal((await get(handler, "/healthz")).status, 200, "not ready is still alive");
});

Deno.test("health: /nodes answers the members; a draining node is not ready", async () => {
  const members = [{ id: "n1", status: "ready" }];
  const checks = { check: () => Promise.resolve([]), members: () => Promise.resolve(members) };
  assert.deepEqual((await get(serve(checks), "/nodes")).body, { result: members });
  const draining = await get(serve(checks, true), "/readyz");
  assert.deepEqual([draining.status, draining.body], [503, { error: "draining" }]);
});
