/**
 * End to end: each limit of PROTOCOL.md §8 met by a client, with its exact error, while a
 * bystander on the same shard goes on receiving — connections per uid, channels per uid,
 * messages a second per connection, unfinished handshakes per address, request heads a second
 * per address at the front door.
 */

import assert from "node:assert/strict";
import { frame, RawClient, settle } from "./client.ts";
import { type Daemon, delay, eventually, publish, startDaemon } from "./harness.ts";

const CONNECTIONS_PER_UID = 2;
const CHANNELS_PER_UID = 3;
const MSG_RATE = 5;
const MSG_BURST = 10;
const HANDSHAKES_PER_ADDRESS = 8;
const HEADS_PER_SEC = 20;

/** The shard's port and `count` uids it owns, with `prefix`. */
async function uidsOn(daemon: Daemon, shard: string, prefix: string, count: number) {
  const uids: string[] = [];
  for (let i = 0; uids.length < count; i++) {
    const uid = `${prefix}${i}`;
    if ((await daemon.admin(`/shard?uid=${uid}`)).body.result === shard) uids.push(uid);
  }
  return uids;
}

/** Connects `uid` straight to its shard, as a client that asked `/shard` first does. */
async function direct(port: number, uid: string) {
  const client = await RawClient.open(port);
  const answer = await client.request(`GET /connect?uid=${uid}&password=pw HTTP/1.1\r\n\r\n`);
  return { client, answer };
}

Deno.test("limits: each one refuses with its error; others on the shard keep receiving", async (t) => {
  const daemon = await startDaemon([
    `--max_connections_per_uid=${CONNECTIONS_PER_UID}`,
    `--max_channels_per_uid=${CHANNELS_PER_UID}`,
    `--client_msg_rate=${MSG_RATE}`,
    `--client_msg_burst=${MSG_BURST}`,
    `--max_handshakes_per_address=${HANDSHAKES_PER_ADDRESS}`,
    `--max_heads_per_sec_per_address=${HEADS_PER_SEC}`,
  ]);
  const shard = String((await daemon.admin("/shard?uid=bystander")).body.result);
  const port = Number(shard.split(":").at(-1));
  const [dup, joiner, chatty, polite, patient] = await uidsOn(daemon, shard, "u", 5);
  const bystander = (await direct(port, "bystander")).client;
  let received = 0;
  /** The bystander still gets what is sent to it, in order. */
  const bystanderReceives = async () => {
    const body = `m${++received}`;
    assert.deepEqual((await publish(daemon, "to=bystander", body)).body, { result: "ok" });
    assert.deepEqual(await bystander.next(), {
      y: 3,
      f: "op",
      t: "bystander",
      b: body,
      s: received,
    });
  };
  const opened: RawClient[] = [bystander];
  try {
    await bystanderReceives();

    await t.step("connections per uid: 429 too many connections, until one closes", async () => {
      const first = await direct(port, dup);
      const second = await direct(port, dup);
      opened.push(first.client, second.client);
      assert.deepEqual([first.answer.status, second.answer.status], [200, 200]);
      const third = await direct(port, dup);
      assert.equal(third.answer.status, 429);
      assert.equal(third.answer.rest, '{"error":"too many connections"}');
      assert.ok(await third.client.closedWithin(2000));
      third.client.close();
      await bystanderReceives();
      first.client.close();
      assert.ok(
        await eventually(async () => {
          const again = await direct(port, dup);
          opened.push(again.client);
          return again.answer.status === 200;
        }, 3000),
        "a connection is let in once one of the uid's closed",
      );
    });

    await t.step("channels per uid: too many channels, the stream stays", async () => {
      const { client } = await direct(port, joiner);
      opened.push(client);
      for (let c = 1; c <= CHANNELS_PER_UID; c++) await client.send({ y: 1, c: `chan${c}` });
      assert.deepEqual(await settle(client), []);
      await client.send({ y: 1, c: "one-too-many" });
      assert.deepEqual(await client.next(), { error: "too many channels" });
      assert.deepEqual(await settle(client), [], "still open");
      const subscribed = (await daemon.admin("/stats")).body.result as Record<string, number>;
      assert.equal((subscribed.limited as unknown as Record<string, number>).uid_channels, 1);
      await bystanderReceives();
    });

    await t.step(
      "messages a second: too many messages, then a close for one that goes on",
      async () => {
        const { client } = await direct(port, chatty);
        // A burst, and two more.
        await client.writeRaw(frame('{"y":0}').repeat(MSG_BURST + 2));
        const first = [];
        for (let i = 0; i < MSG_BURST + 2; i++) first.push(await client.next());
        assert.deepEqual(first, [
          ...Array(MSG_BURST).fill({ y: 0 }),
          { error: "too many messages" },
          { error: "too many messages" },
        ]);
        // It goes on: refused until a burst past the limit, then closed (what the rate earned
        // meanwhile, a heartbeat at most, may be answered).
        await client.writeRaw(frame('{"y":0}').repeat(3 * MSG_BURST));
        const rest = [];
        for (let message = await client.next(); message; message = await client.next()) {
          rest.push(message);
        }
        assert.deepEqual(rest.at(-1), { error: "rate limit exceeded" });
        const before = rest.slice(0, -1).filter((m) => m.y !== 0);
        assert.deepEqual(before, Array(MSG_BURST - 2).fill({ error: "too many messages" }));
        assert.ok(await client.closedWithin(2000));
        client.close();
        await bystanderReceives();
      },
    );

    await t.step("messages a second: a client that slows down is served again", async () => {
      const { client } = await direct(port, polite);
      opened.push(client);
      await client.writeRaw(frame('{"y":0}').repeat(MSG_BURST + 1));
      const answers = [];
      for (let i = 0; i < MSG_BURST + 1; i++) answers.push(await client.next());
      assert.deepEqual(answers.at(-1), { error: "too many messages" });
      await delay(1000 + 200); // MSG_RATE more
      await client.writeRaw(frame('{"y":0}').repeat(MSG_RATE));
      for (let i = 0; i < MSG_RATE; i++) assert.deepEqual(await client.next(), { y: 0 });
      await bystanderReceives();
    });

    await t.step("unfinished handshakes per address: 429 too many handshakes", async () => {
      const silent = await Promise.all(
        Array.from({ length: HANDSHAKES_PER_ADDRESS }, () => RawClient.open(port)),
      );
      await delay(200);
      const refused = await RawClient.open(port);
      const answer = await refused.readHead();
      assert.equal(answer.status, 429);
      assert.equal(answer.rest, '{"error":"too many handshakes"}');
      refused.close();
      await bystanderReceives();
      for (const client of silent) client.close();
      assert.ok(
        await eventually(async () => {
          const { client, answer } = await direct(port, patient);
          client.close();
          return answer.status === 200;
        }, 3000),
        "handshakes are let in once the silent ones are gone",
      );
    });

    await t.step("request heads a second at the front door: 429 too many requests", async () => {
      const statuses: number[] = [];
      const bodies = new Set<string>();
      for (let i = 0; i < 3 * HEADS_PER_SEC; i++) {
        const client = await RawClient.open(daemon.clientPort);
        const answer = await client.request(`GET /connect?uid=h${i}&password=pw HTTP/1.1\r\n\r\n`);
        statuses.push(answer.status);
        if (answer.status === 429) bodies.add(answer.rest);
        client.close();
      }
      const redirected = statuses.filter((status) => status === 303).length;
      assert.ok(redirected >= HEADS_PER_SEC && redirected < statuses.length, `${statuses}`);
      assert.equal(statuses.filter((s) => s === 429).length, statuses.length - redirected);
      assert.deepEqual([...bodies], ['{"error":"too many requests"}']);
      await bystanderReceives();
      await delay(1000);
      const { client, answer } = await RawClient.connect(daemon.clientPort, "later");
      assert.equal(answer.status, 200, "a second on, the address may connect again");
      client.close();
    });

    await t.step("/stats counts each limit", async () => {
      const stats = (await daemon.admin("/stats")).body.result as {
        limited: Record<string, number>;
      };
      assert.ok(stats.limited.uid_connections >= 1);
      assert.equal(stats.limited.uid_channels, 1);
      assert.ok(stats.limited.messages >= 4);
      assert.ok(stats.limited.handshakes >= 1);
      assert.ok(stats.limited.heads >= 1);
    });
  } finally {
    for (const client of opened) client.close();
    assert.equal(await daemon.stop(), 0);
  }
});
