/**
 * End to end: a client cannot hold the daemon's descriptors. Sockets the server refuses,
 * redirects or closes are let go within a bound even while the client keeps its side open,
 * the counters forget them at once, and a process that ran out of descriptors takes clients
 * again once the flood is gone (it refuses `503 server full` instead of running out).
 */

import assert from "node:assert/strict";
import { frame, RawClient } from "./client.ts";
import { delay, eventually, openDescriptors, startDaemon } from "./harness.ts";

/** How long a socket the server is done with may keep its descriptor (2 s linger + sweeps). */
const RELEASE_BOUND_MS = 6_000;

/** Opens `count` connections to `port`, writing `head` on each; they are never closed here. */
async function flood(port: number, count: number, head: string): Promise<Deno.Conn[]> {
  const bytes = new TextEncoder().encode(head);
  const conns: Deno.Conn[] = [];
  for (let i = 0; i < count; i += 50) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(50, count - i) }, async () => {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port });
        await conn.write(bytes);
        return conn;
      }),
    );
    conns.push(...batch);
  }
  return conns;
}

function closeAll(conns: Deno.Conn[]): void {
  for (const conn of conns) {
    try {
      conn.close();
    } catch { /* reset by the server */ }
  }
}

async function connections(
  daemon: { admin: (path: string) => Promise<{ body: Record<string, unknown> }> },
) {
  const stats = (await daemon.admin("/stats")).body.result as { user: Record<string, number> };
  return { connections: stats.user.connection_number, users: stats.user.user_number };
}

Deno.test("descriptors: the server lets go of what it refused, redirected or closed", async () => {
  const daemon = await startDaemon(["--heartbeat_timeout_sec=1"]);
  const held: Deno.Conn[] = [];
  try {
    await delay(500);
    const baseline = openDescriptors(daemon.pid);
    const owner = String((await daemon.admin("/shard?uid=holder")).body.result);
    const shardPort = Number(owner.split(":").at(-1));
    // Refused, redirected, closed for a bad frame, closed for silence: 200 of each.
    held.push(...await flood(daemon.clientPort, 200, "JUNK\r\n\r\n"));
    held.push(
      ...await flood(daemon.clientPort, 200, "GET /connect?uid=holder&password=p HTTP/1.1\r\n\r\n"),
    );
    held.push(
      ...await flood(
        shardPort,
        200,
        "GET /connect?uid=holder&password=p HTTP/1.1\r\n\r\n" + "zz\r\n",
      ),
    );
    held.push(
      ...await flood(shardPort, 200, "GET /connect?uid=holder&password=p HTTP/1.1\r\n\r\n"),
    );
    assert.ok(
      await eventually(async () => {
        const { connections: open, users } = await connections(daemon);
        return open === 0 && users === 0;
      }, RELEASE_BOUND_MS),
      `sessions the server closed still count: ${JSON.stringify(await connections(daemon))}`,
    );
    assert.ok(
      await eventually(() => openDescriptors(daemon.pid) <= baseline + 10, RELEASE_BOUND_MS),
      `${openDescriptors(daemon.pid)} descriptors held, ${baseline} before the 800 clients`,
    );
    // The clients still hold their sides: each reads the server's close.
    const reader = new Uint8Array(4096);
    for (const conn of held.slice(0, 5)) {
      while ((await conn.read(reader)) !== null) { /* the answer, then EOF */ }
    }
  } finally {
    closeAll(held);
    await daemon.stop();
  }
});

Deno.test("descriptors: after a flood past the descriptor limit, every new client connects", async () => {
  // One address stands for the many clients of a flood here: its own limits are not the test.
  const daemon = await startDaemon([
    "--heartbeat_timeout_sec=60",
    "--max_handshakes_per_address=100000",
    "--max_heads_per_sec_per_address=100000",
  ], { nofile: 2048 });
  try {
    await delay(500);
    const baseline = openDescriptors(daemon.pid);
    const conns = await flood(daemon.clientPort, 2100, "JUNK\r\n\r\n");
    // What each got: the 400 for its junk, or 503 server full once the process was at its limit.
    const answers = await Promise.all(conns.map(async (conn) => {
      const buffer = new Uint8Array(512);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<"none">((resolve) => timer = setTimeout(resolve, 5000, "none"));
      try {
        const n = await Promise.race([conn.read(buffer), timeout]);
        if (n === "none") return "none";
        return n === null ? "closed" : new TextDecoder().decode(buffer.subarray(0, n));
      } catch {
        return "reset";
      } finally {
        clearTimeout(timer);
      }
    }));
    const full = answers.filter((a) => a.includes('{"error":"server full"}')).length;
    const refused = answers.filter((a) => a.includes('{"error":"malformed request"}')).length;
    await delay(2000);
    closeAll(conns);
    assert.ok(
      await eventually(() => openDescriptors(daemon.pid) <= baseline + 10, RELEASE_BOUND_MS),
      `${openDescriptors(daemon.pid)} descriptors held after the flood, ${baseline} before`,
    );
    // Every listener still accepts: 30 clients (three accept queues each) all connect.
    const clients = [];
    for (let i = 0; i < 30; i++) {
      const { client, answer } = await RawClient.connect(daemon.clientPort, `after${i}`);
      assert.equal(answer.status, 200, `client ${i} after the flood: ${answer.head}`);
      clients.push(client);
    }
    assert.deepEqual(await connections(daemon), { connections: 30, users: 30 });
    for (const client of clients) {
      await client.writeRaw(frame('{"y":0}'));
      assert.deepEqual(await client.next(), { y: 0 });
      client.close();
    }
    assert.ok(
      await eventually(
        async () => JSON.stringify(await connections(daemon)) === '{"connections":0,"users":0}',
        RELEASE_BOUND_MS,
      ),
    );
    // The flood was told why: malformed, or server full past the limit (or reset with it).
    assert.ok(full > 0, "the process reached its socket limit");
    assert.equal(
      refused + full + answers.filter((a) => a === "reset" || a === "closed").length,
      2100,
    );
  } finally {
    await daemon.stop();
  }
});
