/**
 * End to end: channel messages from the cluster bus are stored once by a node that restarts
 * between its shards' store and its `XACK` (docs/cluster.md, the bus mark). A static cluster
 * of two nodes with a real Redis; the channel's members are all on node B, and the messages
 * are published through node A.
 *
 * - B is killed (`kill -9`) and restarted on the same data directory twice while four
 *   publishers go on: whatever it had stored but not acknowledged when it died is read
 *   again after its restart. Whether a kill lands in that window is luck: without the mark,
 *   this failed 4 runs of 6.
 * - So the second test makes it certain: one of B's shards crashes right after its next
 *   commit of bus entries' copies, before it answers (`/debug/crash?after=bus_commit`), and
 *   is restarted by its node, which reads those entries again.
 */

import assert from "node:assert/strict";
import { startRedis } from "../scripts/redis.ts";
import {
  type Daemon,
  delay,
  eventually,
  freePortRun,
  publish,
  startDaemon,
  whilePortTaken,
} from "./harness.ts";

/** The two nodes, their channel's members (all on node B), and how to restart node B. */
interface Cluster {
  nodeA: Daemon;
  nodeB: Daemon;
  members: string[];
  /** Starts node B again on its data directory (after it was killed). */
  restartB(): Promise<Daemon>;
}

/**
 * Runs `body` with a fresh Redis and two nodes; `flagsB` go to node B only. The first start
 * draws other ports if one was taken meanwhile; B's restarts need its own again (the cluster
 * map names them), so a port taken in the 300 ms between a kill and its restart fails the run.
 */
async function withCluster(flagsB: string[], body: (cluster: Cluster) => Promise<void>) {
  const redis = await startRedis();
  const cluster = await whilePortTaken(async (): Promise<Cluster> => {
    const [a, b] = [freePortRun(4), freePortRun(4)];
    const flags = [
      `--cluster_nodes=nodeA=127.0.0.1:${a}:${a + 1}:${a + 2}:2,` +
      `nodeB=127.0.0.1:${b}:${b + 1}:${b + 2}:2`,
      `--redis_url=${redis.url}`,
      `--cluster_name=busmark${Date.now()}`,
      // Every message of a member in one /msg.
      "--msg_limit=100000",
    ];
    const startB = (dir?: string) =>
      startDaemon(["--node_id=nodeB", ...flags, ...flagsB], dir === undefined ? {} : { dir });
    const nodeA = await startDaemon(["--node_id=nodeA", ...flags]);
    try {
      const started: Cluster = {
        nodeA,
        nodeB: await startB(),
        members: [],
        restartB: async () => started.nodeB = await startB(started.nodeB.dir),
      };
      return started;
    } catch (error) {
      await nodeA.stop("SIGKILL");
      throw error;
    }
  }).catch(async (error) => {
    await redis.stop();
    throw error;
  });
  const { nodeA } = cluster;
  try {
    // Four on each of B's shards.
    const perShard = cluster.nodeB.shardPorts.map(() => 0);
    for (let i = 0; cluster.members.length < 8; i++) {
      const uid = `m${i}`;
      const shard = String((await nodeA.admin(`/shard?uid=${uid}`)).body.result);
      const k = cluster.nodeB.shardPorts.findIndex((port) => shard.endsWith(`:${port}`));
      if (k >= 0 && perShard[k] < 4) {
        perShard[k]++;
        cluster.members.push(uid);
      }
    }
    for (const uid of cluster.members) {
      assert.deepEqual((await nodeA.admin(`/sub?uid=${uid}&cid=news`)).body, { result: "ok" });
    }
    await body(cluster);
  } finally {
    await cluster.nodeB.stop();
    await nodeA.stop();
    await redis.stop();
  }
}

/** The bodies of the messages node B lists for `uid`. */
async function storedOnB(cluster: Cluster, uid: string): Promise<string[]> {
  const answer = await cluster.nodeB.admin(`/msg?uid=${uid}`);
  return (answer.body.result as string[] ?? []).map((text) => JSON.parse(text).b as string);
}

/** Waits until each member has every acknowledged message, then checks none has one twice. */
async function assertEachOnce(cluster: Cluster, acknowledged: readonly string[]): Promise<void> {
  for (const uid of cluster.members) {
    let got: string[] = [];
    assert.ok(
      await eventually(async () => {
        got = await storedOnB(cluster, uid);
        return acknowledged.every((body) => got.includes(body));
      }, 20_000),
      `${uid} has ${got.length} messages, not every one of ${acknowledged.length} acknowledged`,
    );
  }
  // Anything read again after a restart has had time to be stored (again, if it were).
  await delay(1000);
  for (const uid of cluster.members) {
    const got = await storedOnB(cluster, uid);
    const twice = got.filter((body, i) => got.indexOf(body) !== i);
    assert.deepEqual(twice, [], `${uid} has ${twice.length} messages twice`);
    assert.deepEqual(acknowledged.filter((body) => !got.includes(body)), [], `${uid} lacks some`);
  }
}

Deno.test({
  name: "cluster bus: a node killed and restarted stores every channel message once",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await withCluster([], async (cluster) => {
      /** The bodies whose `/pub` was acknowledged. */
      const acknowledged: string[] = [];
      let publishing = true;
      let next = 0;
      const publisher = async () => {
        while (publishing) {
          const body = `m${next++}`;
          try {
            const answer = await publish(cluster.nodeA, "channel=news", body);
            if (answer.body.result === "ok") acknowledged.push(body);
          } catch { /* not acknowledged: it may be stored once, or not at all */ }
        }
      };
      const publishers = Array.from({ length: 4 }, publisher);
      try {
        for (let round = 0; round < 2; round++) {
          await delay(700);
          await cluster.nodeB.stop("SIGKILL");
          await delay(300);
          await cluster.restartB();
        }
        await delay(500);
      } finally {
        publishing = false;
        await Promise.all(publishers);
      }
      assert.ok(acknowledged.length > 200, `only ${acknowledged.length} /pub acknowledged`);
      await assertEachOnce(cluster, acknowledged);
    });
  },
});

Deno.test({
  name: "cluster bus: a shard crashed after storing an entry's copies, before the XACK, " +
    "stores them once",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await withCluster(["--debug_api=true"], async (cluster) => {
      const acknowledged: string[] = [];
      const send = async (body: string) => {
        const answer = await publish(cluster.nodeA, "channel=news", body);
        assert.deepEqual(answer.body, { result: "ok" });
        acknowledged.push(body);
      };
      await send("before");
      await assertEachOnce(cluster, acknowledged);
      // Shard 0 of B has four of the members.
      const armed = await cluster.nodeB.admin("/debug/crash?shard=0&after=bus_commit", {
        method: "POST",
      });
      assert.deepEqual(armed.body, { result: "ok" });
      await send("crash");
      assert.ok(
        await eventually(() => /shard-0 restarted/.test(cluster.nodeB.log()), 10_000),
        "shard 0 of node B did not crash and restart",
      );
      await send("after");
      await assertEachOnce(cluster, acknowledged);
      // The restarted shard, and the other one, skipped the entry read again.
      assert.match(cluster.nodeB.log(), /bus entries at or below this shard's bus mark/);
    });
  },
});
