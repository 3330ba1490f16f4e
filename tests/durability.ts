/**
 * The kill test, shared by every durable store: publish continuously, `kill -9` the daemon
 * mid-stream, restart it over the same data, and check that every `/pub` that answered ok
 * is there with its original `s`, and that the next message gets a higher `s`.
 *
 * @module
 */

import assert from "node:assert/strict";
import { RawClient } from "./client.ts";
import { delay, publish, startDaemon } from "./harness.ts";

const UIDS = ["k1", "k2", "k3", "k4"];

/** Runs the kill test with the daemon started on `storageFlags`. */
export async function killTest(storageFlags: string[]): Promise<void> {
  // /msg must list everything at once: nothing is acked in this test.
  const flags = [...storageFlags, "--msg_limit=1000000"];
  const first = await startDaemon(flags);
  // A watcher per uid records the `s` each body was delivered with before the kill.
  const watchers = await Promise.all(UIDS.map(async (uid) => {
    const { client, answer } = await RawClient.connect(first.clientPort, uid);
    assert.equal(answer.status, 200);
    return client;
  }));
  const delivered = new Map<string, number>();
  const watching = watchers.map(async (client) => {
    for (;;) {
      const message = await client.next(10_000).catch(() => null);
      if (!message) return;
      delivered.set(String(message.b), message.s as number);
    }
  });

  const acknowledged: { uid: string; body: string }[] = [];
  let killed = false;
  const publishers = UIDS.map(async (uid) => {
    for (let i = 0; !killed; i++) {
      const body = `${uid}-${i}`;
      const answer = await publish(first, `to=${uid}`, body).catch(() => null);
      if (answer?.status === 200) acknowledged.push({ uid, body });
    }
  });
  await delay(1500);
  await first.stop("SIGKILL");
  killed = true;
  await Promise.all(publishers);
  for (const client of watchers) client.close();
  await Promise.all(watching);
  assert.ok(acknowledged.length > 50, `enough traffic before the kill (${acknowledged.length})`);

  const second = await startDaemon(flags, { dir: first.dir });
  try {
    for (const uid of UIDS) {
      const answer = await second.admin(`/msg?uid=${uid}`);
      const listed = new Map<string, number>(
        (answer.body.result as string[]).map((text) => JSON.parse(text)).map((m) => [m.b, m.s]),
      );
      const mine = acknowledged.filter((a) => a.uid === uid);
      for (const { body } of mine) {
        assert.ok(listed.has(body), `${body} answered ok before the kill, and is stored`);
        if (delivered.has(body)) {
          assert.equal(listed.get(body), delivered.get(body), `${body} keeps its original s`);
        }
      }
      // Bodies were published in order per uid, so their s must rise in that order.
      const seqs = mine.map(({ body }) => listed.get(body)!);
      assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), `${uid}: s follows publish order`);
      const highest = Math.max(0, ...listed.values());
      const { client } = await RawClient.connect(second.clientPort, uid);
      assert.deepEqual((await publish(second, `to=${uid}`, "after restart")).body, {
        result: "ok",
      });
      let next;
      do next = await client.next(); while (next?.b !== "after restart");
      assert.ok((next.s as number) > highest, `${uid}: next s ${next.s} > ${highest}`);
      client.close();
    }
  } finally {
    assert.equal(await second.stop(), 0);
  }
}
