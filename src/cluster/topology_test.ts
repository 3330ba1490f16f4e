import assert from "node:assert/strict";
import { parseFlags } from "../config/flags.ts";
import { shardsOf, topology } from "./topology.ts";

const REDIS = [
  "--cluster=redis",
  "--redis_url=redis://127.0.0.1:6379",
  "--advertise_host=10.0.0.5",
  "--storage=cassandra",
  "--workers=2",
  "--node_id=a",
];
function shape(flags: string[]) {
  const parsed = parseFlags(flags);
  if (parsed.help) throw new Error("--help");
  return topology(parsed.config);
}

Deno.test("topology: --cluster=redis starts as this node alone, its shards a/0 and a/1", () => {
  const { self, nodes, clustered, dynamic } = shape(REDIS);
  const shards = nodes.flatMap(shardsOf);
  assert.deepEqual([clustered, dynamic, nodes], [true, true, [self]]);
  assert.deepEqual(shards.map((shard) => [shard.id, shard.host]), [
    ["a/0", "10.0.0.5"],
    ["a/1", "10.0.0.5"],
  ]);
});

Deno.test("topology: --cluster=redis refuses what it cannot work with, saying why", () => {
  const without = (name: string) => REDIS.filter((flag) => !flag.startsWith(`--${name}=`));
  assert.throws(() => shape(without("redis_url")), /needs --redis_url/);
  assert.throws(() => shape(without("advertise_host")), /needs --advertise_host/);
  assert.throws(
    () => shape([...REDIS, "--cluster_nodes=a=h:1:2:3:1"]),
    /leave --cluster_nodes empty/,
  );
});

Deno.test("topology: static clusters stay as they were", () => {
  const { nodes, dynamic } = shape([
    "--node_id=b",
    "--cluster_nodes=a=h:1:2:10:1,b=h:3:4:20:2",
    "--redis_url=redis://r",
  ]);
  assert.equal(dynamic, false);
  const shards = nodes.flatMap(shardsOf);
  assert.deepEqual(nodes.map((node) => node.id), ["a", "b"]);
  assert.deepEqual(shards.map((shard) => `${shard.id}@${shard.port}`), [
    "a/0@10",
    "b/0@20",
    "b/1@21",
  ]);
});
