import assert from "node:assert/strict";
import type { MapKeeper } from "../cluster/map_keeper.ts";
import type { AcceptedLoss, AcceptRefusal, View } from "../cluster/membership.ts";
import type { NodeInfo } from "../cluster/topology.ts";
import { ShardMap } from "../core/shard_map.ts";
import { testAdmin } from "../testing/admin.ts";
import { clusterEndpoint, type ClusterSources } from "./cluster_view.ts";

const self: NodeInfo = {
  id: "n1",
  host: "127.0.0.1",
  clientPort: 1,
  adminPort: 2,
  shardPortBase: 0,
  workers: 1,
  shardPorts: [3],
};
const SHARDS = ["n1/0", "n3/0", "n3/1"];
const TOKEN = "t0ken";

/** A Redis-managed node whose membership has a lost n3 and accepts as `accept` says. */
function sources(accept: (node: string) => Promise<AcceptedLoss | AcceptRefusal>, dynamic = true) {
  const asked: string[] = [];
  const view: View = {
    version: 9,
    members: [self],
    leaseLeftMs: new Map([["n1", 1500]]),
    applied: new Map([["n1", 9]]),
    lost: [{ node: "n3", shards: SHARDS }],
    lostAt: new Map([["n3", Date.UTC(2026, 11, 2, 5, 0)]]),
    accepted: [{ node: "n2", shards: ["n1/0", "n2/0"], floor: 7, version: 4, at: 0 }],
  };
  const membership = {
    read: () => Promise.resolve(view),
    leaseMs: 2000,
    acceptLoss: (node: string) => (asked.push(node), accept(node)),
  };
  const keeper = { state: { view, version: 9, held: false } } as Pick<MapKeeper, "state">;
  const cluster: ClusterSources = {
    topology: { self, nodes: [self], clustered: true, dynamic },
    members: () => [self],
    map: () => new ShardMap([{ id: "n1/0", host: "", port: 3 }]),
    managed: () => dynamic ? { membership, keeper } : undefined,
  };
  const serve = testAdmin({ adminToken: TOKEN, mounts: clusterEndpoint(cluster) });
  const call = async (path: string, method = "DELETE", token = TOKEN) => {
    const response = await serve(
      new Request(`http://127.0.0.1:2${path}`, {
        method,
        headers: { authorization: `Bearer ${token}` },
      }),
    );
    return { status: response.status, body: await response.json() };
  };
  return { call, asked };
}

const ACCEPTED: AcceptedLoss = {
  node: "n3",
  shards: SHARDS,
  floor: 1_764_651_000_123_456,
  version: 11,
  at: Date.UTC(2026, 11, 2, 5, 30),
};

Deno.test("/cluster: shows the lost members (since when, how many shards) and the accepted losses", async () => {
  const { call } = sources(() => Promise.resolve(ACCEPTED));
  const { status, body } = await call("/cluster", "GET");
  assert.equal(status, 200);
  assert.deepEqual(body.result.lost, [
    { node: "n3", since: "2026-12-02T05:00:00.000Z", shards: 2, map_shards: 3 },
  ]);
  assert.deepEqual(body.result.accepted, [
    { node: "n2", shards: 1, map_shards: 2, floor: 7, version: 4, at: "1970-01-01T00:00:00.000Z" },
  ]);
});

Deno.test("DELETE /cluster/lost: accepts a lost node's loss, and answers its floor", async () => {
  const { call, asked } = sources(() => Promise.resolve(ACCEPTED));
  assert.deepEqual(await call("/cluster/lost?node=n3"), {
    status: 200,
    body: {
      result: {
        node: "n3",
        shards: 2,
        map_shards: 3,
        floor: 1_764_651_000_123_456,
        version: 11,
        at: "2026-12-02T05:30:00.000Z",
      },
    },
  });
  assert.deepEqual(asked, ["n3"]);
});

Deno.test("DELETE /cluster/lost: refuses bad input, unknown and live nodes precisely", async () => {
  const refusals: Record<string, AcceptRefusal> = { n1: "member", n9: "unknown" };
  const { call, asked } = sources((node) => Promise.resolve(refusals[node]));
  const cases: [string, number, string][] = [
    ["/cluster/lost", 400, "missing node"],
    ["/cluster/lost?node=", 400, "invalid node"],
    ["/cluster/lost?node=n%203", 400, "invalid node"],
    ["/cluster/lost?node=n9", 404, "no lost record of node n9"],
    [
      "/cluster/lost?node=n1",
      409,
      "node n1 is a live member: its lost record, if any, clears itself once it has applied a map",
    ],
  ];
  for (const [path, status, error] of cases) {
    assert.deepEqual(await call(path), { status, body: { error } }, path);
  }
  assert.deepEqual(asked, ["n9", "n1"], "bad input never reaches Redis");
  // The admin token, as every endpoint; and only DELETE.
  assert.deepEqual(await call("/cluster/lost?node=n3", "DELETE", "wrong"), {
    status: 401,
    body: { error: "unauthorized" },
  });
  assert.deepEqual(await call("/cluster/lost?node=n3", "GET"), {
    status: 405,
    body: { error: "method not allowed" },
  });
  assert.deepEqual(asked, ["n9", "n1"]);
});

Deno.test("DELETE /cluster/lost: a static cluster has no lost records; Redis down is a 503", async () => {
  const { call } = sources(() => Promise.resolve(ACCEPTED), false);
  assert.deepEqual(await call("/cluster/lost?node=n3"), {
    status: 404,
    body: { error: "no lost records: not a redis-managed cluster (--cluster=redis)" },
  });
  const down = sources(() => Promise.reject(new Error("connection refused"))).call;
  assert.deepEqual(await down("/cluster/lost?node=n3"), {
    status: 503,
    body: { error: "redis unreachable: connection refused" },
  });
});
