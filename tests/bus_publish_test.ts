/**
 * The cluster bus against a real Redis, without daemons: a node's `publish` resolves with its
 * own shards' receipt once they stored the entry read back from its own group, also when the
 * first delivery failed (it is read again); messages sent in one pass share one entry;
 * another process's bus on the same stream stores the entry too but answers no waiter of this
 * one; and a node that does not store its own entry in time answers 503 (the entry stays in
 * the stream).
 */

import assert from "node:assert/strict";
import { startRedis } from "../scripts/redis.ts";
import { ClusterBus } from "../src/cluster/bus.ts";
import { closeRedis, connectRedis } from "../src/cluster/redis.ts";
import type { BusEntry } from "../src/core/bus_entry.ts";
import type { ChannelReceipt } from "../src/core/requests.ts";

const REQUEST = { channel: "news", from: "op", body: '"hello"', ttlSec: 0, volatile: false };

Deno.test({
  name: "cluster bus: publish waits for this node's own copies, read back from the stream",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const redis = await startRedis();
    const log = () => {};
    const clients = [await connectRedis(redis.url, log), await connectRedis(redis.url, log)];
    const buses: ClusterBus[] = [];
    try {
      /** Each node's deliveries, and how each next one is answered. */
      const heard = { n1: [] as BusEntry[][], n2: [] as BusEntry[][] };
      let answer: (node: "n1" | "n2", entries: BusEntry[]) => Promise<ChannelReceipt[]> = (
        _,
        entries,
      ) => Promise.resolve(entries.map(() => ({ recipients: 2, online: 1 })));
      const cluster = `publish${Date.now()}`;
      for (const [k, node] of (["n1", "n2"] as const).entries()) {
        buses.push(
          await ClusterBus.join(clients[k], redis.url, {
            cluster,
            nodeId: node,
            retentionSec: 600,
            fromNow: false,
            deliver: (entries) => {
              heard[node].push(entries);
              return answer(node, entries);
            },
            log,
          }),
        );
      }
      const [n1] = buses;

      await t.step(
        "resolves with this node's receipt once its shards stored the entry",
        async () => {
          const gate = Promise.withResolvers<void>();
          answer = async (node, entries) => {
            if (node === "n1") await gate.promise;
            return entries.map(() => ({ recipients: node === "n1" ? 3 : 7, online: 1 }));
          };
          let resolved = false;
          const publishing = n1.publish(REQUEST).then((receipt) => (resolved = true, receipt));
          await waitFor(() => heard.n1.length === 1 && heard.n2.length === 1);
          await new Promise((resolve) => setTimeout(resolve, 100));
          assert.equal(resolved, false, "answered before this node's shards stored it");
          gate.resolve();
          // n2 stored it as well, and its receipt is not n1's answer.
          assert.deepEqual(await publishing, { recipients: 3, online: 1 });
          assert.deepEqual(heard.n1[0][0].requests, [REQUEST]);
          assert.deepEqual(heard.n2[0][0].requests, [REQUEST]);
        },
      );

      await t.step(
        "messages sent in one pass share an entry; each gets its own receipt",
        async () => {
          answer = (_, entries) =>
            Promise.resolve(
              entries.flatMap((entry) =>
                entry.requests.map((request) => ({ recipients: Number(request.body), online: 0 }))
              ),
            );
          heard.n1.length = 0;
          const bodies = ["1", "2", "3"];
          const receipts = await Promise.all(
            bodies.map((body) => n1.publish({ ...REQUEST, body })),
          );
          assert.deepEqual(receipts.map((receipt) => receipt.recipients), [1, 2, 3]);
          assert.deepEqual(heard.n1.flat().map((entry) => entry.requests.length), [3]);
        },
      );

      await t.step("a delivery that failed is read again, and then answers", async () => {
        let failures = 1;
        answer = (node, entries) =>
          node === "n1" && failures-- > 0
            ? Promise.reject(new Error("a shard's store is down"))
            : Promise.resolve(entries.map(() => ({ recipients: 1, online: 0 })));
        heard.n1.length = 0;
        assert.deepEqual(await n1.publish(REQUEST), { recipients: 1, online: 0 });
        // n1 heard the one entry twice: the failed delivery, then the one that answered.
        assert.equal(heard.n1.length, 2);
        assert.equal(new Set(heard.n1.flat().map((entry) => entry.id)).size, 1);
      });

      await t.step("not stored here in time: 503, the entry in the stream", async () => {
        answer = (node, entries) =>
          node === "n1"
            ? new Promise(() => {})
            : Promise.resolve(entries.map(() => ({ recipients: 1, online: 0 })));
        const before = heard.n2.length;
        await assert.rejects(n1.publish(REQUEST), (error: Error & { status?: number }) => {
          assert.equal(error.status, 503);
          assert.match(error.message, /in the stream, but not stored by this node/);
          return true;
        });
        assert.ok(heard.n2.length > before, "the other node stored it");
      });
    } finally {
      // n1's reader waits on a delivery that never answers: close the others first.
      await Promise.all(buses.map((bus) => Promise.race([bus.close(), delayed(1500)])));
      for (const client of clients) await closeRedis(client).catch(() => {});
      await redis.stop();
    }
  },
});

function delayed(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitFor(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !condition(); i++) await delayed(50);
  assert.ok(condition(), "not in time");
}
