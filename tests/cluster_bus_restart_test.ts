/**
 * End to end: a node killed (`kill -9`) while it stores the bus's channel messages, and
 * restarted on the same data directory, stores each of them once. A static cluster of two
 * nodes with a real Redis: the channel's members are all on node B, the messages are
 * published continuously through node A, and B is killed and restarted twice meanwhile.
 * Whatever B had stored but not acknowledged (`XACK`) when it died is read again after its
 * restart; its shards' bus marks (docs/cluster.md) say they have those copies already.
 */

import assert from "node:assert/strict";
import { startRedis } from "../scripts/redis.ts";
import { type Daemon, delay, eventually, freePortRun, publish, startDaemon } from "./harness.ts";

/** Publishers at once, through node A. */
const PUBLISHERS = 4;

Deno.test({
  name: "cluster bus: a node killed and restarted stores every channel message once",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const redis = await startRedis();
    const [a, b] = [freePortRun(4), freePortRun(4)];
    const flags = [
      `--cluster_nodes=nodeA=127.0.0.1:${a}:${a + 1}:${a + 2}:2,` +
      `nodeB=127.0.0.1:${b}:${b + 1}:${b + 2}:2`,
      `--redis_url=${redis.url}`,
      `--cluster_name=busmark${Date.now()}`,
      // Every message of a member in one /msg.
      "--msg_limit=100000",
    ];
    const start = (id: string, dir?: string) =>
      startDaemon([`--node_id=${id}`, ...flags], dir === undefined ? {} : { dir });
    const nodeA = await start("nodeA");
    let nodeB: Daemon = await start("nodeB");
    let publishing = true;
    try {
      /** Uids that node B owns, on both of its shards, subscribed (through A) to the channel. */
      const members: string[] = [];
      for (let i = 0; members.length < 8; i++) {
        const uid = `m${i}`;
        const shard = String((await nodeA.admin(`/shard?uid=${uid}`)).body.result);
        if (nodeB.shardPorts.some((port) => shard.endsWith(`:${port}`))) members.push(uid);
      }
      for (const uid of members) {
        assert.deepEqual((await nodeA.admin(`/sub?uid=${uid}&cid=news`)).body, { result: "ok" });
      }
      /** The bodies whose `/pub` was acknowledged. */
      const acknowledged: string[] = [];
      let next = 0;
      const publisher = async () => {
        while (publishing) {
          const body = `m${next++}`;
          try {
            const answer = await publish(nodeA, "channel=news", body);
            if (answer.body.result === "ok") acknowledged.push(body);
          } catch { /* not acknowledged: it may be stored once, or not at all */ }
        }
      };
      const publishers = Array.from({ length: PUBLISHERS }, publisher);
      for (let round = 0; round < 2; round++) {
        await delay(700);
        await nodeB.stop("SIGKILL");
        await delay(300);
        nodeB = await start("nodeB", nodeB.dir);
      }
      await delay(500);
      publishing = false;
      await Promise.all(publishers);
      assert.ok(acknowledged.length > 200, `only ${acknowledged.length} /pub acknowledged`);

      const stored = async (uid: string) => {
        const answer = await nodeB.admin(`/msg?uid=${uid}`);
        return (answer.body.result as string[] ?? []).map((text) => JSON.parse(text).b as string);
      };
      for (const uid of members) {
        let got: string[] = [];
        const caughtUp = () => acknowledged.every((body) => got.includes(body));
        assert.ok(
          await eventually(async () => (got = await stored(uid), caughtUp()), 20_000),
          `${uid} has ${got.length} messages, not every one of ${acknowledged.length} acknowledged`,
        );
      }
      // Anything read again after a restart has had time to be stored (again, if it were).
      await delay(1000);
      for (const uid of members) {
        const got = await stored(uid);
        const twice = got.filter((body, i) => got.indexOf(body) !== i);
        assert.deepEqual(twice, [], `${uid} has ${twice.length} messages twice`);
        const missing = acknowledged.filter((body) => !got.includes(body));
        assert.deepEqual(missing, [], `${uid} lacks acknowledged messages`);
      }
    } finally {
      publishing = false;
      await nodeB.stop();
      await nodeA.stop();
      await redis.stop();
    }
  },
});
