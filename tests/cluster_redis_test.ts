/**
 * End to end: a Redis-managed cluster (`--cluster=redis`) of three nodes × two workers on
 * loopback, with a real Redis and a real Cassandra, under continuous publishing: a fourth node
 * joins, a node leaves on SIGTERM, a node is killed (-9), a node is paused past its lease. No
 * other node restarts, and every acknowledged message is stored exactly once, with strictly
 * increasing `s` per uid. Heavy on two cores: run this file alone.
 */

import assert from "node:assert/strict";
import { startCassandra } from "../scripts/cassandra.ts";
import { startRedis } from "../scripts/redis.ts";
import cassandra from "cassandra-driver";
import { applySchema } from "../src/storage/cassandra_schema.ts";
import { RawClient } from "./client.ts";
import {
  assertAllStoredOnce,
  assertChannelCopies,
  assertMovedOnce,
  clusterFlags,
  type ClusterView,
  Follower,
  LEASE_SEC,
  Publishers,
  publishToChannel,
  TestCluster,
} from "./cluster_redis.ts";
import { type Daemon, delay, eventually } from "./harness.ts";

// At module level: the JVM and Redis outlive single tests, not the file.
const store = await startCassandra();
const redis = await startRedis();
const DRIVER_TEST = { sanitizeResources: false, sanitizeOps: false };
const USERS = Array.from({ length: 40 }, (_, i) => `user${i}`);

let clusters = 0;

/** A fresh keyspace and cluster name, and a cluster of `ids` started in order and settled. */
async function cluster(ids: string[]): Promise<TestCluster> {
  const name = `c${++clusters}`;
  const client = new cassandra.Client({
    contactPoints: [store.contactPoint],
    localDataCenter: store.localDataCenter,
  });
  try {
    await applySchema(client, { keyspace: name });
  } finally {
    await client.shutdown();
  }
  const nodes = new TestCluster(clusterFlags(name, redis.url, store, name));
  for (const id of ids) await nodes.start(id);
  await nodes.settled(ids);
  return nodes;
}

/**
 * A uid n2 owns, made a member of `news`, and publishing to `news` through n1: the two-node
 * scenes of the channel copies n2 does not store while it is away.
 */
async function newsThroughN1(nodes: TestCluster) {
  const n1 = nodes.nodes.get("n1")!;
  const owned = await owners(nodes);
  const member = USERS.find((uid) => owned.get(uid) === "n2")!;
  assert.deepEqual((await n1.admin(`/sub?uid=${member}&cid=news`)).body, { result: "ok" });
  return {
    n1,
    member,
    publish: (bodies: string[]) => publishToChannel(n1, "news", bodies),
    /** The member's copies of `news`, as n1 lists them, are `bodies`. */
    assertCopies: (bodies: string[]) => assertChannelCopies(n1, member, "news", bodies),
  };
}

/** Each user's owner node, as `via` says. */
async function owners(nodes: TestCluster, via = nodes.live()[0]): Promise<Map<string, string>> {
  return new Map(
    await Promise.all(USERS.map(async (uid) => [uid, await nodes.ownerOf(uid, via)] as const)),
  );
}

/** Starts a {@linkcode Follower} of each of `uids`, each connect entering by `entry(index)`. */
type Follow = (uids: string[], entry: (index: number) => Daemon) => Promise<Follower[]>;

/**
 * A test on a new cluster of `ids`: its followers (started through `follow`), then its nodes,
 * are stopped whatever the outcome.
 */
function clusterTest(
  name: string,
  ids: string[],
  body: (nodes: TestCluster, follow: Follow) => Promise<void>,
): void {
  Deno.test({
    name,
    ...DRIVER_TEST,
    async fn() {
      const nodes = await cluster(ids);
      const followers: Follower[] = [];
      try {
        await body(nodes, async (uids, entry) => {
          const started = uids.map((uid, i) => new Follower(uid, () => entry(i)));
          followers.push(...started);
          await Promise.all(started.map((f) => f.start()));
          return started;
        });
      } finally {
        await Promise.all(followers.map((f) => f.stop()));
        await nodes.stopAll();
      }
    },
  });
}

/** n1 and n2, looked up at each call: the survivors once n3 is gone. */
function survivorsOf(nodes: TestCluster): () => Daemon[] {
  return () => [nodes.nodes.get("n1")!, nodes.nodes.get("n2")!];
}

/** Takes node `id` out of the cluster (`live`, `stopAll`) and stops it; its exit code. */
async function stopNode(nodes: TestCluster, id: string, signal: Deno.Signal): Promise<number> {
  const node = nodes.nodes.get(id)!;
  nodes.nodes.delete(id);
  return await node.stop(signal);
}

/**
 * A map change under load: publishes to every uid through `entries` for a second, makes
 * `change`, publishes 1.5 s more; returns the publishers, stopped.
 */
async function publishAround(
  entries: () => Daemon[],
  change: () => Promise<void>,
): Promise<Publishers> {
  const publishers = new Publishers(USERS, entries);
  try {
    await delay(1000);
    await change();
    await delay(1500);
  } finally {
    await publishers.stop();
  }
  return publishers;
}

/** Enough was acknowledged to mean something, and every acknowledged message is stored once. */
async function assertPublished(nodes: TestCluster, publishers: Publishers): Promise<void> {
  assert.ok(publishers.acked.length > 100, `published ${publishers.acked.length}`);
  await assertAllStoredOnce(nodes.live()[0], USERS, publishers.acked);
}

clusterTest(
  "cluster=redis: /cluster lists the members, their leases and shards, one version",
  ["n1", "n2", "n3"],
  async (nodes) => {
    const views = await Promise.all(nodes.live().map((node) => node.admin("/cluster")));
    const [first] = views.map((view) => view.body.result as ClusterView);
    assert.equal(first.mode, "redis");
    assert.deepEqual(first.members.map((m) => m.id), ["n1", "n2", "n3"]);
    for (const member of first.members) {
      assert.ok(member.lease_age_ms !== null && member.lease_age_ms <= LEASE_SEC * 1000);
      assert.deepEqual(member.shards.map((s) => s.id), [`${member.id}/0`, `${member.id}/1`]);
    }
    for (const view of views) {
      assert.equal((view.body.result as ClusterView).version, first.version);
    }
    // Every node gives every uid the same owner.
    const byN1 = await owners(nodes, nodes.nodes.get("n1"));
    assert.deepEqual(await owners(nodes, nodes.nodes.get("n3")), byN1);
    assert.equal(new Set(byN1.values()).size, 3, "every node owns some of 40 uids");
  },
);

clusterTest(
  "cluster=redis: a fourth node joins under publishing; a quarter move with one 303 each",
  ["n1", "n2", "n3"],
  async (nodes, follow) => {
    const before = await owners(nodes);
    const pids = nodes.live().map((node) => node.pid);
    const followers = await follow(USERS, (i) => nodes.nodes.get(`n${1 + (i % 3)}`)!);
    const publishers = await publishAround(() => nodes.live(), async () => {
      await nodes.start("n4");
      await nodes.settled(["n1", "n2", "n3", "n4"]);
    });
    const after = await owners(nodes);
    const moved = USERS.filter((uid) => before.get(uid) !== after.get(uid));
    assert.ok(moved.every((uid) => after.get(uid) === "n4"), "only to the new node");
    assert.ok(moved.length >= 3 && moved.length <= 20, `about a quarter moved: ${moved.length}`);
    // Each moved user's client was told, and reconnected with one 303; the others stayed.
    await assertMovedOnce(followers, moved);
    assert.deepEqual(nodes.live().slice(0, 3).map((node) => node.pid), pids);
    for (const pid of pids) Deno.kill(pid, "SIGCONT"); // alive: throws otherwise
    await assertPublished(nodes, publishers);
  },
);

clusterTest(
  "cluster=redis: a node leaves on SIGTERM under publishing; its users move with one 303",
  ["n1", "n2", "n3"],
  async (nodes, follow) => {
    const before = await owners(nodes);
    const survivors = survivorsOf(nodes);
    const followers = await follow(USERS, (i) => survivors()[i % 2]);
    const publishers = await publishAround(survivors, async () => {
      assert.equal(await stopNode(nodes, "n3", "SIGTERM"), 0);
      await nodes.settled(["n1", "n2"]);
    });
    const moved = USERS.filter((uid) => before.get(uid) === "n3");
    assert.ok(moved.length >= 5, `n3's users: ${moved.length}`);
    await assertMovedOnce(followers, moved);
    await assertPublished(nodes, publishers);
  },
);

clusterTest(
  "cluster=redis: kill -9 under load; within the lease + 2 s its users are served again",
  ["n1", "n2", "n3"],
  async (nodes, follow) => {
    const before = await owners(nodes);
    const survivors = survivorsOf(nodes);
    const victims = USERS.filter((uid) => before.get(uid) === "n3");
    const followers = await follow(victims, (i) => survivors()[i % 2]);
    const publishers = new Publishers(USERS, survivors);
    await delay(1500);
    await stopNode(nodes, "n3", "SIGKILL");
    const killedAt = Date.now();
    const ackedBefore = publishers.acked.slice();
    // Served again: connected to a survivor, and given what was acknowledged before the kill.
    const served = await eventually(
      () =>
        followers.every((f) =>
          f.reconnects.length > 0 &&
          ackedBefore.every((a) => a.uid !== f.uid || f.current.get(a.s) === a.body)
        ),
      20_000,
    );
    const servedAfterMs = Date.now() - killedAt;
    assert.ok(served, "the killed node's users were not served again");
    const connectedAfter = Math.max(...followers.map((f) => f.reconnects[0].afterMs));
    console.log(
      `kill -9: ${victims.length} users connected again within ${connectedAfter} ms of losing ` +
        `their connection, served their backlog ${servedAfterMs} ms after the kill`,
    );
    assert.ok(servedAfterMs <= (LEASE_SEC + 2) * 1000, `served again after ${servedAfterMs} ms`);
    // /pub to them answers ok again (admission control may still shed a request for a
    // moment: the failover held requests for the moved uids, which slowed the node's answers).
    for (const uid of victims) {
      let answer;
      assert.ok(
        await eventually(async () => {
          answer = await survivors()[0].admin(`/pub?to=${uid}&from=op`, {
            method: "POST",
            body: "after the failover",
          });
          return answer.status === 200;
        }, 5_000),
        `/pub to ${uid}: ${JSON.stringify(answer)}`,
      );
    }
    await publishers.stop();
    await nodes.settled(["n1", "n2"]);
    // Each got its whole backlog: every message acknowledged to it, before and after.
    await delay(500);
    for (const follower of followers) {
      for (const a of publishers.of(follower.uid)) {
        assert.equal(follower.received.get(a.s), a.body, `${follower.uid} s=${a.s}`);
      }
    }
    await assertAllStoredOnce(nodes.live()[0], USERS, publishers.acked);
  },
);

clusterTest(
  "cluster=redis: SIGSTOP past the lease, then SIGCONT: no (uid, s) twice, nothing lost",
  ["n1", "n2", "n3"],
  async (nodes, follow) => {
    let writer: RawClient | undefined;
    try {
      const [n1, , paused] = nodes.live();
      const before = await owners(nodes);
      // A uid of the paused node that the others keep publishing to while it is stopped, and a
      // client of the same shard that sends it messages meanwhile: they wait in the socket and
      // reach the shard the moment it wakes, with its stale numbering cached.
      const target = USERS.find((uid) => before.get(uid) === "n3")!;
      const shardOf = async (uid: string) =>
        String((await n1.admin(`/shard?uid=${uid}`)).body.result);
      let sender = "";
      for (let i = 0; sender === ""; i++) {
        if (await shardOf(`w${i}`) === await shardOf(target)) sender = `w${i}`;
      }
      const connect = await RawClient.connect(paused.clientPort, sender);
      assert.equal(connect.answer.status, 200);
      writer = connect.client;
      // Publishers enter everywhere, the paused node too: what it acknowledges must hold.
      const publishers = new Publishers(USERS, () => nodes.live(), 6);
      // (Not held up for long by a forward to the stopped node: the others serve it soon.)
      const toTarget = new Publishers([target], () => [n1], 1, 20, 1000, "target");
      await follow(USERS, (i) => nodes.live()[i % 2]);
      await delay(1500);
      Deno.kill(paused.pid, "SIGSTOP");
      for (let m = 0; m < 20; m++) await writer.send({ y: 3, t: target, b: `stale ${m}` });
      await delay(LEASE_SEC * 1000 * 2 + 1000);
      // The others took its uids meanwhile.
      const survivorsView = await n1.admin("/cluster");
      assert.deepEqual(
        (survivorsView.body.result as ClusterView).members.map((m) => m.id),
        ["n1", "n2"],
      );
      Deno.kill(paused.pid, "SIGCONT");
      // It finds its lease gone, forgets everything and joins again.
      await nodes.settled(["n1", "n2", "n3"], 20_000);
      await delay(3000);
      await publishers.stop();
      await toTarget.stop();
      const fenced = (paused.log().match(/storage: fenced/g) ?? []).length;
      console.log(
        `SIGSTOP: ${publishers.acked.length + toTarget.acked.length} acknowledged, ` +
          `${publishers.refused + toTarget.refused} refused; ${fenced} commits of the paused ` +
          "node refused by its fence",
      );
      assert.match(paused.log(), /lease expired/);
      const metrics = await (await fetch(`http://127.0.0.1:${paused.adminPort}/metrics`)).text();
      assert.match(metrics, /^ipush_cluster_fenced_total 1$/m);
      // Enough to mean something: one publish in flight waits out each hold (up to 5 s), so on
      // a busy box the count is low (17 in one whole-suite run); a test of nothing would be 0.
      assert.ok(toTarget.acked.length >= 10, `published ${toTarget.acked.length} to ${target}`);
      await assertAllStoredOnce(n1, USERS, [...publishers.acked, ...toTarget.acked]);
    } finally {
      writer?.close();
    }
  },
);

clusterTest(
  "cluster=redis: a dead member's channel copies are replayed by the survivor, and not stored again once it is back",
  ["n1", "n2"],
  async (nodes) => {
    const { n1, member, publish, assertCopies } = await newsThroughN1(nodes);
    await stopNode(nodes, "n2", "SIGKILL");
    // Before n2's lease lapses nobody stores the member's copies: n1 replays them when it
    // takes the member over.
    const waiting = ["w1", "w2"];
    await publish(waiting);
    await nodes.settled(["n1"]);
    await assertCopies(waiting);
    // n1 serves the member now and stores its copies; n2's group is left behind them.
    const bodies = ["one", "two", "three"];
    await publish(bodies);
    await nodes.start("n2");
    await nodes.settled(["n1", "n2"]);
    assert.equal(await nodes.ownerOf(member, n1), "n2");
    await delay(1000);
    await assertCopies([...waiting, ...bodies]);
  },
);

clusterTest(
  "cluster=redis: a member paused past its lease gets every channel message once, by the survivor and back home",
  ["n1", "n2"],
  async (nodes) => {
    const n2 = nodes.nodes.get("n2")!;
    try {
      const { n1, member, publish, assertCopies } = await newsThroughN1(nodes);
      await publish(["before"]);
      Deno.kill(n2.pid, "SIGSTOP");
      nodes.nodes.delete("n2");
      // Its lease still runs: nobody stores the member's copies of these; n1 replays them.
      await publish(["waiting"]);
      await nodes.settled(["n1"]);
      await publish(["served"]);
      await assertCopies(["before", "waiting", "served"]);
      // Woken, it finds its lease gone, joins again and takes the member back; its bus starts
      // at the stream's end, so it stores none of those again.
      Deno.kill(n2.pid, "SIGCONT");
      nodes.nodes.set("n2", n2);
      await nodes.settled(["n1", "n2"], 20_000);
      assert.equal(await nodes.ownerOf(member, n1), "n2");
      await publish(["home"]);
      await assertCopies(["before", "waiting", "served", "home"]);
    } finally {
      // Back in the cluster whatever happened, so that stopAll wakes and kills it.
      nodes.nodes.set("n2", n2);
    }
  },
);
