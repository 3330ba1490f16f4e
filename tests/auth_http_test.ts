/**
 * End to end: `--auth=http` (PROTOCOL.md §8) against a real HTTP auth backend the test
 * serves on loopback — allow, deny, channel permissions, the cache, and a backend that is slow
 * or gone (503 for new connects, connected sessions carry on, no pile-up at the backend).
 */

import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { RawClient, settle } from "./client.ts";
import { publish, startDaemon } from "./harness.ts";

const TIMEOUT_MS = 300;
const MAX_INFLIGHT = 3;
const WORKERS = 2;

/**
 * The backend (`node:http`, which tells when a client gives up on a request): `pw-<uid>` is
 * each uid's password; channels `team-*` are allowed. While slow, it holds every request
 * until ipush gives up on it (and closes its connection), or until it stops.
 */
async function authBackend() {
  const asked: URL[] = [];
  const connections = new Set<number>();
  let inFlight = 0;
  let maxInFlight = 0;
  let slow = false;
  const held = new Set<() => void>();
  const server = http.createServer((request, response) => {
    const url = new URL(request.url!, "http://backend");
    asked.push(url);
    connections.add(request.socket.remotePort!);
    maxInFlight = Math.max(maxInFlight, ++inFlight);
    response.on("close", () => inFlight--);
    const params = url.searchParams;
    const allowed = url.pathname === "/auth/user"
      ? params.get("password") === `pw-${params.get("uid")}`
      : url.pathname === "/auth/channel" && params.get("cid")!.startsWith("team-");
    const answer = () => response.end(allowed ? "allow" : "deny");
    if (!slow) return answer();
    held.add(answer);
    response.on("close", () => held.delete(answer));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  let stopped: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}/auth`,
    asked,
    connections,
    /** Questions about `uid`'s connects so far. */
    userCalls: (uid: string) =>
      asked.filter((url) => url.pathname === "/auth/user" && url.searchParams.get("uid") === uid)
        .length,
    /** Most requests ipush held open at once (since `beSlow`). */
    maxInFlight: () => maxInFlight,
    beSlow() {
      slow = true;
      maxInFlight = inFlight;
    },
    /** Answers what it holds and stops serving (once). */
    stop(): Promise<void> {
      for (const answer of held) answer();
      stopped ??= new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return stopped;
    },
  };
}

/** Connects `uid` with its password, following the 303; answers what the owner said. */
async function connectAs(port: number, uid: string, password = `pw-${uid}`) {
  const { client, answer, redirected } = await RawClient.connect(port, uid, password);
  return { client, answer, redirected };
}

Deno.test("auth http: a real backend decides connects and channels; its outage is 503", async (t) => {
  const backend = await authBackend();
  const daemon = await startDaemon([
    "--auth=http",
    `--auth_http_url=${backend.url}`,
    `--auth_http_timeout_ms=${TIMEOUT_MS}`,
    `--auth_http_max_inflight=${MAX_INFLIGHT}`,
    "--auth_cache_sec=60",
    `--workers=${WORKERS}`,
  ]);
  const open: RawClient[] = [];
  try {
    await t.step("allow: the owner asks /user with the attempt, once, and lets it in", async () => {
      const { client, answer, redirected } = await connectAs(daemon.clientPort, "alice");
      open.push(client);
      assert.equal(answer.status, 200);
      assert.ok(redirected, "the front door redirected without asking");
      assert.deepEqual(backend.asked.map((url) => `${url.pathname}?${url.searchParams}`), [
        "/auth/user?uid=alice&password=pw-alice&device=&transport=tcp",
      ]);
    });

    await t.step("deny: 400 invalid password, after one 303", async () => {
      const { client, answer, redirected } = await connectAs(daemon.clientPort, "bob", "guess");
      assert.ok(redirected);
      assert.equal(answer.status, 400);
      assert.equal(answer.rest, '{"error":"invalid password"}');
      assert.ok(await client.closedWithin(2000));
      client.close();
    });

    await t.step("a channel denied is forbidden and the stream stays open", async () => {
      const [alice] = open;
      const { client: listener } = await connectAs(daemon.clientPort, "listener");
      open.push(listener);
      assert.deepEqual((await daemon.admin("/sub?uid=listener&cid=other")).body, { result: "ok" });
      assert.deepEqual((await daemon.admin("/sub?uid=listener&cid=team-1")).body, { result: "ok" });
      // Each answer is awaited before the next frame: a check is a backend round trip, so
      // that one frame's work is done (alice's subscribe stored) before the next begins.
      await alice.send({ y: 1, c: "team-1" });
      await alice.send({ y: 1, c: "other" });
      assert.deepEqual(await alice.next(), { error: "forbidden" });
      await alice.send({ y: 4, c: "other", b: "not for you" });
      assert.deepEqual(await alice.next(), { error: "forbidden" });
      await alice.send({ y: 4, c: "team-1", b: "hello team" });
      const hello = { y: 4, f: "alice", c: "team-1", b: "hello team", s: 1 };
      assert.deepEqual(await listener.next(), { ...hello, t: "listener" });
      assert.deepEqual(await alice.next(), { ...hello, t: "alice" }, "she is in team-1 herself");
      assert.deepEqual(await settle(alice), []);
      assert.deepEqual(await settle(listener), [], "nothing from the forbidden channel");
      const channels = backend.asked.filter((url) => url.pathname === "/auth/channel")
        .map((url) => `${url.searchParams}`);
      assert.deepEqual(channels.sort(), [
        "uid=alice&cid=other&action=publish",
        "uid=alice&cid=other&action=subscribe",
        "uid=alice&cid=team-1&action=publish",
        "uid=alice&cid=team-1&action=subscribe",
      ]);
      // The admin API's /sub needs no permission: alice is now in "other" too.
      assert.deepEqual((await daemon.admin("/sub?uid=alice&cid=other")).body, { result: "ok" });
      assert.deepEqual((await publish(daemon, "channel=other", "from the back end")).body, {
        result: "ok",
      });
      assert.equal((await alice.next())?.b, "from the back end");
    });

    await t.step("the cache: ten connects of a uid within the TTL, one backend call", async () => {
      for (let i = 0; i < 10; i++) {
        const { client, answer } = await connectAs(daemon.clientPort, "carol");
        assert.equal(answer.status, 200);
        client.close();
      }
      assert.equal(backend.userCalls("carol"), 1);
      assert.ok(
        backend.connections.size <= WORKERS * MAX_INFLIGHT,
        `kept alive: ${backend.connections.size} connections for ${backend.asked.length} requests`,
      );
    });

    await t.step("the backend slow: 503 auth unavailable in time, no pile-up", async () => {
      backend.beSlow();
      const started = Date.now();
      const attempts = await Promise.all(
        Array.from({ length: 20 }, (_, i) => connectAs(daemon.clientPort, `slow${i}`)),
      );
      const took = Date.now() - started;
      for (const { client, answer } of attempts) {
        assert.equal(answer.status, 503);
        assert.equal(answer.rest, '{"error":"auth unavailable"}');
        client.close();
      }
      assert.ok(took < TIMEOUT_MS + 2000, `answered within ${took} ms`);
      assert.ok(
        backend.maxInFlight() <= WORKERS * MAX_INFLIGHT,
        `${backend.maxInFlight()} requests at the backend at once`,
      );
      const stats = (await daemon.admin("/stats")).body.result as Record<string, number>;
      assert.equal(stats.auth_unavailable_number, 20);
    });

    await t.step("the backend stopped: new connects 503, live sessions unaffected", async () => {
      await backend.stop();
      const { client, answer } = await connectAs(daemon.clientPort, "dave");
      assert.equal(answer.status, 503);
      assert.equal(answer.rest, '{"error":"auth unavailable"}');
      client.close();
      const [alice] = open;
      for (const body of ["still here", "and here"]) {
        assert.deepEqual((await publish(daemon, "to=alice", body)).body, { result: "ok" });
        assert.equal((await alice.next())?.b, body);
      }
      // A channel action asked of the gone backend is unavailable; the stream stays.
      await alice.send({ y: 1, c: "team-2" });
      assert.deepEqual(await alice.next(), { error: "auth unavailable" });
      assert.deepEqual(await settle(alice), []);
    });
  } finally {
    for (const client of open) client.close();
    await backend.stop();
    assert.equal(await daemon.stop(), 0);
  }
});
