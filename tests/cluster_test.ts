/**
 * End to end: a cluster of three nodes × two workers on loopback with a real Redis —
 * routing, forwarding, channels across nodes, presence, and a node that dies.
 */

import assert from "node:assert/strict";
import { startRedis } from "../scripts/redis.ts";
import { connected, RawClient, settle } from "./client.ts";
import { type Daemon, delay, publish, startStaticCluster, uidsOwnedBy } from "./harness.ts";

const NODES = ["node1", "node2", "node3"];
const PRESENCE_TTL_SEC = 2;
/** Every node's admin API, and so every node-to-node request, needs it. */
const ADMIN_TOKEN = "cluster-admin-token";

Deno.test("cluster: 3 nodes × 2 workers with Redis and an admin token", async (t) => {
  const redis = await startRedis();
  const nodes: Daemon[] = [];
  try {
    nodes.push(
      ...await startStaticCluster(NODES, () => [
        `--redis_url=${redis.url}`,
        `--presence_ttl_sec=${PRESENCE_TTL_SEC}`,
      ], { adminToken: ADMIN_TOKEN }),
    );
    const [n1, n2, n3] = nodes;
    const users: string[] = [];
    for (const node of nodes) users.push(...await uidsOwnedBy(n1, node, "u"));

    await t.step("without the token every node answers 401, /cluster/ops too", async () => {
      for (const node of nodes) {
        for (const [path, method] of [["/shard?uid=u1", "GET"], ["/cluster/ops", "POST"]]) {
          const answer = await node.admin(path, {
            method,
            body: method === "POST" ? "[]" : undefined,
            headers: { authorization: "Bearer not-the-token" },
          });
          assert.deepEqual([answer.status, answer.body], [401, { error: "unauthorized" }]);
        }
      }
    });

    await t.step("/shard gives the same answer on every node", async () => {
      for (const uid of users) {
        const answers = await Promise.all(nodes.map((n) => n.admin(`/shard?uid=${uid}`)));
        assert.equal(new Set(answers.map((a) => a.body.result)).size, 1);
      }
    });

    await t.step("entry at any node's front door reaches the owner in one redirect", async () => {
      for (const entry of nodes) {
        for (const uid of users) {
          const { client, answer, redirected } = await RawClient.connect(entry.clientPort, uid);
          assert.equal(answer.status, 200);
          assert.ok(redirected);
          client.close();
        }
      }
    });

    await t.step("a shard of another node redirects straight to the owner", async () => {
      const client = await RawClient.open(n1.shardPorts[0]);
      const answer = await client.request(
        `GET /connect?uid=${users[2]}&password=x HTTP/1.1\r\n\r\n`,
      );
      client.close();
      assert.equal(answer.status, 303);
      const owner = String((await n1.admin(`/shard?uid=${users[2]}`)).body.result);
      assert.ok(answer.headers.get("location")!.startsWith(`http://${owner}/`));
    });

    await t.step("/pub on one node reaches a user owned by another", async () => {
      const client = await connected(n3.clientPort, users[2]);
      assert.deepEqual((await publish(n1, `to=${users[2]}`, "across")).body, { result: "ok" });
      assert.deepEqual(await client.next(), { y: 3, f: "op", t: users[2], b: "across", s: 1 });
      client.close();
      // /msg forwarded too: same answer on every node.
      const lists = await Promise.all(nodes.map((n) => n.admin(`/msg?uid=${users[2]}`)));
      for (const list of lists) assert.equal((list.body.result as string[]).length, 1);
    });

    await t.step("a client's y=3 reaches a user on another node", async () => {
      const sender = await connected(n1.clientPort, users[0]);
      const receiver = await connected(n2.clientPort, users[1]);
      await sender.send({ y: 3, t: users[1], b: "hi node2" });
      assert.deepEqual(await receiver.next(), {
        y: 3,
        f: users[0],
        t: users[1],
        b: "hi node2",
        s: 1,
      });
      sender.close();
      receiver.close();
    });

    await t.step("a channel gets one copy per subscriber on each node, in s order", async () => {
      for (const [i, uid] of users.entries()) {
        // Subscribe through a node that does not own the uid: forwarded to the owner.
        const via = nodes[(i + 1) % 3];
        assert.deepEqual((await via.admin(`/sub?uid=${uid}&cid=all-hands`)).body, {
          result: "ok",
        });
      }
      const clients = await Promise.all(users.map((uid, i) => connected(nodes[i].clientPort, uid)));
      for (const client of clients) await settle(client);
      for (let m = 0; m < 5; m++) {
        const entry = nodes[m % 3];
        assert.deepEqual((await publish(entry, "channel=all-hands", `m${m}`)).body, {
          result: "ok",
        });
      }
      // And one from a client, through the Redis bus (its own node's members too). Messages from
      // different publishers may interleave differently per user (the bus is asynchronous):
      // what holds is one copy each, in s order per user.
      await clients[2].send({ y: 4, c: "all-hands", b: "from a client" });
      try {
        for (const [i, client] of clients.entries()) {
          const got = [];
          while (got.length < 6) got.push(await client.next());
          assert.deepEqual(
            got.map((m) => m?.b).sort(),
            ["from a client", "m0", "m1", "m2", "m3", "m4"],
          );
          const seqs = got.map((m) => m?.s as number);
          assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), `${users[i]} in s order`);
          assert.equal(new Set(seqs).size, 6, "no duplicates");
          assert.deepEqual(await settle(client), [], `${users[i]}: exactly one copy each`);
        }
      } finally {
        for (const client of clients) client.close();
      }
    });

    await t.step(
      "presence: online with its connections and devices, and a channel's online members",
      async () => {
        const phone = await connected(n2.clientPort, users[1], "phone");
        const tablet = await connected(n1.clientPort, users[1], "tablet");
        const tab = await connected(n3.clientPort, users[1], "tablet");
        await settle(tab);
        await settle(phone);
        await settle(tablet);
        await delay(200);
        for (const n of nodes) {
          assert.deepEqual((await n.admin(`/presence?uid=${users[1]}`)).body.result, {
            uid: users[1],
            status: "online",
            connections: 3,
            devices: 2,
          });
        }
        assert.deepEqual((await n3.admin(`/presence?cid=all-hands`)).body.result, {
          cid: "all-hands",
          online: [{ uid: users[1], status: "online", connections: 3, devices: 2 }],
        });
        tab.close();
        tablet.close();
        phone.close();
        await delay(300);
        assert.deepEqual((await n3.admin(`/presence?uid=${users[1]}`)).body.result, {
          uid: users[1],
          status: "offline",
          connections: 0,
          devices: 0,
        });
      },
    );

    await t.step(
      "kill -9 of a node: its users go offline within the bound, /pub fails clearly",
      async () => {
        const client = await connected(n3.clientPort, users[2]);
        await settle(client);
        await delay(200);
        const before = (await n1.admin(`/presence?uid=${users[2]}`)).body.result;
        assert.equal((before as { status: string }).status, "online");
        await n3.stop("SIGKILL");
        client.close();
        const killedAt = Date.now();
        let status = "online";
        while (status === "online" && Date.now() - killedAt < (PRESENCE_TTL_SEC + 2) * 1000) {
          await delay(100);
          status = ((await n1.admin(`/presence?uid=${users[2]}`)).body.result as { status: string })
            .status;
        }
        assert.equal(status, "offline");
        assert.ok(Date.now() - killedAt <= PRESENCE_TTL_SEC * 1000 + 500, "within the TTL bound");
        const pub = await publish(n1, `to=${users[2]}`, "into the void");
        assert.equal(pub.status, 503);
        assert.match(String(pub.body.error), /node node3 unreachable/);
      },
    );
  } finally {
    for (const node of nodes) await node.stop();
    await redis.stop();
  }
});
