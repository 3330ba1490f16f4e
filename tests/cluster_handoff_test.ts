/**
 * End to end: a Redis-managed cluster (`--cluster=redis`) whose nodes each keep their own
 * sqlite files, three nodes × two workers on loopback with a real Redis, under continuous
 * publishing to many uids. A fourth node joins (about a quarter of the uids move to it), then
 * a node leaves on SIGTERM: each moving uid's state is handed to its new owner (docs/cluster.md,
 * "The embedded store"), so every acknowledged message is listed once, `s` keeps increasing
 * and is never numbered again after a move, and each device's cursor moves with its uid. And a
 * node killed with -9, or paused past its lease, hands nothing off: its uids are refused as
 * `state lost`, never numbered from 1 again, until it is back with its files. And a hand-off
 * the new owner refuses is kept, tried again, and not said applied. Heavy on two cores: run
 * this file alone.
 */

import assert from "node:assert/strict";
import { startRedis } from "../scripts/redis.ts";
import { connected, RawClient, settle } from "./client.ts";
import {
  assertAllStoredOnce,
  assertChannelCopies,
  assertMovedOnce,
  channelBodies,
  type ClusterView,
  Follower,
  membershipFlags,
  Publishers,
  publishToChannel,
  TestCluster,
} from "./cluster_redis.ts";
import {
  type Daemon,
  type DaemonOptions,
  delay,
  eventually,
  freePortRun,
  whilePortTaken,
} from "./harness.ts";

// At module level: Redis outlives single tests, not the file (nor the process).
const redis = await startRedis();
const USERS = Array.from({ length: 60 }, (_, i) => `user${i}`);
/** The device whose cursor each uid's state must carry across the moves. */
const TABLET = "tablet";

/** Starts node `id` of `nodes` on shard ports nothing else was told of (`dir`: a restart). */
function start(nodes: TestCluster, id: string, options: DaemonOptions = {}): Promise<Daemon> {
  return whilePortTaken(() => nodes.start(id, [`--shard_port_base=${freePortRun(2)}`], options));
}

async function owners(nodes: TestCluster, via: Daemon): Promise<Map<string, string>> {
  return new Map(
    await Promise.all(USERS.map(async (uid) => [uid, await nodes.ownerOf(uid, via)] as const)),
  );
}

/** Connects the uid's tablet, acks everything it is given, and goes; the cursor it left. */
async function ackOnTablet(entry: Daemon, uid: string): Promise<number> {
  const tablet = await connected(entry.clientPort, uid, TABLET);
  try {
    const seqs = (await settle(tablet)).map((m) => m.s).filter((s) => typeof s === "number");
    const cursor = Math.max(0, ...seqs as number[]);
    if (cursor > 0) await tablet.send({ y: 5, s: cursor });
    // The ack is taken before the heartbeat after it is answered.
    await settle(tablet);
    return cursor;
  } finally {
    tablet.close();
  }
}

/** `/msg` of the uid's `device` on `via`: the `s` it lists. */
async function listed(via: Daemon, uid: string, device = ""): Promise<number[]> {
  const answer = await via.admin(`/msg?uid=${uid}${device ? `&device=${device}` : ""}`);
  assert.equal(answer.status, 200, `/msg ${uid} ${device}: ${JSON.stringify(answer.body)}`);
  return (answer.body.result as string[]).map((text) => JSON.parse(text).s as number);
}

let probes = 0;
/** `/pub` to `uid` through `via`, with a receipt (each body its own). */
function probe(via: Daemon, uid: string) {
  const body = `"probe${probes++}"`;
  return via.admin(`/pub?to=${uid}&from=op&receipt=1`, { method: "POST", body });
}

/** Each of `uids` ends up refused as lost (at first as unreachable), never numbered afresh. */
async function assertRefusedAsLost(via: Daemon, uids: string[]): Promise<void> {
  for (const uid of uids) {
    let answer = await probe(via, uid);
    assert.ok(
      await eventually(async () => {
        answer = await probe(via, uid);
        assert.notEqual(answer.status, 200, `${uid} numbered without its state`);
        return answer.body.error === "state lost";
      }, 10_000),
      `${uid}: ${JSON.stringify(answer)}`,
    );
    assert.equal(answer.status, 503);
  }
}

/** A counter summed over a node's shards, from its `/metrics`. */
async function metric(node: Daemon, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${node.adminPort}/metrics`)).text();
  const lines = text.split("\n").filter((line) => line.startsWith(`${name}{`));
  return lines.reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(" ") + 1)), 0);
}

Deno.test("cluster=redis with sqlite: a join and a SIGTERM leave hand each moving uid's state over", async () => {
  const nodes = new TestCluster([...membershipFlags("h1", redis.url), "--storage=sqlite"]);
  const followers: Follower[] = [];
  let publishers: Publishers | undefined;
  const startedAt = Date.now();
  try {
    for (const id of ["n1", "n2", "n3"]) await start(nodes, id);
    await nodes.settled(["n1", "n2", "n3"]);
    const [n1, n2, n3] = ["n1", "n2", "n3"].map((id) => nodes.nodes.get(id)!);
    // Clients enter by the two nodes that stay; publishers by every node that serves.
    for (const [i, uid] of USERS.entries()) {
      followers.push(new Follower(uid, () => [n1, n3][i % 2]));
    }
    await Promise.all(followers.map((f) => f.start()));
    publishers = new Publishers(USERS, () => nodes.live());
    await delay(1500);
    const cursors = new Map(
      await Promise.all(USERS.map(async (uid) => [uid, await ackOnTablet(n1, uid)] as const)),
    );
    assert.ok([...cursors.values()].some((cursor) => cursor > 0), "some tablet acked");
    await delay(500);

    // A fourth node joins: about a quarter of the uids move to it, with their state.
    const beforeJoin = await owners(nodes, n1);
    for (const follower of followers) follower.mark();
    const n4 = await start(nodes, "n4");
    await nodes.settled(["n1", "n2", "n3", "n4"]);
    await delay(1500);
    const afterJoin = await owners(nodes, n1);
    const joined = USERS.filter((uid) => beforeJoin.get(uid) !== afterJoin.get(uid));
    assert.ok(joined.every((uid) => afterJoin.get(uid) === "n4"), "only to the new node");
    assert.ok(joined.length >= 6 && joined.length <= 30, `about a quarter: ${joined.length}`);
    await assertMovedOnce(followers, joined);
    const importedByJoin = await metric(n4, "ipush_cluster_imported_uids_total");

    // n2 leaves on SIGTERM: its uids go to the others, with their state.
    const leaving = USERS.filter((uid) => afterJoin.get(uid) === "n2");
    assert.ok(leaving.length >= 5, `n2's uids: ${leaving.length}`);
    for (const follower of followers) follower.mark();
    nodes.nodes.delete("n2");
    assert.equal(await n2.stop("SIGTERM"), 0, n2.log());
    await nodes.settled(["n1", "n3", "n4"]);
    await delay(1500);
    await publishers.stop();
    await assertMovedOnce(followers, leaving);

    // Every acknowledged message once, under its s; s never numbered twice for a uid.
    assert.ok(publishers.acked.length > 300, `published ${publishers.acked.length}`);
    for (const uid of USERS) {
      const seqs: number[] = publishers.of(uid).map((a) => a.s);
      assert.equal(new Set(seqs).size, seqs.length, `${uid}: an s acknowledged twice: ${seqs}`);
    }
    await assertAllStoredOnce(n3, USERS, publishers.acked);
    // Each tablet's cursor came along: it is given exactly what it had not acked.
    for (const uid of USERS) {
      const all = await listed(n4, uid);
      const cursor = cursors.get(uid)!;
      assert.deepEqual(await listed(n4, uid, TABLET), all.filter((s) => s > cursor), uid);
    }
    // ... because their state was handed over (not read from anywhere else).
    assert.equal(importedByJoin, joined.length);
    console.log(
      `hand-off: ${joined.length} uids to n4, ${leaving.length} from n2; ` +
        `${publishers.acked.length} acknowledged, ${publishers.refused} refused; ` +
        `${Date.now() - startedAt} ms`,
    );
  } finally {
    await publishers?.stop();
    await Promise.all(followers.map((f) => f.stop()));
    await nodes.stopAll();
  }
});

/** How a node is lost with its state, and how it comes back with its files. */
interface Loss {
  name: string;
  lose(node: Daemon): Promise<void>;
  /** Brings it back; resolves with the node as it runs then. */
  revive(nodes: TestCluster, node: Daemon): Promise<Daemon>;
}

const LOSSES: Loss[] = [
  {
    name: "killed with -9, restarted on its files",
    lose: async (node) => void await node.stop("SIGKILL"),
    revive: (nodes, node) => start(nodes, "n3", { dir: node.dir }),
  },
  {
    name: "paused past its lease (SIGSTOP), then woken",
    lose: (node) => Promise.resolve(Deno.kill(node.pid, "SIGSTOP")),
    revive: (nodes, node) => {
      Deno.kill(node.pid, "SIGCONT");
      // It finds its lease gone, forgets every uid, joins again and takes its uids back.
      nodes.nodes.set("n3", node);
      return Promise.resolve(node);
    },
  },
];

for (const loss of LOSSES) {
  Deno.test(`cluster=redis with sqlite: a node ${loss.name}: its uids are refused as state lost until it is back`, async () => {
    const nodes = new TestCluster([
      ...membershipFlags(`lost${LOSSES.indexOf(loss)}`, redis.url),
      "--storage=sqlite",
    ]);
    let publishers: Publishers | undefined;
    let lost: Daemon | undefined;
    try {
      for (const id of ["n1", "n2", "n3"]) await start(nodes, id);
      await nodes.settled(["n1", "n2", "n3"]);
      const [n1, n2, n3] = ["n1", "n2", "n3"].map((id) => nodes.nodes.get(id)!);
      const before = await owners(nodes, n1);
      const victims = USERS.filter((uid) => before.get(uid) === "n3");
      assert.ok(victims.length >= 10, `n3's uids: ${victims.length}`);
      // A channel with a member on each side: the lost node's and one the survivors serve.
      const survivor = USERS.find((uid) => before.get(uid) !== "n3")!;
      const members = [victims[1], survivor];
      for (const uid of members) {
        assert.deepEqual((await n1.admin(`/sub?uid=${uid}&cid=news`)).body, { result: "ok" });
      }
      publishers = new Publishers(USERS, () => [n1, n2]);
      await delay(1500);
      nodes.nodes.delete("n3");
      lost = n3;
      await loss.lose(n3);
      await nodes.settled(["n1", "n2"]);
      await assertRefusedAsLost(n1, victims);
      assert.equal((await probe(n1, survivor)).status, 200);
      // Published while n3 is away: nobody stores its member's copies until it is back.
      const away = ["away1", "away2", "away3"];
      await publishToChannel(n1, "news", away);
      const { client, answer } = await RawClient.connect(n1.clientPort, victims[0]);
      assert.equal(answer.status, 200);
      assert.deepEqual(await client.next(), { error: "state lost" });
      client.close();

      // Back with its files: it takes its uids back and numbers on from its own state.
      const ackedBefore = new Map(victims.map((uid) => [uid, publishers!.of(uid).map((a) => a.s)]));
      await loss.revive(nodes, n3);
      lost = undefined;
      await nodes.settled(["n1", "n2", "n3"], 20_000);
      for (const uid of victims) {
        let answer = await probe(n1, uid);
        // A node woken from a pause first works off what queued meanwhile, and its admission
        // may refuse for a moment (`overloaded`, with Retry-After): that is retried, only that.
        await eventually(async () => {
          if (answer.body.error !== "node n3: overloaded") return true;
          answer = await probe(n1, uid);
          return false;
        }, 5_000);
        assert.equal(answer.status, 200, `${uid}: ${JSON.stringify(answer.body)}`);
        const s = (answer.body.result as { s: number }).s;
        assert.ok(s > Math.max(0, ...ackedBefore.get(uid)!), `${uid}: s ${s} once it is back`);
      }
      await publishToChannel(n2, "news", ["back"]);
      // Each member has every channel message once: n3 caught up on what it missed.
      for (const uid of members) await assertChannelCopies(n1, uid, "news", [...away, "back"]);
      await delay(1000);
      await publishers.stop();
      await assertAllStoredOnce(n1, USERS, publishers.acked);
    } finally {
      await publishers?.stop();
      if (lost) {
        try {
          Deno.kill(lost.pid, "SIGCONT");
        } catch { /* gone */ }
        await lost.stop("SIGKILL");
      }
      await nodes.stopAll();
    }
  });
}

Deno.test("cluster=redis with sqlite: a node that left and starts again does not store twice what the others stored", async () => {
  const nodes = new TestCluster([...membershipFlags("again", redis.url), "--storage=sqlite"]);
  try {
    for (const id of ["n1", "n2", "n3"]) await start(nodes, id);
    await nodes.settled(["n1", "n2", "n3"]);
    const [n1, n3] = ["n1", "n3"].map((id) => nodes.nodes.get(id)!);
    const owned = await owners(nodes, n1);
    const members = USERS.filter((uid) => owned.get(uid) === "n3").slice(0, 2);
    assert.equal(members.length, 2, "n3 owns two uids at least");
    for (const uid of members) {
      assert.deepEqual((await n1.admin(`/sub?uid=${uid}&cid=news`)).body, { result: "ok" });
    }
    await publishToChannel(n1, "news", ["before"]);
    // n3 leaves on SIGTERM, handing its uids off; the others store their copies meanwhile.
    nodes.nodes.delete("n3");
    assert.equal(await n3.stop("SIGTERM"), 0, n3.log());
    await nodes.settled(["n1", "n2"]);
    await publishToChannel(n1, "news", ["while1", "while2"]);
    // Back on its files: it takes its uids back with those copies, and catches up on nothing.
    await start(nodes, "n3", { dir: n3.dir });
    await nodes.settled(["n1", "n2", "n3"], 20_000);
    for (const uid of members) assert.equal(await nodes.ownerOf(uid, n1), "n3");
    await publishToChannel(n1, "news", ["after"]);
    for (const uid of members) {
      await assertChannelCopies(n1, uid, "news", ["before", "while1", "while2", "after"]);
    }
  } finally {
    await nodes.stopAll();
  }
});

Deno.test("cluster=redis with sqlite: a node killed with -9 for good: the operator accepts its loss, and its uids are numbered above the floor, also once it is back after all", async () => {
  const token = "lost-ops";
  const nodes = new TestCluster([...membershipFlags("accept", redis.url), "--storage=sqlite"]);
  let publishers: Publishers | undefined;
  try {
    for (const id of ["n1", "n2", "n3"]) await start(nodes, id, { adminToken: token });
    await nodes.settled(["n1", "n2", "n3"]);
    const [n1, n2, n3] = ["n1", "n2", "n3"].map((id) => nodes.nodes.get(id)!);
    const before = await owners(nodes, n1);
    const victims = USERS.filter((uid) => before.get(uid) === "n3");
    const others = USERS.filter((uid) => before.get(uid) !== "n3");
    assert.ok(victims.length >= 10, `n3's uids: ${victims.length}`);
    publishers = new Publishers(USERS, () => [n1, n2]);
    await delay(1500);
    nodes.nodes.delete("n3");
    await n3.stop("SIGKILL");
    const ackedByN3 = publishers.acked.filter((a) => victims.includes(a.uid)).map((a) => a.s);
    assert.ok(ackedByN3.length > 10, `acknowledged by n3: ${ackedByN3.length}`);
    await nodes.settled(["n1", "n2"]);
    await assertRefusedAsLost(n1, victims);

    // The operator sees why: n3 is lost, its 2 of the 6 shards of the map it died in.
    const { lost } = (await n2.admin("/cluster")).body.result as ClusterView;
    assert.deepEqual(lost.map(({ since: _, ...rest }) => rest), [
      { node: "n3", shards: 2, map_shards: 6 },
    ]);
    assert.ok(Math.abs(Date.parse(lost[0].since!) - Date.now()) < 30_000, String(lost[0].since));
    // The files are gone for good: they accept it. Not without the token, not for a live
    // member, not for a node never lost.
    const accept = (node: string, init: RequestInit = {}) =>
      n1.admin(`/cluster/lost?node=${node}`, { method: "DELETE", ...init });
    assert.deepEqual(
      await accept("n3", { headers: { authorization: "Bearer wrong" } }),
      { status: 401, body: { error: "unauthorized" } },
    );
    assert.equal((await accept("n2")).status, 409);
    assert.deepEqual(await accept("n4"), {
      status: 404,
      body: { error: "no lost record of node n4" },
    });
    await assertRefusedAsLost(n2, victims.slice(0, 3));
    const accepted = await accept("n3");
    assert.equal(accepted.status, 200, JSON.stringify(accepted.body));
    const { floor } = accepted.body.result as { floor: number };
    assert.ok(floor > Math.max(...ackedByN3), `floor ${floor}`);
    assert.deepEqual(await accept("n3"), {
      status: 404,
      body: { error: "no lost record of node n3" },
    });

    // Every survivor serves them now, numbered above the floor.
    const probed = new Map<string, number>();
    for (const uid of victims) {
      for (const via of [n1, n2]) {
        let answer = await probe(via, uid);
        await eventually(async () => (answer = await probe(via, uid)).status === 200, 5_000);
        assert.equal(answer.status, 200, `${uid}: ${JSON.stringify(answer.body)}`);
        const s = (answer.body.result as { s: number }).s;
        assert.ok(s > floor, `${uid}: s ${s} at or below the floor ${floor}`);
        probed.set(uid, s);
      }
    }
    const view = (await n2.admin("/cluster")).body.result as ClusterView;
    assert.deepEqual(view.lost, []);
    assert.deepEqual(view.accepted.map((a) => [a.node, a.floor]), [["n3", floor]]);
    await delay(1000);
    await publishers.stop();

    // No s acknowledged twice for a uid; each one of the victims' either n3's or above the floor.
    for (const uid of USERS) {
      const seqs: number[] = publishers.of(uid).map((a) => a.s);
      assert.equal(new Set(seqs).size, seqs.length, `${uid}: an s acknowledged twice: ${seqs}`);
    }
    const afterAccept = publishers.acked.filter((a) => victims.includes(a.uid) && a.s > floor);
    assert.ok(afterAccept.length > 0, "published to the victims once accepted");
    assert.equal(
      publishers.acked.filter((a) => victims.includes(a.uid)).length,
      ackedByN3.length + afterAccept.length,
    );
    // What n3 acknowledged is gone with its files (accepted); everything since is stored once.
    await assertAllStoredOnce(n1, others, publishers.acked);
    await assertAllStoredOnce(n2, victims, afterAccept);

    // The operator was wrong: n3 comes back with its files after all. It takes its uids back
    // with what the survivors numbered meanwhile (its own older messages of them give way), is
    // not recorded lost again, and numbers on above every s given.
    const revived = await start(nodes, "n3", { dir: n3.dir, adminToken: token });
    await nodes.settled(["n1", "n2", "n3"], 20_000);
    for (const uid of victims) {
      const answer = await probe(n1, uid);
      assert.equal(answer.status, 200, `${uid}: ${JSON.stringify(answer.body)}`);
      const s = (answer.body.result as { s: number }).s;
      const given = Math.max(probed.get(uid)!, ...publishers.of(uid).map((a) => a.s));
      assert.ok(s > given, `${uid}: s ${s} once n3 is back, ${given} given before`);
      assert.ok((await listed(revived, uid)).every((seq) => seq > floor), uid);
    }
    await assertAllStoredOnce(revived, victims, afterAccept);
    assert.deepEqual(((await n1.admin("/cluster")).body.result as ClusterView).lost, []);
    console.log(
      `accepted: ${victims.length} uids of n3, ${ackedByN3.length} acknowledged by it (s up to ` +
        `${Math.max(...ackedByN3)}), floor ${floor}, ${afterAccept.length} acknowledged since`,
    );
  } finally {
    await publishers?.stop();
    await nodes.stopAll();
  }
});

Deno.test("cluster=redis with sqlite: channel messages published through every node while one joins and one leaves reach each member once", async () => {
  // `/msg` lists every copy: a fast box publishes more than the default limit of 1,000.
  const nodes = new TestCluster([
    ...membershipFlags("moving", redis.url),
    "--storage=sqlite",
    "--msg_limit=100000",
  ]);
  const published: string[] = [];
  let publishing = true;
  let publisher: Promise<void> | undefined;
  try {
    for (const id of ["n1", "n2", "n3"]) await start(nodes, id);
    await nodes.settled(["n1", "n2", "n3"]);
    const node = (id: string) => nodes.nodes.get(id)!;
    const n1 = node("n1");
    const members = USERS.slice(0, 40);
    for (const uid of members) {
      assert.deepEqual((await n1.admin(`/sub?uid=${uid}&cid=news`)).body, { result: "ok" });
    }
    // One publisher through each node that serves in turn, as fast as they answer: the one
    // that joins from the moment it is up (its members arrive with the hand-off, during the
    // hold), the one that leaves until it is told to (a load balancer takes it out first).
    const through = ["n1", "n2", "n3"];
    publisher = (async () => {
      for (let i = 0; publishing; i++) {
        const body = `c${i}`;
        await publishToChannel(node(through[i % through.length]), "news", [body]);
        published.push(body);
      }
    })();
    await delay(1000);
    const before = await owners(nodes, n1);
    await start(nodes, "n4");
    through.push("n4");
    await nodes.settled(["n1", "n2", "n3", "n4"]);
    await delay(1000);
    const joined = await owners(nodes, n1);
    through.splice(through.indexOf("n3"), 1);
    const n3 = node("n3");
    nodes.nodes.delete("n3");
    assert.equal(await n3.stop("SIGTERM"), 0, n3.log());
    await nodes.settled(["n1", "n2", "n4"]);
    await delay(1000);
    publishing = false;
    await publisher;
    const after = await owners(nodes, n1);
    const movedAtJoin = members.filter((uid) => before.get(uid) !== joined.get(uid));
    const movedAtLeave = members.filter((uid) => joined.get(uid) !== after.get(uid));
    assert.ok(movedAtJoin.length >= 3, `members that moved at the join: ${movedAtJoin.length}`);
    assert.ok(movedAtLeave.length >= 3, `members that moved at the leave: ${movedAtLeave.length}`);
    assert.ok(published.length > 100, `published ${published.length}`);
    // Every member, moved or not: each acknowledged message once (a copy replayed at the move
    // may come after one published later, so as a set).
    await delay(1000);
    for (const uid of members) {
      const bodies = await channelBodies(n1, uid, "news");
      assert.deepEqual(
        bodies.toSorted(),
        published.toSorted(),
        `${uid} (moved at the join: ${movedAtJoin.includes(uid)}, at the leave: ${
          movedAtLeave.includes(uid)
        })`,
      );
    }
    console.log(
      `join and leave: ${published.length} channel messages through every node, ` +
        `${movedAtJoin.length} members moved at the join, ${movedAtLeave.length} at the leave`,
    );
  } finally {
    publishing = false;
    await publisher?.catch(() => {});
    await nodes.stopAll();
  }
});

Deno.test("cluster=redis with sqlite: a hand-off the new owner refuses is kept and tried again, not applied", async () => {
  const nodes = new TestCluster([...membershipFlags("h3", redis.url), "--storage=sqlite"]);
  let publishers: Publishers | undefined;
  try {
    for (const id of ["n1", "n2", "n3"]) await start(nodes, id);
    await nodes.settled(["n1", "n2", "n3"]);
    const [n1, n2, n3] = ["n1", "n2", "n3"].map((id) => nodes.nodes.get(id)!);
    publishers = new Publishers(USERS, () => [n1, n2, n3]);
    await delay(1500);
    // A new node that asks for a token the others do not send: every import to it is a 401.
    const n4 = await start(nodes, "n4", { adminToken: "not-the-cluster-s" });
    await delay(3000);
    const view = (await n1.admin("/cluster")).body.result as ClusterView;
    assert.deepEqual(view.members.map((m) => m.id), ["n1", "n2", "n3", "n4"]);
    // n4 has nothing to hand off; each of the others has uids for it, and has not applied.
    for (const member of view.members.filter((m) => m.id !== "n4")) {
      assert.ok(member.applied < view.latest, `${member.id} applied ${member.applied}`);
    }
    assert.equal(((await n4.admin("/cluster")).body.result as ClusterView).held, true);
    for (const node of [n1, n2, n3]) {
      assert.match(node.log(), /uids not handed off to their new owners \(node n4 unreachable/);
    }
    // It goes again: the uids are where they were, with everything acknowledged meanwhile.
    nodes.nodes.delete("n4");
    assert.equal(await n4.stop("SIGTERM"), 0, n4.log());
    await nodes.settled(["n1", "n2", "n3"]);
    await delay(1000);
    await publishers.stop();
    assert.ok(publishers.acked.length > 100, `published ${publishers.acked.length}`);
    for (const uid of USERS) {
      const seqs: number[] = publishers.of(uid).map((a) => a.s);
      assert.equal(new Set(seqs).size, seqs.length, `${uid}: an s acknowledged twice: ${seqs}`);
    }
    await assertAllStoredOnce(n1, USERS, publishers.acked);
  } finally {
    await publishers?.stop();
    await nodes.stopAll();
  }
});
