import assert from "node:assert/strict";
import { newShardCounters } from "../stats/counters.ts";
import { MapKeeper, type MapTarget } from "./map_keeper.ts";
import { LEFT, type Membership, type View } from "./membership.ts";
import type { NodeInfo } from "./topology.ts";
import type { BusPosition } from "../core/bus_entry.ts";
import type { LostNode } from "../core/shard_map.ts";

const node = (id: string): NodeInfo => ({
  id,
  host: "127.0.0.1",
  clientPort: 1,
  adminPort: 2,
  shardPortBase: 0,
  workers: 1,
  shardPorts: [3],
});

/** A membership whose reads answer `view` as it is then; it counts joins and applies. */
function fakeMembership(view: View) {
  const fake = {
    view,
    joins: 0,
    appliedVersions: [] as number[],
    leaseMs: 3000,
    read: () => Promise.resolve(structuredClone(fake.view)),
    join: () => (fake.joins++, Promise.resolve(fake.view.version)),
    applied: (version: number, position: BusPosition | null) => {
      fake.appliedVersions.push(version);
      if (position) fake.said.push(position);
      return Promise.resolve();
    },
    /** The positions this node said with its `applied`s. */
    said: [] as BusPosition[],
    /** Where each member stood at its `applied`s (the others' are set by a test). */
    stood: new Map<string, BusPosition[]>(),
    positions: () => Promise.resolve(fake.stood),
    marked: [] as LostNode[],
    markLost: (lost: LostNode, version: number) => {
      // As the script: not again once accepted after the map it was recorded from.
      if (fake.view.accepted.some((a) => a.node === lost.node && a.version >= version)) {
        return Promise.resolve(false);
      }
      fake.marked.push(lost);
      fake.view.lost.push(lost);
      return Promise.resolve(true);
    },
    stop: () => {},
  };
  return fake;
}

function keeperWith(view: View, graceMs = 1000, localState = false) {
  const membership = fakeMembership(view);
  const calls: string[] = [];
  /** What the next hand-offs leave behind (nothing once empty). */
  const handOffsLeft: number[] = [];
  const target: MapTarget = {
    setMembers: (members, hold) => {
      calls.push(`map ${members.map((m) => m.id).join(",")}${hold ? " held" : ""}`);
      return Promise.resolve({ marks: {} });
    },
    settle: (_before, from) => {
      const owners = from.map((o) =>
        `${o.node}${o.positions ? `@${o.positions.map((p) => p.version).join("+")}` : " dead"}`
      );
      calls.push(owners.length ? `settle, from ${owners}` : "settle");
      return Promise.resolve();
    },
    reset: () => (calls.push("reset"), Promise.resolve()),
    handOff: () => Promise.resolve({ left: handOffsLeft.shift() ?? 0, reason: "unreachable" }),
    setLost: (lost) => (
      calls.push(`lost ${lost.map((l) => l.node + (l.floor ? `>${l.floor}` : "")).join(",")}`),
        Promise.resolve()
    ),
  };
  const keeper = new MapKeeper(membership as unknown as Membership, target, {
    selfId: "a",
    graceMs,
    localState,
    onMembers: () => {},
    counters: newShardCounters(),
    log: () => {},
  });
  return { keeper, membership, calls, handOffsLeft };
}

const viewOf = (version: number, ids: string[], applied: Record<string, number>): View => ({
  version,
  members: ids.map(node),
  leaseLeftMs: new Map(ids.map((id) => [id, 3000])),
  applied: new Map(Object.entries(applied)),
  lost: [],
  lostAt: new Map(),
  accepted: [],
});

Deno.test("MapKeeper: a joining node holds what it gains until every member applied its version", async () => {
  const { keeper, membership, calls } = keeperWith(viewOf(7, ["a", "b"], { a: 0, b: 6 }));
  await keeper.start();
  assert.deepEqual(calls, ["map a,b held"]);
  assert.deepEqual(membership.appliedVersions, [7]);
  assert.equal(keeper.state.held, true);
  membership.view = viewOf(7, ["a", "b"], { a: 7, b: 7 });
  await keeper.refresh();
  assert.deepEqual(calls, ["map a,b held", "settle"]);
  assert.equal(keeper.state.held, false);
  keeper.stop();
});

Deno.test("MapKeeper: a settle is told where each old owner stood when it applied, and says its own", async () => {
  const { keeper, membership, calls } = keeperWith(viewOf(7, ["a", "b"], { a: 0, b: 6 }));
  const at = (version: number, mark: string) => ({ version, marks: { "b/0": mark } });
  // b's positions: one from before this node joined (version 6), then at the join's.
  membership.stood.set("b", [at(6, "1-0"), at(7, "2-0")]);
  await keeper.start();
  assert.deepEqual(membership.said, [{ version: 7, marks: {} }]);
  membership.view = viewOf(7, ["a", "b"], { a: 7, b: 7 });
  await keeper.refresh();
  assert.deepEqual(calls, ["map a,b held", "settle, from b@7"]);
  keeper.stop();
});

Deno.test("MapKeeper: a change held together with another is told every position since the last settle", async () => {
  const { keeper, membership, calls } = keeperWith(viewOf(7, ["a", "b"], { a: 0, b: 6 }));
  const at = (version: number, mark: string) => ({ version, marks: { "b/0": mark } });
  membership.stood.set("b", [at(6, "1-0"), at(7, "2-0"), at(8, "3-0")]);
  await keeper.start();
  // c joins before this node's join has settled: both changes settle as one.
  membership.view = viewOf(8, ["a", "b", "c"], { a: 7, b: 7, c: 0 });
  await keeper.refresh();
  membership.view = viewOf(8, ["a", "b", "c"], { a: 8, b: 8, c: 8 });
  await keeper.refresh();
  assert.deepEqual(calls, ["map a,b held", "map a,b,c held", "settle, from b@7+8"]);
  keeper.stop();
});

Deno.test("MapKeeper: an expired member's uids are served only a grace after it is seen gone", async () => {
  const { keeper, membership, calls } = keeperWith(viewOf(3, ["a", "c"], { a: 3, c: 3 }), 150);
  await keeper.start();
  assert.deepEqual(calls, ["map a,c held", "settle"]);
  // c's lease expired: the next read removed it.
  membership.view = viewOf(4, ["a"], {});
  await keeper.refresh();
  assert.deepEqual(calls.slice(2), ["map a held"], "not settled at once");
  await new Promise((resolve) => setTimeout(resolve, 200));
  await keeper.refresh();
  // The shards hear that c died (its channel copies are replayed from the bus).
  assert.deepEqual(calls.slice(2), ["map a held", "settle, from c dead"]);
  keeper.stop();
});

Deno.test("MapKeeper: a member that left is not waited for", async () => {
  const { keeper, membership, calls } = keeperWith(viewOf(3, ["a", "c"], { a: 3, c: 3 }), 60_000);
  await keeper.start();
  membership.view = viewOf(4, ["a"], { c: LEFT });
  await keeper.refresh();
  assert.deepEqual(calls.slice(2), ["map a held", "settle"]);
  keeper.stop();
});

Deno.test("MapKeeper: a node missing from the list (its lease lapsed) forgets all and joins again", async () => {
  const { keeper, membership, calls } = keeperWith(viewOf(3, ["a", "b"], { a: 3, b: 3 }));
  await keeper.start();
  assert.equal(membership.joins, 1);
  membership.view = viewOf(4, ["b"], { b: 4 });
  const rejoined = keeper.refresh();
  // The join puts it back in the list, which the keeper reads at once.
  membership.view = viewOf(5, ["a", "b"], { a: 0, b: 4 });
  await rejoined;
  assert.equal(membership.joins, 2);
  assert.deepEqual(calls.slice(2), ["reset", "map a,b held"]);
  assert.equal(keeper.state.held, true, "held until b applies version 5");
  keeper.stop();
});

Deno.test("MapKeeper: applied is said only once the hand-off left nothing behind", async () => {
  const { keeper, membership, handOffsLeft } = keeperWith(viewOf(3, ["a", "b"], { a: 3, b: 3 }));
  await keeper.start();
  assert.deepEqual(membership.appliedVersions, [3]);
  handOffsLeft.push(2, 1);
  membership.view = viewOf(4, ["a", "b", "c"], { a: 3, b: 4, c: 0 });
  await keeper.refresh();
  await keeper.refresh();
  assert.deepEqual(membership.appliedVersions, [3], "uids left: not applied");
  await keeper.refresh();
  assert.deepEqual(membership.appliedVersions, [3, 4]);
  keeper.stop();
});

Deno.test("MapKeeper: a leaving member is waited for while it has its lease, past the grace", async () => {
  const { keeper, membership, calls } = keeperWith(viewOf(3, ["a", "c"], { a: 3, c: 3 }), 50);
  await keeper.start();
  // c is out of the list, handing off under its lease.
  const leaving = viewOf(4, ["a"], { a: 4, c: 3 });
  leaving.leaseLeftMs.set("c", 1500);
  membership.view = leaving;
  await keeper.refresh();
  await new Promise((resolve) => setTimeout(resolve, 100));
  await keeper.refresh();
  assert.deepEqual(calls.slice(2), ["map a held"], "not settled while c hands off");
  membership.view = viewOf(4, ["a"], { a: 4, c: 4 });
  await keeper.refresh();
  assert.deepEqual(calls.slice(2), ["map a held", "settle"]);
  keeper.stop();
});

Deno.test("MapKeeper: with local state, a member gone without its hand-off is recorded lost before settle", async () => {
  const { keeper, membership, calls } = keeperWith(
    viewOf(3, ["a", "c"], { a: 3, c: 3 }),
    50,
    true,
  );
  await keeper.start();
  assert.deepEqual(calls, ["map a,c held", "lost ", "settle"]);
  // c's lease lapsed (a crash): after the grace, its uids are served without their state.
  membership.view = viewOf(4, ["a"], { a: 4 });
  await keeper.refresh();
  await new Promise((resolve) => setTimeout(resolve, 100));
  await keeper.refresh();
  assert.deepEqual(membership.marked, [{ node: "c", shards: ["a/0", "c/0"] }]);
  assert.deepEqual(calls.slice(3), ["map a held", "lost c", "settle"], "the shards know first");
  // c is back: the join cleared its record; the shards hear it.
  membership.view = viewOf(5, ["a", "c"], { a: 4, c: 5 });
  await keeper.refresh();
  assert.deepEqual(calls.slice(6, 8), ["map a,c held", "lost "]);
  keeper.stop();
});

Deno.test("MapKeeper: a member that left or applied is not recorded lost", async () => {
  const { keeper, membership } = keeperWith(
    viewOf(3, ["a", "b", "c"], { a: 3, b: 3, c: 3 }),
    10,
    true,
  );
  await keeper.start();
  membership.view = viewOf(4, ["a"], { a: 4, b: LEFT, c: 4 });
  await keeper.refresh();
  assert.deepEqual(membership.marked, []);
  keeper.stop();
});

Deno.test("MapKeeper: an accepted loss goes to the shards with its floor, and is not recorded again", async () => {
  const { keeper, membership, calls } = keeperWith(
    viewOf(3, ["a", "c"], { a: 3, c: 3 }),
    50,
    true,
  );
  await keeper.start();
  // c dies; an operator accepts its loss (at version 5) before this node settles.
  membership.view = viewOf(4, ["a"], { a: 4 });
  await keeper.refresh();
  const shards = ["a/0", "c/0"];
  const accepted = [{ node: "c", shards, floor: 1_700_000_000_000_000, version: 5, at: 1 }];
  membership.view = { ...viewOf(5, ["a"], { a: 5 }), accepted };
  await new Promise((resolve) => setTimeout(resolve, 100));
  await keeper.refresh();
  assert.deepEqual(membership.marked, [], "not recorded after its acceptance");
  assert.deepEqual(calls.slice(3), [
    "map a held",
    "map a held",
    "lost c>1700000000000000",
    "settle",
  ]);
  // c joins again later and dies again: that loss is recorded (its last map is newer).
  membership.view = { ...viewOf(6, ["a", "c"], { a: 5, c: 6 }), accepted };
  await keeper.refresh();
  membership.view = { ...viewOf(7, ["a"], { a: 7 }), accepted };
  await keeper.refresh();
  await new Promise((resolve) => setTimeout(resolve, 100));
  await keeper.refresh();
  assert.deepEqual(membership.marked, [{ node: "c", shards }]);
  assert.deepEqual(calls.slice(-2), ["lost c,c>1700000000000000", "settle"]);
  keeper.stop();
});
