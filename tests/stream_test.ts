/**
 * End to end: the duplex chunk stream (PROTOCOL.md §2) — framing, bad input, heartbeats.
 */

import assert from "node:assert/strict";
import { connected, frame } from "./client.ts";
import { startDaemon } from "./harness.ts";

Deno.test("stream: framing, bad input and heartbeats", async (t) => {
  const daemon = await startDaemon(["--max_frame_bytes=1024", "--heartbeat_timeout_sec=2"]);
  try {
    await t.step("a heartbeat is answered with a heartbeat, newline-terminated", async () => {
      const client = await connected(daemon.clientPort, "hb1");
      await client.writeRaw('7\r\n{"y":0}\r\n');
      // `8\r\n{"y":0}\n\r\n` (PROTOCOL.md §2): the client's parser checks the size.
      assert.equal(await client.nextChunk(), '{"y":0}\n');
      client.close();
    });

    await t.step("a frame split byte by byte is decoded", async () => {
      const client = await connected(daemon.clientPort, "split1");
      for (const byte of new TextEncoder().encode(frame('{"y":0}'))) {
        await client.writeRaw(new Uint8Array([byte]));
      }
      assert.deepEqual(await client.next(), { y: 0 });
      client.close();
    });

    await t.step("ten frames in one write are all decoded", async () => {
      const sender = await connected(daemon.clientPort, "burst-from");
      const receiver = await connected(daemon.clientPort, "burst-to");
      const frames = Array.from(
        { length: 10 },
        (_, i) => frame(JSON.stringify({ y: 3, t: "burst-to", b: `m${i}` })),
      );
      await sender.writeRaw(frames.join(""));
      for (let i = 0; i < 10; i++) {
        const message = await receiver.next();
        assert.equal(message?.b, `m${i}`);
        assert.equal(message?.s, i + 1);
      }
      sender.close();
      receiver.close();
    });

    const fatal: [string, string, string][] = [
      ["a frame over --max_frame_bytes", `${(2000).toString(16)}\r\n`, "frame too large"],
      ["a size that is not hex", "zz\r\n{}\r\n", "bad chunk size"],
      ["a body not followed by CRLF", '7\r\n{"y":0}XX', "missing CRLF after chunk"],
      ["a body that is not JSON", frame("{nope"), "bad json"],
      ["a JSON body that is not an object", frame("[1,2]"), "frame is not a json object"],
      ["an unknown type", frame('{"y":9}'), "unknown type"],
    ];
    for (const [what, bytes, reason] of fatal) {
      await t.step(`${what}: {"error":"${reason}"} and a close`, async () => {
        const client = await connected(daemon.clientPort, "bad1");
        await client.writeRaw(bytes);
        assert.deepEqual(await client.next(), { error: reason });
        assert.ok(await client.closedWithin(2000), "the server closes the stream");
        client.close();
      });
    }

    await t.step("a frame with a bad field is answered and the stream stays open", async () => {
      const client = await connected(daemon.clientPort, "bad2");
      await client.send({ y: 3, t: "not a uid!", b: "x" });
      assert.deepEqual(await client.next(), { error: "invalid t" });
      await client.send({ y: 5, s: 0 });
      assert.deepEqual(await client.next(), { error: "invalid s" });
      await client.send({ y: 5, s: 99 });
      assert.deepEqual(await client.next(), { error: "ack beyond last seq" });
      await client.send({ y: 0 });
      assert.deepEqual(await client.next(), { y: 0 });
      client.close();
    });

    await t.step("the last chunk from the client closes gracefully", async () => {
      const client = await connected(daemon.clientPort, "bye1");
      await client.writeRaw("0\r\n\r\n");
      assert.equal(await client.nextChunk(), null);
      assert.ok(await client.closedWithin(2000));
      client.close();
    });

    await t.step("a connection silent for --heartbeat_timeout_sec is closed", async () => {
      const client = await connected(daemon.clientPort, "silent1");
      const started = Date.now();
      assert.deepEqual(await client.next(5000), { error: "heartbeat timeout" });
      assert.ok(Date.now() - started >= 1900, "not before the timeout");
      assert.ok(await client.closedWithin(2000));
      client.close();
    });

    await t.step("the sender is the connection: a spoofed f is replaced", async () => {
      const sender = await connected(daemon.clientPort, "honest1");
      const receiver = await connected(daemon.clientPort, "victim1");
      await sender.send({ y: 3, f: "admin", t: "victim1", b: "trust me" });
      const message = await receiver.next();
      assert.equal(message?.f, "honest1");
      assert.equal(message?.b, "trust me");
      sender.close();
      receiver.close();
    });

    await t.step("/stats counts received frames by type and the errors", async () => {
      const stats = (await daemon.admin("/stats")).body.result as {
        recv_type: Record<string, number>;
        error_number: number;
      };
      assert.ok(stats.recv_type.hb >= 3);
      assert.ok(stats.recv_type.msg >= 11);
      assert.ok(stats.error_number >= 9);
    });
  } finally {
    assert.equal(await daemon.stop(), 0);
  }
});
