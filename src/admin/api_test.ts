import assert from "node:assert/strict";
import { ServiceError } from "../core/errors.ts";
import type { ChannelRequest, UnicastRequest } from "../core/requests.ts";
import { testAdmin } from "../testing/admin.ts";
import { Admission } from "./admission.ts";
import type { AdminOptions, AdminRoutes } from "./api.ts";

/** Routes that record what reaches them; `fail` makes every publish fail with it. */
function fakeRoutes(fail?: ServiceError) {
  const published: (UnicastRequest | ChannelRequest)[] = [];
  let seq = 0;
  const routes: AdminRoutes = {
    publish: (request) => {
      if (fail) return Promise.reject(fail);
      published.push(request);
      return Promise.resolve({ s: ++seq, online: 1 });
    },
    publishMany: (_uid, requests) =>
      Promise.resolve(requests.map((request) => {
        if (fail) return { error: fail.message, status: fail.status };
        published.push(request);
        return { s: ++seq, online: 0 };
      })),
    publishChannel: (request) => (
      published.push(request), Promise.resolve({ recipients: 3, online: 2 })
    ),
    subscribe: () => Promise.resolve(),
    unsubscribe: () => Promise.resolve(),
    offline: () => Promise.resolve(['{"b":"x","f":"op","s":1,"t":"u1","y":3}\n']),
    shardOf: () => ({ id: "n/0", host: "", port: 9010 }),
    userPresence: () => Promise.reject(new ServiceError("presence needs --redis_url", 503)),
    channelPresence: () => Promise.resolve([]),
  };
  return { routes, published };
}

function handler(routes: AdminRoutes, extra: Partial<AdminOptions> = {}) {
  return testAdmin({ routes, ...extra });
}

async function call(
  serve: (request: Request) => Promise<Response>,
  path: string,
  init?: RequestInit,
): Promise<{ status: number; body: unknown; headers: Headers }> {
  const response = await serve(new Request(`http://127.0.0.1:9001${path}`, init));
  return { status: response.status, body: await response.json(), headers: response.headers };
}

Deno.test("admin: /pub checks its query and body, then publishes the body as a JSON string", async () => {
  const { routes, published } = fakeRoutes();
  const serve = handler(routes);
  assert.deepEqual(
    (await call(serve, "/pub?to=u1&from=op&ttl=60", { method: "POST", body: 'say "hi"' })).body,
    { result: "ok" },
  );
  assert.deepEqual(published, [{
    to: "u1",
    from: "op",
    body: '"say \\"hi\\""',
    ttlSec: 60,
    volatile: false,
  }]);
  const refusals: [string, string][] = [
    ["/pub?from=op", "give exactly one of to, channel"],
    ["/pub?to=u1&channel=c&from=op", "give exactly one of to, channel"],
    ["/pub?to=bad%20uid&from=op", "invalid to"],
    ["/pub?to=u1", "missing from"],
    ["/pub?to=u1&from=op&ttl=-1", "invalid ttl"],
    ["/pub?to=u1&from=op&volatile=yes", "invalid volatile"],
  ];
  for (const [path, error] of refusals) {
    assert.deepEqual(await call(serve, path, { method: "POST", body: "x" }).then((a) => a.body), {
      error,
    });
  }
  const big = await call(serve, "/pub?to=u1&from=op", { method: "POST", body: "x".repeat(65) });
  assert.deepEqual([big.status, big.body], [413, { error: "body over 64 bytes" }]);
});

Deno.test("admin: unknown paths, wrong methods and a bad Host are refused as JSON", async () => {
  const serve = handler(fakeRoutes().routes);
  assert.deepEqual((await call(serve, "/nope")).body, { error: "not found" });
  const wrong = await call(serve, "/pub?to=u1&from=op");
  assert.deepEqual([wrong.status, wrong.body], [405, { error: "method not allowed" }]);
  const response = await serve(
    new Request("http://127.0.0.1:9001/stats", { headers: { host: "h/msg?uid=victim#" } }),
  );
  assert.deepEqual([response.status, await response.json()], [400, {
    error: "invalid host header",
  }]);
});

Deno.test("admin: a route's ServiceError keeps its status; 503s carry Retry-After", async () => {
  const serve = handler(fakeRoutes(new ServiceError("storage busy", 503)).routes);
  const answer = await call(serve, "/pub?to=u1&from=op", { method: "POST", body: "x" });
  assert.deepEqual([answer.status, answer.body], [503, { error: "storage busy" }]);
  assert.equal(answer.headers.get("retry-after"), "1");
  // A batch the store refused whole is an HTTP 503 too.
  const batch = await call(serve, "/pub/batch", {
    method: "POST",
    body: '{"to":"u1","from":"op","body":"a"}\n{"to":"u2","from":"op","body":"b"}',
  });
  assert.deepEqual([batch.status, batch.body], [503, { error: "storage busy" }]);
});

Deno.test("admin: receipt=1 answers the s and the devices online; lines ask with receipt", async () => {
  const serve = handler(fakeRoutes().routes);
  assert.deepEqual(
    (await call(serve, "/pub?to=u1&from=op&receipt=1", { method: "POST", body: "x" })).body,
    { result: { s: 1, online: 1 } },
  );
  assert.deepEqual(
    (await call(serve, "/pub?channel=c1&from=op&receipt=1", { method: "POST", body: "x" })).body,
    { result: { recipients: 3, online: 2 } },
  );
  assert.deepEqual(
    (await call(serve, "/pub?to=u1&from=op&receipt=yes", { method: "POST", body: "x" })).body,
    { error: "invalid receipt" },
  );
  const batch = await call(serve, "/pub/batch", {
    method: "POST",
    body:
      '{"to":"u1","from":"op","body":"a","receipt":true}\n{"to":"u1","from":"op","body":"b"}\n' +
      '{"channel":"c1","from":"op","body":"c","receipt":true}\n{"to":"u1","from":"op","body":"d","receipt":1}',
  });
  assert.deepEqual(batch.body, {
    result: [{ s: 2, online: 0 }, "ok", { recipients: 3, online: 2 }, {
      error: "invalid receipt",
      status: 400,
    }],
  });
});

Deno.test("admin: /pub/batch answers a line each; a bad line does not stop the others", async () => {
  const { routes, published } = fakeRoutes();
  const answer = await call(handler(routes), "/pub/batch", {
    method: "POST",
    body: '{"to":"u1","from":"op","body":"a"}\nnot json\n\n{"to":"u2","from":"op"}\n' +
      '{"channel":"c1","from":"op","body":"c"}',
  });
  assert.deepEqual(answer.body, {
    result: [
      "ok",
      { error: "bad json", status: 400 },
      { error: "missing body", status: 400 },
      "ok",
    ],
  });
  assert.equal(published.length, 2);
});

Deno.test("admin: work past the in-flight limit is refused with 503 overloaded", async () => {
  let release!: () => void;
  const { routes } = fakeRoutes();
  const held = new Promise<void>((resolve) => release = resolve);
  const serve = handler(
    { ...routes, publish: async () => (await held, { s: 1, online: 0 }) },
    { admission: new Admission({ targetMs: 10_000, maxInFlight: 1 }) },
  );
  const first = call(serve, "/pub?to=u1&from=op", { method: "POST", body: "x" });
  await new Promise((resolve) => setTimeout(resolve));
  const second = await call(serve, "/pub?to=u1&from=op", { method: "POST", body: "x" });
  assert.deepEqual([second.status, second.body], [503, { error: "overloaded" }]);
  assert.equal(second.headers.get("retry-after"), "1");
  // Not work: answered whatever the load.
  assert.equal((await call(serve, "/shard?uid=u1")).status, 200);
  release();
  assert.equal((await first).status, 200);
});

Deno.test("admin: a mounted endpoint is served, and a handler may answer any Response", async () => {
  const serve = handler(fakeRoutes().routes, {
    mounts: {
      "/raw": {
        name: "Raw",
        methods: ["GET"],
        handle: () => Promise.resolve(new Response("# text", { status: 200 })),
      },
      "/value": { name: "Value", methods: ["GET"], handle: () => Promise.resolve([1, 2]) },
    },
  });
  const raw = await serve(new Request("http://127.0.0.1:9001/raw"));
  assert.equal(await raw.text(), "# text");
  assert.deepEqual((await call(serve, "/value")).body, { result: [1, 2] });
});

Deno.test("admin: with --admin_token every path needs the bearer token, else 401", async () => {
  const { routes, published } = fakeRoutes();
  const mounted = { name: "Mounted", methods: ["POST"], handle: () => Promise.resolve("ran") };
  const serve = handler(routes, { adminToken: "t0ken", mounts: { "/cluster/ops": mounted } });
  const requests: [string, RequestInit][] = [
    ["/pub?to=u1&from=op", { method: "POST", body: "x" }],
    ["/sub?uid=u1&cid=c1", {}],
    ["/stats", {}],
    ["/shard?uid=u1", {}],
    ["/cluster/ops", { method: "POST", body: "[]" }],
    ["/no/such/path", {}],
  ];
  for (
    const authorization of [undefined, "Bearer wrong", "Bearer t0ken2", "Basic t0ken", "t0ken"]
  ) {
    for (const [path, init] of requests) {
      const headers = authorization ? { authorization } : undefined;
      const answer = await call(serve, path, { ...init, headers });
      assert.equal(answer.status, 401, `${path} with ${authorization}`);
      assert.deepEqual(answer.body, { error: "unauthorized" });
      assert.equal(answer.headers.get("www-authenticate"), "Bearer");
    }
  }
  assert.deepEqual(published, [], "nothing ran");
  for (const authorization of ["Bearer t0ken", "bearer t0ken"]) {
    const ok = await call(serve, "/pub?to=u1&from=op", {
      method: "POST",
      body: "x",
      headers: { authorization },
    });
    assert.equal(ok.status, 200, authorization);
    const ops = await call(serve, "/cluster/ops", { method: "POST", headers: { authorization } });
    assert.deepEqual(ops.body, { result: "ran" });
  }
  assert.equal(published.length, 2);
});
