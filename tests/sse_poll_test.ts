/**
 * Server-sent events, long-poll, `/send`, `/shard` and CORS on the client ports end to end
 * (PROTOCOL.md §6), against the real daemon; every transport's refusal of a bad password;
 * one uid moving from WebSocket to server-sent events to long-poll without a gap or a repeat.
 */

import assert from "node:assert/strict";
import { connected, settle } from "./client.ts";
import { type Daemon, delay, eventually, publish, startDaemon } from "./harness.ts";
import { upgradeRequest, WireClient } from "./web_client.ts";

const APP = "https://app.example";

async function ownerPort(daemon: Daemon, uid: string): Promise<number> {
  const { body } = await daemon.admin(`/shard?uid=${uid}`);
  return Number(String(body.result).split(":")[1]);
}

/** A GET or POST on a fresh socket (or `client`'s), answered whole. */
async function request(
  port: number | WireClient,
  method: string,
  target: string,
  { body = "", headers = "" }: { body?: string; headers?: string } = {},
) {
  const client = typeof port === "number" ? await WireClient.open(port) : port;
  const length = method === "POST"
    ? `Content-Length: ${new TextEncoder().encode(body).length}\r\n`
    : "";
  await client.write(`${method} ${target} HTTP/1.1\r\nHost: x\r\n${headers}${length}\r\n${body}`);
  return { client, ...await client.answer(30_000) };
}

/** An event stream opened at the uid's owner, its head read. */
async function stream(daemon: Daemon, uid: string, headers = "", query = "") {
  const client = await WireClient.open(await ownerPort(daemon, uid));
  await client.write(`GET /sse?uid=${uid}&password=pw${query} HTTP/1.1\r\n${headers}\r\n`);
  return { client, head: await client.head() };
}

Deno.test("sse, poll, /send and CORS on the real daemon", async (t) => {
  const users = await Deno.makeTempFile();
  const uids = ["sse_a", "sse_b", "poll_a", "poll_b", "poll_c", "send_a", "send_b", "mix_a"];
  await Deno.writeTextFile(users, uids.map((uid) => `${uid} pw\n`).join(""));
  const daemon = await startDaemon([
    "--auth=file",
    `--users_file=${users}`,
    `--cors_origins=${APP}`,
    "--session_wait_sec=2",
  ]);
  try {
    await t.step("sse: the head, then an event a message, id: s for stored ones", async () => {
      const { client, head } = await stream(daemon, "sse_a", `Origin: ${APP}\r\n`);
      assert.equal(head.status, 200);
      assert.deepEqual(
        head.text.split("\r\n").filter((line) => !line.startsWith("Date:")),
        [
          "HTTP/1.1 200 OK",
          "Content-Type: text/event-stream; charset=utf-8",
          "Cache-Control: no-store",
          "Connection: close",
          "X-Accel-Buffering: no",
          `Access-Control-Allow-Origin: ${APP}`,
          "Vary: Origin",
          "",
          "",
        ],
      );
      await publish(daemon, "to=sse_a", "stored é");
      await publish(daemon, "to=sse_a", "volatile", "&volatile=1");
      assert.equal(await client.line(), "id: 1");
      assert.equal(await client.line(), 'data: {"y":3,"f":"op","t":"sse_a","b":"stored é","s":1}');
      assert.equal(await client.line(), "");
      assert.deepEqual(
        Object.fromEntries(await client.event()),
        { data: '{"y":3,"f":"op","t":"sse_a","b":"volatile"}' },
        "a volatile message has no id",
      );
      client.close();
    });

    await t.step(
      "sse: a reconnect's Last-Event-ID acks up to it and replays the rest",
      async () => {
        for (const body of ["two", "three"]) await publish(daemon, "to=sse_a", body);
        const { client } = await stream(daemon, "sse_a", "Last-Event-ID: 2\r\n");
        const event = await client.event();
        assert.equal(event.get("id"), "3");
        assert.equal(JSON.parse(event.get("data")!).b, "three");
        client.close();
        const { body } = await daemon.admin("/msg?uid=sse_a");
        assert.deepEqual(
          (body.result as string[]).map((m) => JSON.parse(m).s),
          [3],
          "1 and 2 acknowledged by the Last-Event-ID",
        );
        // since= does the same for a client that is not an EventSource.
        const again = await stream(daemon, "sse_a", "", "&since=3");
        await publish(daemon, "to=sse_a", "four");
        assert.equal((await again.client.event()).get("id"), "4");
        again.client.close();
      },
    );

    await t.step("sse: a non-owner answers 303, as EventSource follows", async () => {
      const { status, headers } = await request(
        daemon.clientPort,
        "GET",
        "/sse?uid=sse_b&password=pw",
      );
      assert.equal(status, 303);
      assert.equal(
        headers.get("location"),
        `http://127.0.0.1:${await ownerPort(daemon, "sse_b")}/sse?uid=sse_b&password=pw`,
      );
    });

    await t.step("poll: messages after since are answered at once, and since acks", async () => {
      for (const body of ["p1", "p2", "p3"]) await publish(daemon, "to=poll_a", body);
      const port = await ownerPort(daemon, "poll_a");
      const first = await request(port, "GET", "/poll?uid=poll_a&password=pw&since=1");
      assert.equal(first.status, 200);
      assert.equal(first.headers.get("cache-control"), "no-store");
      assert.equal(first.headers.get("connection"), "keep-alive");
      assert.deepEqual(JSON.parse(first.body).result.map((m: { s: number }) => m.s), [2, 3]);
      // The same socket takes the next poll (keep-alive), which acks 3 and is held.
      const started = Date.now();
      const next = await request(
        first.client,
        "GET",
        "/poll?uid=poll_a&password=pw&since=3&wait=1",
      );
      assert.deepEqual(JSON.parse(next.body), { result: [] });
      assert.ok(Date.now() - started >= 900, "held for its wait");
      const { body } = await daemon.admin("/msg?uid=poll_a");
      assert.deepEqual(body.result, []);
      first.client.close();
    });

    await t.step("poll: a held poll is answered by a /pub", async () => {
      const port = await ownerPort(daemon, "poll_b");
      const held = request(port, "GET", "/poll?uid=poll_b&password=pw&since=0&wait=20");
      await delay(300);
      const started = Date.now();
      await publish(daemon, "to=poll_b", "wake up");
      const answer = await held;
      assert.ok(Date.now() - started < 2000, `answered ${Date.now() - started} ms after the /pub`);
      assert.deepEqual(JSON.parse(answer.body), {
        result: [{ y: 3, f: "op", t: "poll_b", b: "wake up", s: 1 }],
      });
      answer.client.close();
    });

    await t.step("poll: between polls the uid stays online; it goes after the wait", async () => {
      const port = await ownerPort(daemon, "poll_c");
      type Stats = {
        user: Record<string, number>;
        transport: Record<string, Record<string, number>>;
      };
      const online = async () => (await daemon.admin("/stats")).body.result as Stats;
      // The earlier steps' poll sessions go first, so the count is this one's alone.
      assert.ok(
        await eventually(async () => (await online()).transport.poll.connection_number === 0, 6000),
      );
      const before = (await online()).user.user_number;
      const { client } = await request(port, "GET", "/poll?uid=poll_c&password=pw&wait=0");
      client.close();
      const during = await online();
      assert.equal(during.user.user_number, before + 1, "its session waits for the next poll");
      assert.equal(during.transport.poll.connection_number, 1);
      assert.ok(
        await eventually(async () => (await online()).user.user_number === before, 6000),
        "forgotten after --session_wait_sec",
      );
    });

    await t.step("/send: a non-owner answers 307 to the owner", async () => {
      const { status, headers, client } = await request(
        daemon.clientPort,
        "POST",
        "/send?uid=send_a&password=pw",
        { body: '{"y":0}\n' },
      );
      assert.equal(status, 307);
      assert.equal(
        headers.get("location"),
        `http://127.0.0.1:${await ownerPort(daemon, "send_a")}/send?uid=send_a&password=pw`,
      );
      assert.ok(await client.closedWithin(5000));
    });

    await t.step("/send: the owner answers each line, and the messages go out", async () => {
      const receiver = await connected(daemon.clientPort, "send_b");
      const lines = [
        '{"y":3,"t":"send_b","b":{"hello":"from send_a"}}',
        "",
        "{oops",
        '{"y":3,"t":"not a uid","b":1}',
        '{"y":5,"s":7}',
        '{"y":0}',
      ];
      const { status, body, client } = await request(
        await ownerPort(daemon, "send_a"),
        "POST",
        "/send?uid=send_a&password=pw",
        { body: lines.join("\r\n") },
      );
      assert.equal(status, 200);
      assert.deepEqual(JSON.parse(body), {
        result: ["ok", { error: "bad json" }, { error: "invalid t" }, {
          error: "ack beyond last seq",
        }, "ok"],
      });
      assert.deepEqual(await receiver.next(), {
        y: 3,
        f: "send_a",
        t: "send_b",
        b: { hello: "from send_a" },
        s: 1,
      });
      assert.deepEqual(await settle(receiver), []);
      receiver.close();
      client.close();
    });

    await t.step("/shard on a client port names the owner, without a password", async () => {
      const { body, headers } = await request(daemon.clientPort, "GET", "/shard?uid=send_a");
      assert.deepEqual(JSON.parse(body), {
        result: `127.0.0.1:${await ownerPort(daemon, "send_a")}`,
      });
      assert.equal(headers.get("content-type"), "application/json; charset=utf-8");
    });

    await t.step("CORS: a listed origin's preflight and answers; others are refused", async () => {
      const preflight = await request(daemon.clientPort, "OPTIONS", "/send?uid=send_a", {
        headers: `Origin: ${APP}\r\nAccess-Control-Request-Method: POST\r\n` +
          "Access-Control-Request-Headers: content-type\r\n",
      });
      assert.equal(preflight.status, 204);
      assert.equal(preflight.headers.get("access-control-allow-origin"), APP);
      assert.equal(preflight.headers.get("access-control-allow-methods"), "GET, POST, OPTIONS");
      assert.equal(preflight.headers.get("access-control-allow-headers"), "content-type");
      const shard = await request(preflight.client, "GET", "/shard?uid=send_a", {
        headers: `Origin: ${APP}\r\n`,
      });
      assert.equal(shard.headers.get("access-control-allow-origin"), APP, "kept alive, too");
      const evil = "Origin: https://evil.example\r\nAccess-Control-Request-Method: GET\r\n";
      const refused = await request(daemon.clientPort, "OPTIONS", "/poll", { headers: evil });
      assert.equal(refused.status, 403);
      const port = await ownerPort(daemon, "sse_b");
      const ws = await WireClient.open(port);
      await ws.write(
        upgradeRequest("/connect?uid=sse_b&password=pw", "Origin: https://evil.example\r\n"),
      );
      const answer = await ws.answer();
      assert.deepEqual([answer.status, JSON.parse(answer.body)], [403, {
        error: "origin not allowed",
      }]);
    });

    await t.step(
      "every transport refuses a bad password with the same 400, at the owner",
      async () => {
        const port = await ownerPort(daemon, "sse_b");
        const attempts: [string, string, string][] = [
          ["tcp", "GET", "/connect?uid=sse_b&password=wrong"],
          ["sse", "GET", "/sse?uid=sse_b&password=wrong"],
          ["poll", "GET", "/poll?uid=sse_b&password=wrong&since=0"],
          ["send", "POST", "/send?uid=sse_b&password=wrong"],
        ];
        for (const [name, method, target] of attempts) {
          // The front door only redirects: the owner checks the password, once.
          const front = await request(daemon.clientPort, method, target);
          assert.equal(front.status, name === "send" ? 307 : 303, name);
          assert.equal(new URL(front.headers.get("location")!).port, String(port), name);
          const { status, body, headers } = await request(port, method, target);
          assert.deepEqual([status, JSON.parse(body)], [400, { error: "invalid password" }], name);
          assert.equal(headers.get("content-type"), "text/json; charset=utf-8");
        }
        const ws = await WireClient.open(port);
        await ws.write(upgradeRequest("/connect?uid=sse_b&password=wrong"));
        const answer = await ws.answer();
        assert.deepEqual([answer.status, JSON.parse(answer.body)], [400, {
          error: "invalid password",
        }], "ws");
      },
    );

    await t.step(
      "one uid over WebSocket, then SSE, then long-poll: no gap, no repeat",
      async () => {
        const port = await ownerPort(daemon, "mix_a");
        const seen: number[] = [];
        // WebSocket: two messages, the first acked.
        const ws = new WebSocket(`ws://127.0.0.1:${port}/connect?uid=mix_a&password=pw`);
        await new Promise((resolve) => ws.onopen = resolve);
        const two = Promise.withResolvers<void>();
        ws.onmessage = (event) => {
          const message = JSON.parse(event.data);
          if (message.s === undefined) return;
          seen.push(message.s);
          if (message.s === 1) ws.send(JSON.stringify({ y: 5, s: 1 }));
          if (seen.length === 2) two.resolve();
        };
        await publish(daemon, "to=mix_a", "m1");
        await publish(daemon, "to=mix_a", "m2");
        await two.promise;
        const closed = new Promise((resolve) => ws.onclose = resolve);
        ws.close();
        await closed;
        // Sent while nobody is connected.
        await publish(daemon, "to=mix_a", "m3");
        // Server-sent events from the last s seen: 2 is acked, 3 is replayed, 4 is live.
        const sse = await stream(daemon, "mix_a", "", `&since=${seen.at(-1)}`);
        seen.push(Number((await sse.client.event()).get("id")));
        await publish(daemon, "to=mix_a", "m4");
        seen.push(Number((await sse.client.event()).get("id")));
        sse.client.close();
        await publish(daemon, "to=mix_a", "m5");
        // Long-poll from the last s seen.
        const poll = await request(port, "GET", `/poll?uid=mix_a&password=pw&since=${seen.at(-1)}`);
        seen.push(...JSON.parse(poll.body).result.map((m: { s: number }) => m.s));
        const last = request(
          poll.client,
          "GET",
          `/poll?uid=mix_a&password=pw&since=${seen.at(-1)}`,
        );
        await delay(200);
        await publish(daemon, "to=mix_a", "m6");
        seen.push(...JSON.parse((await last).body).result.map((m: { s: number }) => m.s));
        poll.client.close();
        assert.deepEqual(seen, [1, 2, 3, 4, 5, 6]);
      },
    );

    await t.step("/stats counts connections and messages per transport", async () => {
      const { body } = await daemon.admin("/stats");
      const transport = (body.result as Record<string, Record<string, Record<string, number>>>)
        .transport;
      assert.ok(transport.ws.send_number >= 2, JSON.stringify(transport));
      assert.ok(transport.sse.send_number >= 2);
      assert.ok(transport.poll.send_number >= 3);
      assert.ok(transport.send.request_number >= 1 && transport.send.recv_number >= 5);
      assert.ok(transport.tcp.connection_number >= 0);
    });
  } finally {
    await daemon.stop();
    await Deno.remove(users);
  }
});
