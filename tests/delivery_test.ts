/**
 * End to end: sequencing, persistence, offline replay, acks, channels, TTL (PROTOCOL.md §4),
 * through the admin API (§3) and clients.
 */

import assert from "node:assert/strict";
import { connected, settle } from "./client.ts";
import { delay, publish, startDaemon, uidsOnDistinctShards } from "./harness.ts";

Deno.test("delivery: sequencing, offline replay, acks, channels, TTL", async (t) => {
  const daemon = await startDaemon();
  try {
    await t.step(
      "a message published while the user is offline is replayed on connect",
      async () => {
        for (const body of ["one", "two", "three"]) {
          assert.deepEqual((await publish(daemon, "to=off1", body)).body, { result: "ok" });
        }
        const client = await connected(daemon.clientPort, "off1");
        const got = await settle(client);
        assert.deepEqual(got, [
          { y: 3, f: "op", t: "off1", b: "one", s: 1 },
          { y: 3, f: "op", t: "off1", b: "two", s: 2 },
          { y: 3, f: "op", t: "off1", b: "three", s: 3 },
        ]);
        client.close();
      },
    );

    await t.step("replay then live: no gap and no duplicate while publishing", async () => {
      await Promise.all(
        Array.from({ length: 200 }, (_, i) => publish(daemon, "to=race1", `m${i}`)),
      );
      const client = await connected(daemon.clientPort, "race1");
      const live = Promise.all(
        Array.from({ length: 200 }, (_, i) => publish(daemon, "to=race1", `m${200 + i}`)),
      );
      const seqs: number[] = [];
      while (seqs.length < 400) seqs.push((await client.next())?.s as number);
      await live;
      assert.deepEqual(seqs, Array.from({ length: 400 }, (_, i) => i + 1));
      assert.deepEqual(await settle(client), [], "nothing after the 400th");
      client.close();
    });

    await t.step(
      "/msg lists unacked messages; an ack moves last_ack; then /msg is empty",
      async () => {
        await publish(daemon, "to=acker1", "first");
        await publish(daemon, "to=acker1", "second");
        assert.deepEqual((await daemon.admin("/msg?uid=acker1")).body, {
          result: [
            '{"b":"first","f":"op","s":1,"t":"acker1","y":3}\n',
            '{"b":"second","f":"op","s":2,"t":"acker1","y":3}\n',
          ],
        });
        const client = await connected(daemon.clientPort, "acker1");
        assert.equal((await settle(client)).length, 2);
        await client.send({ y: 5, f: "acker1", s: 1 });
        await settle(client);
        assert.deepEqual((await daemon.admin("/msg?uid=acker1")).body, {
          result: ['{"b":"second","f":"op","s":2,"t":"acker1","y":3}\n'],
        });
        await client.send({ y: 5, s: 2 });
        await settle(client);
        assert.deepEqual((await daemon.admin("/msg?uid=acker1")).body, { result: [] });
        client.close();
        const again = await connected(daemon.clientPort, "acker1");
        assert.deepEqual(await settle(again), [], "nothing replayed after the ack");
        await publish(daemon, "to=acker1", "third");
        assert.deepEqual(await again.next(), { y: 3, f: "op", t: "acker1", b: "third", s: 3 });
        again.close();
      },
    );

    await t.step("two connections of one uid both receive every message", async () => {
      const phone = await connected(daemon.clientPort, "multi1");
      const tablet = await connected(daemon.clientPort, "multi1");
      await publish(daemon, "to=multi1", "to both");
      const expected = { y: 3, f: "op", t: "multi1", b: "to both", s: 1 };
      assert.deepEqual(await phone.next(), expected);
      assert.deepEqual(await tablet.next(), expected);
      phone.close();
      tablet.close();
    });

    const [alice, bob] = await uidsOnDistinctShards(daemon, "member", 2);

    await t.step("a client's message reaches a user on another worker", async () => {
      const sender = await connected(daemon.clientPort, alice);
      const receiver = await connected(daemon.clientPort, bob);
      await sender.send({ y: 3, t: bob, b: { nested: ["json", 1] } });
      const message = await receiver.next();
      assert.deepEqual(message, { y: 3, f: alice, t: bob, b: { nested: ["json", 1] }, s: 1 });
      sender.close();
      receiver.close();
    });

    await t.step("a channel message reaches subscribers on two different workers", async () => {
      const a = await connected(daemon.clientPort, alice);
      const b = await connected(daemon.clientPort, bob);
      assert.deepEqual((await daemon.admin(`/sub?uid=${alice}&cid=room1`)).body, { result: "ok" });
      await b.send({ y: 1, c: "room1" });
      await settle(b);
      assert.deepEqual((await publish(daemon, "channel=room1", "hi room")).body, { result: "ok" });
      const fromAdmin = { y: 4, f: "op", c: "room1", b: "hi room" };
      assert.deepEqual(await a.next(), { ...fromAdmin, t: alice, s: 1 });
      assert.deepEqual(await b.next(), { ...fromAdmin, t: bob, s: 2 });

      // A client's y=4 crosses workers over the BroadcastChannel, and reaches its own shard.
      await a.send({ y: 4, c: "room1", b: "from alice" });
      const fromAlice = { y: 4, f: alice, c: "room1", b: "from alice" };
      assert.deepEqual(await a.next(), { ...fromAlice, t: alice, s: 2 });
      assert.deepEqual(await b.next(), { ...fromAlice, t: bob, s: 3 });

      await b.send({ y: 2, c: "room1" });
      await settle(b);
      await publish(daemon, "channel=room1", "after unsub");
      assert.equal((await a.next())?.b, "after unsub");
      assert.deepEqual(await settle(b), [], "an unsubscribed user gets nothing");
      a.close();
      b.close();
    });

    await t.step("a channel message for an offline subscriber is stored and listed", async () => {
      await daemon.admin("/sub?uid=sleeper1&cid=news");
      await publish(daemon, "channel=news", "this is a channel message");
      assert.deepEqual((await daemon.admin("/msg?uid=sleeper1")).body, {
        result: [
          '{"b":"this is a channel message","c":"news","f":"op","s":1,"t":"sleeper1","y":4}\n',
        ],
      });
    });

    await t.step("a TTL-expired message is neither delivered nor listed", async () => {
      await publish(daemon, "to=ttl1", "short-lived", "&ttl=1");
      await publish(daemon, "to=ttl1", "long-lived", "&ttl=3600");
      assert.equal(((await daemon.admin("/msg?uid=ttl1")).body.result as string[]).length, 2);
      await delay(1100);
      assert.deepEqual((await daemon.admin("/msg?uid=ttl1")).body, {
        result: ['{"b":"long-lived","f":"op","s":2,"t":"ttl1","y":3}\n'],
      });
      const client = await connected(daemon.clientPort, "ttl1");
      assert.deepEqual(await settle(client), [
        { y: 3, f: "op", t: "ttl1", b: "long-lived", s: 2 },
      ]);
      client.close();
    });

    await t.step("a volatile message reaches online users only, with no s", async () => {
      const client = await connected(daemon.clientPort, "vol1");
      await publish(daemon, "to=vol1", "now or never", "&volatile=1");
      assert.deepEqual(await client.next(), { y: 3, f: "op", t: "vol1", b: "now or never" });
      client.close();
      await publish(daemon, "to=vol2", "lost", "&volatile=1");
      assert.deepEqual((await daemon.admin("/msg?uid=vol2")).body, { result: [] });
    });

    const errors: [string, string, RequestInit | undefined, number, string][] = [
      ["/pub without from", "/pub?to=u1", { method: "POST" }, 400, "missing from"],
      [
        "/pub with to and channel",
        "/pub?to=u1&channel=c&from=op",
        { method: "POST" },
        400,
        "give exactly one of to, channel",
      ],
      [
        "/pub with neither",
        "/pub?from=op",
        { method: "POST" },
        400,
        "give exactly one of to, channel",
      ],
      ["/pub with a bad ttl", "/pub?to=u1&from=op&ttl=-1", { method: "POST" }, 400, "invalid ttl"],
      ["/pub with a bad uid", "/pub?to=no%20way&from=op", { method: "POST" }, 400, "invalid to"],
      ["GET /pub", "/pub?to=u1&from=op", undefined, 405, "method not allowed"],
      [
        "/pub over the frame limit",
        "/pub?to=u1&from=op",
        { method: "POST", body: "x".repeat(70_000) },
        413,
        "body over 65536 bytes",
      ],
      ["/sub without cid", "/sub?uid=u1", undefined, 400, "missing cid"],
      ["/msg without uid", "/msg", undefined, 400, "missing uid"],
      ["an unknown path", "/nope", undefined, 404, "not found"],
    ];
    for (const [what, path, init, status, reason] of errors) {
      await t.step(`admin: ${what} is ${status} {"error":"${reason}"}`, async () => {
        const answer = await daemon.admin(path, init);
        assert.equal(answer.status, status);
        assert.deepEqual(answer.body, { error: reason });
      });
    }
  } finally {
    assert.equal(await daemon.stop(), 0);
  }
});
