import assert from "node:assert/strict";
import type { ChannelAccess } from "../core/access.ts";
import { verdictOf } from "../testing/auth.ts";
import { HttpBackend, type HttpBackendOptions } from "./http.ts";

/** A real HTTP auth backend on loopback that records what it is asked. */
function backend(answer: (url: URL) => Response | Promise<Response>) {
  const asked: string[] = [];
  const connections = new Set<number>();
  let inFlight = 0;
  let maxInFlight = 0;
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (request, info) => {
      const url = new URL(request.url);
      asked.push(`${url.pathname}?${url.searchParams}`);
      connections.add((info.remoteAddr as Deno.NetAddr).port);
      maxInFlight = Math.max(maxInFlight, ++inFlight);
      try {
        return await answer(url);
      } finally {
        inFlight--;
      }
    },
  );
  return {
    url: `http://127.0.0.1:${server.addr.port}/auth`,
    asked,
    connections,
    maxInFlight: () => maxInFlight,
    stop: () => server.shutdown(),
  };
}

function authenticator(url: string, options: Partial<HttpBackendOptions> = {}) {
  return new HttpBackend({
    url,
    cacheMs: 60_000,
    timeoutMs: 1000,
    maxInFlight: 8,
    log: () => {},
    ...options,
  });
}

const allowUser = (uid: string) => (url: URL) =>
  new Response(url.searchParams.get("uid") === uid ? "allow" : "deny");

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

Deno.test("HttpBackend: /user is asked with the attempt; only 200 allow allows", async () => {
  const answers: Record<string, Response | (() => Response)> = {};
  const server = backend((url) => {
    const answer = answers[url.searchParams.get("uid")!];
    return typeof answer === "function" ? answer() : answer;
  });
  try {
    answers.alice = new Response("allow\n");
    answers.bob = new Response("deny");
    answers.carol = new Response("allow", { status: 403 });
    answers.dave = new Response("allowed");
    answers.erin = new Response("allow", { status: 201 });
    const auth = authenticator(server.url);
    const verdict = await verdictOf(auth.authenticate, "alice", "p&w d", {
      device: "phone",
      transport: "ws",
    });
    assert.deepEqual(verdict, { allow: auth }, "an allow carries the backend as channel access");
    assert.deepEqual(server.asked, [
      "/auth/user?uid=alice&password=p%26w+d&device=phone&transport=ws",
    ]);
    for (const uid of ["bob", "carol", "dave", "erin"]) {
      assert.equal(await verdictOf(auth.authenticate, uid, "pw"), "deny", uid);
    }
  } finally {
    await server.stop();
  }
});

Deno.test("HttpBackend: a 5xx, a refused connection or a timeout is unavailable, never cached", async () => {
  let status = 502;
  const server = backend(async (url) => {
    if (url.searchParams.get("uid") === "slow") await delay(500);
    return new Response("allow", { status });
  });
  const auth = authenticator(server.url, { timeoutMs: 100 });
  try {
    assert.equal(await verdictOf(auth.authenticate, "u1", "pw"), "unavailable");
    status = 200;
    assert.deepEqual(await verdictOf(auth.authenticate, "u1", "pw"), { allow: auth });
    const started = Date.now();
    assert.equal(await verdictOf(auth.authenticate, "slow", "pw"), "unavailable");
    assert.ok(Date.now() - started < 400, `gave up after ${Date.now() - started} ms`);
  } finally {
    await server.stop();
  }
  assert.equal(await verdictOf(auth.authenticate, "u2", "pw"), "unavailable");
  // An allow it still has is not asked again.
  assert.deepEqual(await verdictOf(auth.authenticate, "u1", "pw"), { allow: auth });
});

Deno.test("HttpBackend: ten connects of a uid within the cache time ask once, on one connection", async () => {
  const server = backend(allowUser("alice"));
  try {
    const auth = authenticator(server.url);
    for (let i = 0; i < 10; i++) {
      assert.deepEqual(await verdictOf(auth.authenticate, "alice", "pw"), { allow: auth });
    }
    assert.equal(server.asked.length, 1);
    // Another password, device or transport is another question.
    await verdictOf(auth.authenticate, "alice", "other");
    await verdictOf(auth.authenticate, "alice", "pw", { device: "tablet" });
    await verdictOf(auth.authenticate, "alice", "pw", { transport: "sse" });
    assert.equal(server.asked.length, 4);
    // Denials are cached too, and asked questions in a row share a kept-alive connection.
    for (let i = 0; i < 5; i++) await verdictOf(auth.authenticate, "mallory", "guess");
    assert.equal(server.asked.length, 5);
    assert.equal(server.connections.size, 1, "keep-alive");
  } finally {
    await server.stop();
  }
});

Deno.test("HttpBackend: answers expire after the cache time; 0 caches nothing", async () => {
  const server = backend(allowUser("alice"));
  try {
    const short = authenticator(server.url, { cacheMs: 100 });
    await verdictOf(short.authenticate, "alice", "pw");
    await verdictOf(short.authenticate, "bob", "pw");
    await verdictOf(short.authenticate, "alice", "pw");
    await verdictOf(short.authenticate, "bob", "pw");
    assert.equal(server.asked.length, 2);
    await delay(150);
    await verdictOf(short.authenticate, "alice", "pw");
    await verdictOf(short.authenticate, "bob", "pw");
    assert.equal(server.asked.length, 4);
    const none = authenticator(server.url, { cacheMs: 0 });
    for (let i = 0; i < 3; i++) await verdictOf(none.authenticate, "alice", "pw");
    assert.equal(server.asked.length, 7);
  } finally {
    await server.stop();
  }
});

Deno.test("HttpBackend: the same question in flight is asked once; others wait for a slot", async () => {
  const server = backend(async (url) => {
    await delay(50);
    return allowUser("alice")(url);
  });
  try {
    const auth = authenticator(server.url, { maxInFlight: 2, timeoutMs: 2000 });
    const same = await Promise.all(
      Array.from({ length: 10 }, () => verdictOf(auth.authenticate, "alice", "pw")),
    );
    assert.ok(same.every((verdict) => typeof verdict === "object"));
    assert.equal(server.asked.length, 1);
    const distinct = await Promise.all(
      Array.from({ length: 10 }, (_, i) => verdictOf(auth.authenticate, `u${i}`, "pw")),
    );
    assert.ok(distinct.every((verdict) => verdict === "deny"));
    assert.equal(server.asked.length, 11);
    assert.equal(server.maxInFlight(), 2);
  } finally {
    await server.stop();
  }
});

Deno.test("HttpBackend: with the backend slow, a question waiting for a slot gives up unasked", async () => {
  const server = backend(async () => {
    await delay(400);
    return new Response("allow");
  });
  try {
    const auth = authenticator(server.url, { maxInFlight: 1, timeoutMs: 150 });
    const started = Date.now();
    const verdicts = await Promise.all(
      Array.from({ length: 20 }, (_, i) => verdictOf(auth.authenticate, `u${i}`, "pw")),
    );
    const took = Date.now() - started;
    assert.ok(verdicts.every((verdict) => verdict === "unavailable"));
    assert.ok(took < 400, `all answered in ${took} ms`);
    assert.equal(server.asked.length, 1, "the others gave up waiting: none piled up");
  } finally {
    await server.stop();
  }
});

Deno.test("HttpBackend: /channel decides a channel action, cached", async () => {
  const server = backend((url) =>
    new Response(url.searchParams.get("cid")!.startsWith("team-") ? "allow" : "deny")
  );
  try {
    const access: ChannelAccess = authenticator(server.url);
    assert.equal(await access.check("alice", "team-1", "subscribe"), "allow");
    assert.equal(await access.check("alice", "other", "publish"), "forbidden");
    assert.equal(access.check("alice", "team-1", "subscribe"), "allow", "cached: no promise");
    assert.equal(access.check("alice", "other", "publish"), "forbidden");
    assert.deepEqual(server.asked, [
      "/auth/channel?uid=alice&cid=team-1&action=subscribe",
      "/auth/channel?uid=alice&cid=other&action=publish",
    ]);
  } finally {
    await server.stop();
  }
  const gone: ChannelAccess = authenticator(server.url);
  assert.equal(await gone.check("alice", "team-1", "publish"), "unavailable");
});
