/**
 * End to end: the cluster bus is at least once and idempotent at the receiver. Three nodes
 * with a real Redis; one of them reaches Redis through a proxy that the test cuts for 5 s while
 * channel messages are published. Once it is back, its members have every message, once.
 */

import assert from "node:assert/strict";
import { startRedis } from "../scripts/redis.ts";
import { connected } from "./client.ts";
import { type Daemon, delay, eventually, publish, startStaticCluster } from "./harness.ts";

const NODES = ["node1", "node2", "node3"];

/** A TCP proxy to `target` that can be cut (every connection dropped, none taken) for a while. */
class CuttableProxy {
  readonly port: number;
  #target: number;
  #listener: Deno.Listener;
  #conns = new Set<Deno.Conn>();
  #accepting: Promise<void>;

  constructor(target: number) {
    this.#target = target;
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.port = (this.#listener.addr as Deno.NetAddr).port;
    this.#accepting = this.#accept();
  }

  async #accept(): Promise<void> {
    for await (const client of this.#listener) {
      try {
        const server = await Deno.connect({ hostname: "127.0.0.1", port: this.#target });
        this.#conns.add(client).add(server);
        const pipe = (from: Deno.Conn, to: Deno.Conn) =>
          from.readable.pipeTo(to.writable).catch(() => {}).finally(() => {
            for (const conn of [from, to]) {
              this.#conns.delete(conn);
              try {
                conn.close();
              } catch { /* closed */ }
            }
          });
        pipe(client, server);
        pipe(server, client);
      } catch {
        client.close();
      }
    }
  }

  /** Drops every connection and refuses new ones for `ms`. */
  async cut(ms: number): Promise<void> {
    this.#listener.close();
    await this.#accepting;
    for (const conn of this.#conns) {
      try {
        conn.close();
      } catch { /* closed */ }
    }
    this.#conns.clear();
    await delay(ms);
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: this.port });
    this.#accepting = this.#accept();
  }

  async close(): Promise<void> {
    this.#listener.close();
    await this.#accepting;
    for (const conn of this.#conns) {
      try {
        conn.close();
      } catch { /* closed */ }
    }
  }
}

Deno.test({
  name:
    "cluster bus: a node cut off from Redis for 5 s gets every channel message, once, and stores none it could not send",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const redis = await startRedis();
    const proxy = new CuttableProxy(redis.port);
    const nodes: Daemon[] = [];
    const cluster = `bus${Date.now()}`;
    try {
      nodes.push(
        ...await startStaticCluster(NODES, (_, i) => [
          `--redis_url=${i === 2 ? `redis://127.0.0.1:${proxy.port}` : redis.url}`,
          `--cluster_name=${cluster}`,
        ]),
      );
      const [n1, , n3] = nodes;
      /** A few uids of each node, subscribed (through node1) to the channel. */
      const members = new Map<number, string[]>();
      for (let i = 0; [...members.values()].flat().length < 9; i++) {
        const uid = `m${i}`;
        const shard = String((await n1.admin(`/shard?uid=${uid}`)).body.result);
        const k = nodes.findIndex((n) => n.shardPorts.some((p) => shard.endsWith(`:${p}`)));
        const list = members.get(k) ?? [];
        if (list.length < 3) members.set(k, [...list, uid]);
      }
      for (const uid of [...members.values()].flat()) {
        assert.deepEqual((await n1.admin(`/sub?uid=${uid}&cid=news`)).body, { result: "ok" });
      }
      const bodies: string[] = [];
      const send = async (body: string) => {
        assert.deepEqual((await publish(n1, "channel=news", body)).body, { result: "ok" });
        bodies.push(body);
      };
      await send("before");
      // A client of node3, which publishes on the channel too.
      const client = await connected(n3.clientPort, members.get(2)![0]);
      assert.deepEqual(await client.next(), {
        y: 4,
        f: "op",
        t: members.get(2)![0],
        c: "news",
        b: "before",
        s: 1,
      });
      const cut = proxy.cut(5_000);
      await delay(200);
      // While node3 cannot reach Redis: every /pub is acknowledged (Redis has it).
      for (let m = 0; m < 20; m++) {
        await send(`during ${m}`);
        await delay(100);
      }
      // Through node3 itself: the bus is out of its reach, so the message is refused and
      // stored for nobody, its own members neither (the check below lists every copy).
      const refused = await publish(n3, "channel=news", "refused");
      assert.equal(refused.status, 503, JSON.stringify(refused.body));
      assert.match(String(refused.body.error), /cluster bus unavailable/);
      // So is a client's: it hears why, and the stream stays.
      await client.send({ y: 4, c: "news", b: "refused too" });
      assert.match(String((await client.next())?.error), /cluster bus unavailable/);
      await cut;
      await send("after");
      const stored = async (uid: string) => {
        const owner = nodes[[...members].find(([, uids]) => uids.includes(uid))![0]];
        const answer = await owner.admin(`/msg?uid=${uid}`);
        return (answer.body.result as string[] ?? []).map((text) => JSON.parse(text).b as string);
      };
      for (const uid of members.get(2)!) {
        let got: string[] = [];
        assert.ok(
          await eventually(async () => (got = await stored(uid)).length >= bodies.length, 15_000),
          `${uid} on the cut-off node has ${got.length} of ${bodies.length}`,
        );
      }
      // Redelivered entries stored nothing new: each member, every message once.
      await delay(1000);
      for (const uid of [...members.values()].flat()) {
        assert.deepEqual((await stored(uid)).sort(), [...bodies].sort(), uid);
      }
      assert.match(n3.log(), /Redis at .* is reachable again/);
      // Its stream stayed: what was published meanwhile reaches it, and it publishes again.
      await client.send({ y: 4, c: "news", b: "from a client" });
      bodies.push("from a client");
      for (const uid of [...members.values()].flat()) {
        assert.ok(
          await eventually(async () => (await stored(uid)).includes("from a client"), 10_000),
          `${uid} has the client's message`,
        );
      }
      client.close();
    } finally {
      for (const node of nodes) await node.stop();
      await proxy.close();
      await redis.stop();
    }
  },
});
