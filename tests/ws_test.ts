/**
 * The WebSocket transport end to end (PROTOCOL.md §6), against the real daemon: the exact
 * 101, the 303 of a non-owner, masked, fragmented and oversized frames, ping, close, and
 * deliveries to Deno's own WebSocket client.
 */

import assert from "node:assert/strict";
import { type Daemon, delay, publish, startDaemon } from "./harness.ts";
import { clientFrame, upgradeRequest, WireClient } from "./web_client.ts";

const decoder = new TextDecoder();

/** The client port of the shard that owns `uid`. */
async function ownerPort(daemon: Daemon, uid: string): Promise<number> {
  const { body } = await daemon.admin(`/shard?uid=${uid}`);
  return Number(String(body.result).split(":")[1]);
}

/** A WebSocket opened on the wire, its 101 read. */
async function upgraded(daemon: Daemon, uid: string, query = ""): Promise<WireClient> {
  const client = await WireClient.open(await ownerPort(daemon, uid));
  await client.write(upgradeRequest(`/connect?uid=${uid}&password=pw${query}`));
  const head = await client.head();
  assert.equal(head.status, 101, head.text);
  return client;
}

/** The close frame's code and reason. */
function closeOf(payload: Uint8Array): [number, string] {
  return [(payload[0] << 8) | payload[1], decoder.decode(payload.subarray(2))];
}

Deno.test("ws: the upgrade, frames, ping and close on the real daemon", async (t) => {
  const daemon = await startDaemon(["--max_frame_bytes=1024"]);
  try {
    await t.step("the owner answers the exact 101 of RFC 6455's example key", async () => {
      const client = await WireClient.open(await ownerPort(daemon, "ws_a"));
      await client.write(upgradeRequest("/connect?uid=ws_a&password=pw"));
      const head = await client.head();
      assert.equal(
        head.text,
        "HTTP/1.1 101 Switching Protocols\r\n" +
          "Upgrade: websocket\r\n" +
          "Connection: Upgrade\r\n" +
          "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" +
          "\r\n",
      );
      client.close();
    });

    await t.step("the front door and a shard that does not own the uid answer 303", async () => {
      const owner = await ownerPort(daemon, "ws_a");
      const other = daemon.shardPorts.find((port) => port !== owner)!;
      for (const port of [daemon.clientPort, other]) {
        const client = await WireClient.open(port);
        await client.write(upgradeRequest("/connect?uid=ws_a&password=pw"));
        const head = await client.head();
        assert.equal(head.status, 303);
        assert.equal(
          head.headers.get("location"),
          `http://127.0.0.1:${owner}/connect?uid=ws_a&password=pw`,
        );
        assert.ok(await client.closedWithin(5000), "closed after the 303");
      }
    });

    await t.step("masked messages in one frame or fragmented, in any split", async () => {
      const client = await upgraded(daemon, "ws_b");
      const subscribe = clientFrame(1, '{"y":1,"c":"ws_room"}');
      const heartbeat = [
        clientFrame(1, '{"y"', { fin: false }),
        clientFrame(0, ":", { fin: false }),
        clientFrame(0, "0}"),
      ];
      const bytes = new Uint8Array([...subscribe, ...heartbeat.flatMap((f) => [...f])]);
      for (let at = 0; at < bytes.length; at += 3) await client.write(bytes.subarray(at, at + 3));
      const reply = await client.frame();
      assert.deepEqual(
        [reply?.fin, reply?.opcode, reply?.masked, decoder.decode(reply?.payload)],
        [true, 1, false, '{"y":0}'],
        "one unmasked text frame a message",
      );
      assert.deepEqual((await publish(daemon, "channel=ws_room", "é to all")).body, {
        result: "ok",
      });
      assert.deepEqual(await client.message(), {
        y: 4,
        f: "op",
        t: "ws_b",
        c: "ws_room",
        b: "é to all",
        s: 1,
      });
      client.close();
    });

    await t.step("a ping is answered with a pong carrying its payload", async () => {
      const client = await upgraded(daemon, "ws_c");
      await client.write(clientFrame(9, "are you there"));
      const pong = await client.frame();
      assert.deepEqual([pong?.opcode, decoder.decode(pong?.payload)], [10, "are you there"]);
      client.close();
    });

    await t.step("a close frame is echoed, and the server closes the TCP connection", async () => {
      const client = await upgraded(daemon, "ws_d");
      await client.write(
        clientFrame(8, new Uint8Array([0x0f, 0xa0, ...new TextEncoder().encode("bye")])),
      );
      const close = await client.frame();
      assert.equal(close?.opcode, 8);
      assert.deepEqual(closeOf(close!.payload), [4000, ""]);
      assert.ok(await client.closedWithin(5000));
    });

    await t.step("an unmasked frame closes with 1002", async () => {
      const client = await upgraded(daemon, "ws_e");
      await client.write(clientFrame(1, '{"y":0}', { mask: false }));
      assert.deepEqual(await client.message(), { error: "unmasked frame" });
      const close = await client.frame();
      assert.deepEqual(closeOf(close!.payload), [1002, "unmasked frame"]);
      assert.ok(await client.closedWithin(5000));
    });

    await t.step(
      "a message over --max_frame_bytes closes with 1009, before its payload",
      async () => {
        const client = await upgraded(daemon, "ws_f");
        const big = clientFrame(1, JSON.stringify({ y: 3, t: "ws_a", b: "x".repeat(1100) }));
        await client.write(big.subarray(0, 8)); // the header and mask only
        assert.deepEqual(await client.message(), { error: "frame too large" });
        assert.deepEqual(closeOf((await client.frame())!.payload), [1009, "frame too large"]);
        // So are fragments that add up to more.
        const other = await upgraded(daemon, "ws_f");
        await other.write(clientFrame(1, "x".repeat(600), { fin: false }));
        await other.write(clientFrame(0, "x".repeat(600)));
        assert.deepEqual(await other.message(), { error: "frame too large" });
        assert.deepEqual(closeOf((await other.frame())!.payload), [1009, "frame too large"]);
      },
    );

    await t.step("a binary frame closes with 1003; bad JSON with 1008 and its reason", async () => {
      const binary = await upgraded(daemon, "ws_g");
      await binary.write(clientFrame(2, new Uint8Array([1, 2, 3])));
      await binary.message();
      assert.deepEqual(closeOf((await binary.frame())!.payload)[0], 1003);
      const json = await upgraded(daemon, "ws_g");
      await json.write(clientFrame(1, "{nope"));
      assert.deepEqual(await json.message(), { error: "bad json" });
      assert.deepEqual(closeOf((await json.frame())!.payload), [1008, "bad json"]);
    });

    await t.step("a version other than 13 is 426 naming 13, before any upgrade", async () => {
      const client = await WireClient.open(await ownerPort(daemon, "ws_h"));
      await client.write(
        upgradeRequest("/connect?uid=ws_h&password=pw").replace("Version: 13", "Version: 8"),
      );
      const answer = await client.answer();
      assert.equal(answer.status, 426);
      assert.equal(answer.headers.get("sec-websocket-version"), "13");
      assert.deepEqual(JSON.parse(answer.body), { error: "websocket version 13 required" });
    });

    await t.step(
      "Deno's WebSocket client gets /pub deliveries and resumes after since",
      async () => {
        const port = await ownerPort(daemon, "ws_i");
        for (const body of ["one", "two", "three"]) await publish(daemon, "to=ws_i", body);
        const ws = new WebSocket(`ws://127.0.0.1:${port}/connect?uid=ws_i&password=pw&since=1`);
        const got: Record<string, unknown>[] = [];
        const four = Promise.withResolvers<void>();
        ws.onmessage = (event) => {
          got.push(JSON.parse(event.data));
          if (got.length === 3) four.resolve();
        };
        await new Promise((resolve) => ws.onopen = resolve);
        await delay(100);
        await publish(daemon, "to=ws_i", "four");
        await four.promise;
        const closed = new Promise<CloseEvent>((resolve) => ws.onclose = resolve);
        ws.close(1000);
        const event = await closed;
        assert.deepEqual(got.map((m) => [m.s, m.b]), [[2, "two"], [3, "three"], [4, "four"]]);
        assert.deepEqual([event.code, event.wasClean], [1000, true]);
      },
    );
  } finally {
    await daemon.stop();
  }
});
