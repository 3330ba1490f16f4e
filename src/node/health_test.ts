import assert from "node:assert/strict";
import type { Presence } from "../cluster/presence.ts";
import type { RedisClient } from "../cluster/redis.ts";
import type { NodeInfo, Topology } from "../cluster/topology.ts";
import type { NodeBeat, NodeStatus } from "../core/presence.ts";
import { newShardCounters, newShardHistograms } from "../stats/counters.ts";
import { StatsBook } from "../stats/report.ts";
import { Health } from "./health.ts";
import type { ShardPool } from "./pool.ts";

const node = (id: string): NodeInfo => ({
  id,
  host: "127.0.0.1",
  clientPort: 1,
  adminPort: 2,
  shardPortBase: 3,
  workers: 2,
});

/** A node n1 of a cluster n1, n2, n3, its parts as plain fakes the test sets. */
function fixture() {
  const nodes = [node("n1"), node("n2"), node("n3")];
  const topology = {
    self: nodes[0],
    nodes,
    clustered: true,
    dynamic: false,
  };
  const parts = {
    down: [] as number[],
    redisReady: true,
    draining: false,
    beats: [null, null] as (NodeBeat | null)[] | Error,
    reported: [] as NodeStatus[],
  };
  const stats = new StatsBook();
  const report = (k: number, storeError: string | null, connections: number) => {
    const counters = newShardCounters();
    counters.connection_number = connections;
    counters.user_number = connections;
    stats.update(k, { counters, histograms: newShardHistograms(), storeError });
  };
  const health = new Health({
    topology: topology as Topology,
    pool: { down: () => parts.down, refreshStats: () => Promise.resolve() } as unknown as ShardPool,
    stats,
    redis: {
      get isReady() {
        return parts.redisReady;
      },
    } as unknown as RedisClient,
    presence: {
      beats: () =>
        parts.beats instanceof Error ? Promise.reject(parts.beats) : Promise.resolve(parts.beats),
      report: (status: NodeStatus) => parts.reported.push(status),
    } as unknown as Presence,
    inFlight: () => 7,
    draining: () => parts.draining,
  });
  return { health, parts, stats, report };
}

Deno.test("Health: ready with every part up; every part that is not is a reason", async () => {
  const { health, parts, report } = fixture();
  report(0, null, 3);
  report(1, null, 2);
  assert.deepEqual(await health.check(), []);
  parts.down = [1];
  report(0, "no host answered", 3);
  parts.redisReady = false;
  parts.draining = true;
  assert.deepEqual(await health.check(), [
    "draining",
    "shard-1 is not running",
    "shard-0 store: no host answered",
    "redis unreachable",
  ]);
});

Deno.test("Health: sample sets the node's gauges and tells the cluster its status", () => {
  const { health, parts, stats, report } = fixture();
  report(0, null, 3);
  report(1, null, 2);
  parts.down = [1];
  parts.redisReady = false;
  health.sample();
  const counters = stats.frontDoor;
  assert.deepEqual(
    [counters.shards, counters.shards_up, counters.redis_up, counters.admin_inflight],
    [2, 1, 0, 7],
  );
  assert.deepEqual(parts.reported.at(-1), {
    notReady: ["shard-1 is not running", "redis unreachable"],
    connections: 5,
    users: 5,
  });
});

Deno.test("Health: members are this node live, the others as their beats say, down without one", async () => {
  const { health, parts, report } = fixture();
  report(0, null, 4);
  const at = Date.now() - 1500;
  parts.beats = [
    { at, notReady: [], connections: 10, users: 9 },
    null,
  ];
  const members = await health.members();
  assert.deepEqual(members.map((m) => [m.id, m.self, m.status, m.connections]), [
    ["n1", true, "ready", 4],
    ["n2", false, "ready", 10],
    ["n3", false, "down", 0],
  ]);
  assert.ok(members[1].age_ms >= 1500 && members[1].age_ms < 60_000);
  parts.beats = [{ at, notReady: ["shard-0 store: timeout"], connections: 0, users: 0 }, null];
  assert.deepEqual((await health.members())[1].reasons, ["shard-0 store: timeout"]);
  assert.equal((await health.members())[1].status, "not ready");
  parts.beats = new Error("connection is closed");
  const blind = await health.members();
  assert.deepEqual(blind.map((m) => m.status), ["ready", "unknown", "unknown"]);
  assert.match(blind[1].reasons[0], /redis unreachable: connection is closed/);
});
