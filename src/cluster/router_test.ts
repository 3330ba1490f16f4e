import assert from "node:assert/strict";
import { ServiceError } from "../core/errors.ts";
import type { ChannelRequest, OwnerOp, PubResult, UnicastRequest } from "../core/requests.ts";
import { ShardMap } from "../core/shard_map.ts";
import { newShardCounters } from "../stats/counters.ts";
import type { ClusterBus } from "./bus.ts";
import { type LocalShards, Router } from "./router.ts";

const OLD = new ShardMap([{ id: "n/0", host: "", port: 1 }, { id: "n/1", host: "", port: 2 }]);
const NEW = new ShardMap([...OLD.shards, { id: "n/2", host: "", port: 3 }]);

/**
 * Shards of one process whose map grows while the first batch travels: each shard answers a
 * line 421 when the map as it is on arrival gives its uid to another shard, as a shard does.
 */
function growingShards(): { local: LocalShards; asked: { shard: string; uids: string[] }[] } {
  let map = OLD;
  const asked: { shard: string; uids: string[] }[] = [];
  const local: LocalShards = {
    get map() {
      return map;
    },
    isLocal: () => true,
    toShard(index: number, op: OwnerOp): Promise<unknown> {
      assert.equal(op.op, "publish_many");
      const shard = map.shards[index].id;
      map = NEW;
      const requests = (op as { requests: UnicastRequest[] }).requests;
      asked.push({ shard, uids: requests.map((request) => request.to) });
      return Promise.resolve(
        requests.map((request): PubResult =>
          NEW.shardOf(request.to).id === shard
            ? { s: 1, online: 0 }
            : { error: `uid ${request.to} is not owned by this shard`, status: 421 }
        ),
      );
    },
    publishChannel: () => Promise.resolve([]),
  };
  return { local, asked };
}

Deno.test("Router: a batch's lines whose uid moved on the way are asked of their new owner", async () => {
  const uids = Array.from({ length: 200 }, (_, i) => `u${i}`);
  const onOld0 = uids.filter((uid) => OLD.shardOf(uid).id === "n/0");
  const moving = onOld0.filter((uid) => NEW.shardOf(uid).id === "n/2");
  assert.ok(moving.length > 0 && moving.length < onOld0.length, "some of n/0's uids move");
  const { local, asked } = growingShards();
  const router = new Router(local, { counters: newShardCounters() });
  const requests = onOld0.map((to) => ({ to, from: "op", body: "1", ttlSec: 0, volatile: false }));
  const results = await router.publishMany(onOld0[0], requests);
  assert.deepEqual(results, requests.map(() => ({ s: 1, online: 0 })), "every line stored");
  assert.deepEqual(asked, [
    { shard: "n/0", uids: onOld0 },
    { shard: "n/2", uids: moving },
  ]);
});

Deno.test("Router: in a cluster a channel message goes to the bus alone; one it refuses is stored nowhere", async () => {
  const stored: ChannelRequest[] = [];
  const local: LocalShards = {
    map: OLD,
    isLocal: () => true,
    toShard: () => Promise.reject(new Error("no owner op here")),
    publishChannel: (request) => {
      stored.push(request);
      return Promise.resolve([{ recipients: 1, online: 1 }, { recipients: 2, online: 0 }]);
    },
  };
  let up = false;
  const sent: ChannelRequest[] = [];
  const bus = {
    publish: (request: ChannelRequest) =>
      up
        ? (sent.push(request), Promise.resolve({ recipients: 5, online: 2 }))
        : Promise.reject(new ServiceError("cluster bus unavailable", 503)),
  } as unknown as ClusterBus;
  const counters = newShardCounters();
  const request = { channel: "news", from: "op", body: "1", ttlSec: 0, volatile: false };
  const clustered = new Router(local, { bus, counters });
  await assert.rejects(clustered.publishChannel(request), { status: 503 });
  assert.equal(counters.bus_errors, 1);
  up = true;
  // This node's shards store their copies from the bus, as every other node's do.
  assert.deepEqual(await clustered.publishChannel(request), { recipients: 5, online: 2 });
  assert.deepEqual(sent, [request]);
  assert.deepEqual(stored, [], "no shard asked directly: the retry above is the only copy");
  // Alone: every local shard, their receipts summed.
  const alone = new Router(local, { counters });
  assert.deepEqual(await alone.publishChannel(request), { recipients: 3, online: 1 });
  assert.deepEqual(stored, [request]);
});
