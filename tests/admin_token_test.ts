/**
 * End to end: `--admin_token` (PROTOCOL.md §8) — every admin route, `/cluster/ops` included,
 * answers 401 without the bearer token and works with it; a daemon whose admin API others can
 * reach refuses to start without one.
 */

import assert from "node:assert/strict";
import { connected } from "./client.ts";
import { startDaemon } from "./harness.ts";

const TOKEN = "s3cret-admin-token";

/** Every admin path, with a request that is valid once authorized. */
const ROUTES: [string, RequestInit][] = [
  ["/pub?to=alice&from=op", { method: "POST", body: "hello" }],
  ["/pub/batch", { method: "POST", body: '{"to":"alice","from":"op","body":"x"}\n' }],
  ["/sub?uid=alice&cid=c1", {}],
  ["/unsub?uid=alice&cid=c1", {}],
  ["/msg?uid=alice", {}],
  ["/shard?uid=alice", {}],
  ["/stats", {}],
  ["/presence?uid=alice", {}],
  ["/debug/crash?shard=9", { method: "POST" }],
  ["/cluster/ops", { method: "POST", body: "[]" }],
  ["/no/such/route", {}],
];

Deno.test("admin token: 401 without it on every route, /cluster/ops included", async () => {
  const daemon = await startDaemon([], { adminToken: TOKEN });
  const alice = await connected(daemon.clientPort, "alice");
  try {
    for (
      const authorization of [null, "Bearer wrong", `Basic ${TOKEN}`, TOKEN, `Bearer ${TOKEN}x`]
    ) {
      for (const [path, init] of ROUTES) {
        const headers: Record<string, string> = authorization === null ? {} : { authorization };
        const response = await fetch(`http://127.0.0.1:${daemon.adminPort}${path}`, {
          ...init,
          headers,
        });
        assert.equal(response.status, 401, `${path} with ${authorization}`);
        assert.equal(response.headers.get("www-authenticate"), "Bearer");
        assert.deepEqual(await response.json(), { error: "unauthorized" });
      }
    }
    assert.deepEqual((await daemon.admin("/msg?uid=alice")).body, { result: [] }, "nothing ran");
    // With the token each route does its work (or refuses for its own reasons).
    const answers = [];
    for (const [path, init] of ROUTES) answers.push((await daemon.admin(path, init)).status);
    assert.deepEqual(answers, [200, 200, 200, 200, 200, 200, 200, 503, 404, 200, 404]);
    assert.equal((await alice.next())?.b, "hello", "the /pub reached alice");
    const stats = (await daemon.admin("/stats")).body.result as { request: Record<string, number> };
    assert.equal(stats.request.Unauthorized, ROUTES.length * 5);
  } finally {
    alice.close();
    assert.equal(await daemon.stop(), 0);
  }
});

Deno.test("admin token: a non-loopback --admin_host without one refuses to start, and says why", async () => {
  await assert.rejects(
    startDaemon(["--admin_host=0.0.0.0"]),
    /exited \(1\)[\s\S]*--admin_host=0\.0\.0\.0 is reachable from other machines: give --admin_token/,
  );
  await assert.rejects(
    startDaemon([], { adminToken: "two words" }),
    /--admin_token must be visible ASCII without white space/,
  );
  // With a token it starts, and still asks for it.
  const daemon = await startDaemon(["--admin_host=0.0.0.0"], { adminToken: TOKEN });
  try {
    assert.equal((await daemon.admin("/stats")).status, 200);
    const anonymous = await fetch(`http://127.0.0.1:${daemon.adminPort}/stats`);
    assert.equal(anonymous.status, 401);
    await anonymous.body?.cancel();
  } finally {
    assert.equal(await daemon.stop(), 0);
  }
});
