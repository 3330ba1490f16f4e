/**
 * The slow-consumer rule end to end, the same on the raw chunk stream and on a WebSocket
 * (`src/transport/socket_conn.ts`): a client that stops reading is dropped once more than
 * `--max_output_bytes` wait for it, and what it did not get stays stored for its next connect.
 */

import assert from "node:assert/strict";
import { RawClient } from "./client.ts";
import { type Daemon, eventually, startDaemon } from "./harness.ts";
import { upgradeRequest, WireClient } from "./web_client.ts";

type Stats = {
  error_number: number;
  transport: Record<string, { connection_number: number }>;
};

async function stats(daemon: Daemon): Promise<Stats> {
  return (await daemon.admin("/stats")).body.result as Stats;
}

/** `count` messages of about 60 KB to `uid`, by `/pub/batch`es of 20. */
async function flood(daemon: Daemon, uid: string, count: number) {
  const body = "x".repeat(60_000);
  const line = JSON.stringify({ to: uid, from: "op", body });
  for (let sent = 0; sent < count; sent += 20) {
    const answer = await daemon.admin("/pub/batch", {
      method: "POST",
      body: Array(20).fill(line).join("\n"),
    });
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.ok((answer.body.result as unknown[]).every((r) => r === "ok"));
  }
}

Deno.test("a client that stops reading is dropped past --max_output_bytes, over TCP and WebSocket", async () => {
  // Admission control is not what is tested: a loaded box must not turn the flood away.
  const daemon = await startDaemon([
    "--max_output_bytes=65536",
    "--max_frame_bytes=65536",
    "--overload_ms=30000",
  ]);
  try {
    const { client: raw } = await RawClient.connect(daemon.clientPort, "slow_tcp");
    const { body } = await daemon.admin("/shard?uid=slow_ws");
    const ws = await WireClient.open(Number(String(body.result).split(":")[1]));
    await ws.write(upgradeRequest("/connect?uid=slow_ws&password=pw"));
    assert.equal((await ws.head()).status, 101);
    const before = await stats(daemon);
    assert.deepEqual(
      [before.transport.tcp.connection_number, before.transport.ws.connection_number],
      [1, 1],
    );
    // Neither client reads: 12 MB each is more than the kernel's buffers take.
    await flood(daemon, "slow_tcp", 200);
    await flood(daemon, "slow_ws", 200);
    assert.ok(
      await eventually(async () => {
        const now = await stats(daemon);
        return now.transport.tcp.connection_number === 0 &&
          now.transport.ws.connection_number === 0;
      }, 20_000),
      "both dropped as too slow",
    );
    assert.ok((await stats(daemon)).error_number >= before.error_number + 2);
    assert.ok(await ws.closedWithin(20_000), "the WebSocket's socket is gone");
    assert.ok(await raw.closedWithin(20_000), "the raw socket is gone");
    for (const uid of ["slow_tcp", "slow_ws"]) {
      const listed = await daemon.admin(`/msg?uid=${uid}`);
      assert.equal(listed.status, 200, JSON.stringify(listed.body));
      assert.equal((listed.body.result as string[]).length, 200, `${uid}: nothing lost`);
    }
  } finally {
    await daemon.stop();
  }
});
