/**
 * End to end: the admin API holds every request to its rules, whatever its headers say and
 * however its body arrives — the Host header cannot reroute a request, `/cluster/ops` checks
 * node-to-node input as `/pub` checks a back end's, and a body over the limit is refused
 * while it streams in.
 */

import assert from "node:assert/strict";
import { connected, RawClient, settle } from "./client.ts";
import { startDaemon } from "./harness.ts";

/** Sends one raw HTTP request to the admin port; answers the status and the parsed body. */
async function raw(
  port: number,
  head: string,
  body = "",
): Promise<{ status: number; body: unknown }> {
  const client = await RawClient.open(port);
  try {
    const answer = await client.request(head + body);
    const length = Number(answer.headers.get("content-length"));
    let text = answer.rest;
    while (new TextEncoder().encode(text).length < length) {
      const more = await client.nextChunk(2000).catch(() => null);
      if (more === null) break;
      text += more;
    }
    assert.match(answer.headers.get("content-type") ?? "", /^application\/json/, answer.head);
    return { status: answer.status, body: JSON.parse(text) };
  } finally {
    client.close();
  }
}

Deno.test("admin: requests are held to the rules whatever their headers and bodies", async (t) => {
  const daemon = await startDaemon(["--max_frame_bytes=4096"]);
  const victim = await connected(daemon.clientPort, "victim");
  try {
    await daemon.admin("/pub?to=victim&from=op", { method: "POST", body: "first" });
    assert.equal((await settle(victim)).length, 1);
    const listed = async () => (await daemon.admin("/msg?uid=victim")).body.result;
    const before = await listed();

    await t.step("a Host header that is not host[:port] is a 400, never a reroute", async () => {
      for (
        const [method, host] of [
          ["GET", "a b"],
          ["GET", "h/msg?uid=victim#"],
          ["POST", "h/pub?to=victim&from=forged#"],
          ["GET", "h?x"],
          ["GET", "user@h"],
          ["GET", "h%20"],
        ]
      ) {
        const answer = await raw(
          daemon.adminPort,
          `${method} /stats HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 1\r\n` +
            "Connection: close\r\n\r\n",
          "x",
        );
        assert.deepEqual(answer, { status: 400, body: { error: "invalid host header" } }, host);
      }
      assert.deepEqual(await listed(), before, "nothing was stored for victim");
      assert.deepEqual(await settle(victim), [], "nothing reached victim");
      // Ordinary hosts still work.
      for (const host of ["127.0.0.1:9001", "localhost", "[::1]:80", "ipush.example.com"]) {
        const answer = await raw(
          daemon.adminPort,
          `GET /shard?uid=victim HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`,
        );
        assert.equal(answer.status, 200, host);
      }
    });

    await t.step("/cluster/ops checks every op as /pub checks a back end's request", async () => {
      const request = { to: "victim", from: "op", body: '"x"', ttlSec: 0, volatile: false };
      const cases: [unknown, string][] = [
        [{ op: "publish", request: { ...request, from: 'not a name"' } }, "invalid from"],
        [{ op: "publish", request: { ...request, body: '1,"y":99,"x":{}' } }, "body"],
        [{ op: "publish", request: { ...request, body: "}{" } }, "body"],
        [{ op: "publish", request: { ...request, body: '"a"\n' } }, "body"],
        [{ op: "publish", request: { ...request, body: 7 } }, "invalid body"],
        [{ op: "publish", request: { ...request, to: "bad uid" } }, "invalid to"],
        [{ op: "publish", request: { ...request, ttlSec: -1 } }, "invalid ttlSec"],
        [{ op: "publish", request: { ...request, volatile: "yes" } }, "invalid volatile"],
        [{ op: "publish" }, "request is not a json object"],
        [{ op: "publish_many", uid: "victim", requests: 5 }, "invalid requests"],
        [{ op: "publish_many", uid: "victim", requests: [{ ...request, body: "}{" }] }, "body"],
        [{ op: "subscribe", uid: "victim", channel: "a b" }, "invalid channel"],
        [{ op: "offline", uid: "victim", limit: "all" }, "invalid limit"],
        [{ op: "crash" }, "unknown op"],
        ["publish", "op is not a json object"],
      ];
      for (const [op, reason] of cases) {
        // A bad op fails the whole request: the valid one beside it does not run either.
        const answer = await daemon.admin("/cluster/ops", {
          method: "POST",
          body: JSON.stringify([{ op: "publish", request }, op]),
        });
        assert.equal(answer.status, 400, JSON.stringify(op));
        assert.ok(
          String(answer.body.error).includes(reason),
          `${JSON.stringify(op)}: ${answer.body.error}`,
        );
      }
      for (const body of ["}{", '{"op":"publish"}', ""]) {
        const answer = await daemon.admin("/cluster/ops", { method: "POST", body });
        assert.equal(answer.status, 400, body);
      }
      assert.deepEqual(await settle(victim), [], "nothing reached victim");
      assert.deepEqual(await listed(), before, "nothing was stored for victim");
      // A valid op still runs.
      const ok = await daemon.admin("/cluster/ops", {
        method: "POST",
        body: JSON.stringify([{
          op: "publish",
          request: { ...request, body: '{"id":12345678901234567890}' },
        }]),
      });
      assert.deepEqual(ok.body, { result: [{ value: { s: 2, online: 1 } }] });
      const [delivered] = await settle(victim);
      assert.equal(delivered.s, 2);
    });

    await t.step("a chunked body over the limit is refused before it is read whole", async () => {
      const client = await RawClient.open(daemon.adminPort);
      try {
        await client.writeRaw(
          "POST /pub?to=victim&from=op HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        const piece = `10000\r\n${"x".repeat(0x10000)}\r\n`;
        const answered = client.readHead(30_000);
        let sent = 0;
        let sentWhenAnswered: number | undefined;
        answered.then(() => sentWhenAnswered = sent, () => sentWhenAnswered = sent);
        // Up to 256 MiB: the old daemon buffered all of it before answering 413.
        while (sentWhenAnswered === undefined && sent < 256 << 20) {
          try {
            await client.writeRaw(piece);
            // Let the read of the answer run: writes alone never yield to the event loop.
            await new Promise((resolve) => setTimeout(resolve));
          } catch {
            break; // the server closed its side after answering
          }
          sent += 0x10000;
        }
        const answer = await answered;
        assert.equal(answer.status, 413);
        assert.ok(
          sentWhenAnswered! < 32 << 20,
          `answered after ${sentWhenAnswered! >> 20} MiB of a 4 KiB limit`,
        );
      } finally {
        client.close();
      }
    });
  } finally {
    victim.close();
    await daemon.stop();
  }
});

Deno.test("admin: past its in-flight limit the API answers 503 with Retry-After, then recovers", async () => {
  const daemon = await startDaemon(["--max_inflight=300"]);
  const client = await connected(daemon.clientPort, "busy");
  try {
    const lines = Array.from(
      { length: 200 },
      (_, i) => JSON.stringify({ to: "busy", from: "op", body: `m${i}` }),
    )
      .join("\n");
    const answers = await Promise.all(
      Array.from({ length: 20 }, async () => {
        const response = await fetch(`http://127.0.0.1:${daemon.adminPort}/pub/batch`, {
          method: "POST",
          body: lines,
        });
        return {
          status: response.status,
          retryAfter: response.headers.get("retry-after"),
          body: await response.json(),
        };
      }),
    );
    const refused = answers.filter((a) => a.status === 503);
    const accepted = answers.filter((a) => a.status === 200);
    assert.ok(
      refused.length > 0,
      `no request was refused: ${JSON.stringify(answers.map((a) => a.status))}`,
    );
    assert.ok(accepted.length > 0);
    for (const answer of refused) {
      assert.deepEqual(answer.body, { error: "overloaded" });
      assert.equal(answer.retryAfter, "1");
    }
    // What was let in was stored and delivered, every line of it.
    for (const answer of accepted) assert.ok(answer.body.result.every((a: unknown) => a === "ok"));
    let delivered = 0;
    while (delivered < accepted.length * 200) {
      const message = await client.next();
      assert.ok(message, "stream open");
      delivered++;
    }
    // Back to normal once the burst is answered.
    assert.deepEqual(
      (await daemon.admin("/pub?to=busy&from=op", { method: "POST", body: "after" })).body,
      {
        result: "ok",
      },
    );
  } finally {
    client.close();
    await daemon.stop();
  }
});
