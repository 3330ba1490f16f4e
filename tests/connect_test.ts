/**
 * End to end: the handshake on the front door and the shards (PROTOCOL.md §1).
 */

import assert from "node:assert/strict";
import { RawClient } from "./client.ts";
import { delay, startDaemon } from "./harness.ts";

const DATE = /^Date: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT$/m;

Deno.test("handshake: 303 to the owning shard, then the exact 200 head", async (t) => {
  const usersFile = await Deno.makeTempFile();
  await Deno.writeTextFile(usersFile, "# uid password\nuser001 pwd001\nuser002 s3cret\n");
  const daemon = await startDaemon([
    "--auth=file",
    `--users_file=${usersFile}`,
    "--handshake_timeout_sec=1",
    "--max_head_bytes=1024",
  ]);
  try {
    await t.step("a raw client follows the 303 and gets the exact 200 head", async () => {
      const { client, answer, redirected } = await RawClient.connect(
        daemon.clientPort,
        "user001",
        "pwd001",
      );
      try {
        assert.ok(redirected);
        assert.equal(
          answer.head.replace(DATE, "Date: *"),
          "HTTP/1.1 200 OK\r\n" +
            "Connection: keep-alive\r\n" +
            "Content-Type: text/html; charset=utf-8\r\n" +
            "Transfer-Encoding: chunked\r\n" +
            "Date: *\r\n" +
            "\r\n",
        );
        assert.match(answer.head, DATE);
      } finally {
        client.close();
      }
    });

    await t.step("the 303 names the owner that /shard names, with the query verbatim", async () => {
      const client = await RawClient.open(daemon.clientPort);
      const answer = await client.request(
        "GET /connect?uid=user002&password=s3cret HTTP/1.1\r\nHost: x\r\n\r\n",
      );
      client.close();
      assert.equal(answer.status, 303);
      const shard = (await daemon.admin("/shard?uid=user002")).body.result;
      assert.equal(
        answer.headers.get("location"),
        `http://${shard}/connect?uid=user002&password=s3cret`,
      );
      assert.equal(answer.headers.get("content-length"), "0");
    });

    await t.step("a shard that does not own the uid answers 303 to the one that does", async () => {
      const owner = String((await daemon.admin("/shard?uid=user001")).body.result);
      const other = daemon.shardPorts.find((port) => !owner.endsWith(`:${port}`))!;
      const client = await RawClient.open(other);
      const answer = await client.request(
        "GET /connect?uid=user001&password=pwd001 HTTP/1.1\r\n\r\n",
      );
      client.close();
      assert.equal(answer.status, 303);
      assert.ok(answer.headers.get("location")!.startsWith(`http://${owner}/connect?`));
    });

    await t.step("curl -L follows the redirect and streams the chunks", async () => {
      const curl = new Deno.Command("curl", {
        args: [
          "-s",
          "-N",
          "-L",
          "-m",
          "5",
          `http://127.0.0.1:${daemon.clientPort}/connect?uid=user002&password=s3cret`,
        ],
        stdout: "piped",
        stderr: "null",
      }).spawn();
      const reader = curl.stdout.getReader();
      // Publish once curl's session is up (the user shows as connected in /stats).
      for (let i = 0; i < 50; i++) {
        const stats = await daemon.admin("/stats");
        const user = (stats.body.result as { user: { user_number: number } }).user;
        if (user.user_number > 0) break;
        await delay(100);
      }
      const pub = await daemon.admin("/pub?to=user002&from=op", {
        method: "POST",
        body: "hello curl",
      });
      assert.deepEqual(pub.body, { result: "ok" });
      const { value } = await reader.read();
      assert.equal(
        new TextDecoder().decode(value),
        '{"y":3,"f":"op","t":"user002","b":"hello curl","s":1}\n',
      );
      curl.kill();
      reader.releaseLock();
      await curl.stdout.cancel();
      await curl.status;
    });

    const refusals: [string, string, number, string][] = [
      ["empty uid", "GET /connect?uid=&password=pwd001 HTTP/1.1\r\n\r\n", 400, "invalid uid"],
      ["no uid", "GET /connect?password=pwd001 HTTP/1.1\r\n\r\n", 400, "invalid uid"],
      [
        "too long a uid",
        `GET /connect?uid=${"u".repeat(65)}&password=x HTTP/1.1\r\n\r\n`,
        400,
        "invalid uid",
      ],
      ["bad characters", "GET /connect?uid=a%20b&password=x HTTP/1.1\r\n\r\n", 400, "invalid uid"],
      ["no password", "GET /connect?uid=user001 HTTP/1.1\r\n\r\n", 400, "missing password"],
      ["a malformed request line", "GET /connect?uid=a\r\n\r\n", 400, "malformed request"],
      [
        "bad percent-encoding",
        "GET /connect?uid=%zz&password=x HTTP/1.1\r\n\r\n",
        400,
        "malformed request",
      ],
      [
        "a malformed header",
        "GET /connect?uid=a HTTP/1.1\r\nno colon\r\n\r\n",
        400,
        "malformed request",
      ],
      [
        "a head over --max_head_bytes",
        `GET /connect?uid=a&password=${"x".repeat(2000)} HTTP/1.1\r\n\r\n`,
        400,
        "request head too large",
      ],
      ["another path", "GET /index.html HTTP/1.1\r\n\r\n", 404, "not found"],
      [
        "another method",
        "POST /connect?uid=user001&password=pwd001 HTTP/1.1\r\n\r\n",
        405,
        "method not allowed",
      ],
    ];
    for (const [what, request, status, reason] of refusals) {
      await t.step(`${status} {"error":"${reason}"} for ${what}, then close`, async () => {
        const client = await RawClient.open(daemon.clientPort);
        const answer = await client.request(request);
        const body = JSON.stringify({ error: reason });
        assert.equal(answer.status, status);
        assert.equal(answer.headers.get("content-type"), "text/json; charset=utf-8");
        assert.equal(answer.headers.get("content-length"), String(body.length));
        assert.ok(await client.closedWithin(2000), "the server closes after refusing");
        assert.equal(answer.rest, body);
        client.close();
      });
    }

    // Only the owner checks the password (once a connect): the front door redirects first.
    for (
      const [what, uid, password] of [
        ["a wrong password", "user001", "nope"],
        ["an unknown user", "stranger", "pwd001"],
      ]
    ) {
      await t.step(`400 {"error":"invalid password"} for ${what}, after one 303`, async () => {
        const { client, answer, redirected } = await RawClient.connect(
          daemon.clientPort,
          uid,
          password,
        );
        const body = '{"error":"invalid password"}';
        assert.ok(redirected);
        assert.equal(answer.status, 400);
        assert.equal(answer.headers.get("content-type"), "text/json; charset=utf-8");
        assert.equal(answer.headers.get("content-length"), String(body.length));
        assert.ok(await client.closedWithin(2000), "the server closes after refusing");
        assert.equal(answer.rest, body);
        client.close();
      });
    }

    await t.step("the exact 400 bytes of PROTOCOL.md for an invalid uid", async () => {
      const client = await RawClient.open(daemon.clientPort);
      const answer = await client.request("GET /connect?uid=&password=x HTTP/1.1\r\n\r\n");
      await client.closedWithin(2000);
      client.close();
      assert.equal(
        answer.head.replace(DATE, "Date: *") + answer.rest,
        "HTTP/1.1 400 Bad Request\r\n" +
          "Content-Type: text/json; charset=utf-8\r\n" +
          "Date: *\r\n" +
          "Content-Length: 23\r\n" +
          "\r\n" +
          '{"error":"invalid uid"}',
      );
    });

    await t.step("a head that never ends is cut off after --handshake_timeout_sec", async () => {
      const client = await RawClient.open(daemon.clientPort);
      await client.writeRaw("GET /connect?uid=user001&password=pwd001 HTTP/1.1\r\nX-Slow: ");
      const answer = await client.readHead(3000);
      assert.equal(answer.status, 400);
      assert.ok(await client.closedWithin(2000));
      assert.equal(answer.rest, '{"error":"request head timeout"}');
      client.close();
    });

    await t.step("/stats counts the refusals by kind", async () => {
      const stats = (await daemon.admin("/stats")).body.result as Record<string, number>;
      assert.ok(stats.bad_request_number >= 10, `bad_request_number ${stats.bad_request_number}`);
      assert.equal(stats.auth_fail_number, 2);
      assert.ok(stats.redirect_number >= 3);
    });
  } finally {
    assert.equal(await daemon.stop(), 0);
    await Deno.remove(usersFile);
  }
});
