import assert from "node:assert/strict";
import type { OwnerOp } from "../core/requests.ts";
import { newShardCounters } from "../stats/counters.ts";
import { Peers } from "./ops.ts";

/** A peer's admin port that records each `/cluster/ops` body and answers every op. */
function recordingPeer(answer: (op: OwnerOp) => unknown) {
  const bodies: OwnerOp[][] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (request) => {
    const ops = await request.json() as OwnerOp[];
    bodies.push(ops);
    return Response.json({ result: ops.map((op) => ({ value: answer(op) })) });
  });
  const node = {
    id: "n2",
    host: "127.0.0.1",
    clientPort: 0,
    adminPort: server.addr.port,
    shardPortBase: 0,
    workers: 1,
  };
  return { bodies, server, node };
}

const subscribe = (uid: string): OwnerOp => ({ op: "subscribe", uid, channel: "news" });

Deno.test("peers: the ops of one pass for a node, from separate callbacks, go in one request", async () => {
  const peer = recordingPeer((op) => `done ${(op as { uid: string }).uid}`);
  const counters = newShardCounters();
  const peers = new Peers([peer.node], 5000, "", counters);
  try {
    // Two timers due together run in one pass, each its own callback and microtask turn,
    // as two /pubs read in one pass are.
    const answers = await Promise.all(
      ["u1", "u2"].map((uid) =>
        new Promise((resolve, reject) =>
          setTimeout(() => peers.request("n2", subscribe(uid)).then(resolve, reject), 0)
        )
      ),
    );
    assert.deepEqual(answers, ["done u1", "done u2"]);
    assert.deepEqual(peer.bodies, [[subscribe("u1"), subscribe("u2")]]);
    assert.equal(counters.cluster_forwarded_ops, 2);
    // A later pass sends its own request.
    assert.equal(await peers.request("n2", subscribe("u3")), "done u3");
    assert.equal(peer.bodies.length, 2);
  } finally {
    await peer.server.shutdown();
  }
});

Deno.test("peers: a node that does not answer fails each op of the request with a 503 naming it", async () => {
  const peer = recordingPeer(() => null);
  await peer.server.shutdown();
  const counters = newShardCounters();
  const peers = new Peers([peer.node], 5000, "", counters);
  const failures = await Promise.all(
    ["u1", "u2"].map((uid) => peers.request("n2", subscribe(uid)).then(() => null, (e) => e)),
  );
  for (const failure of failures) {
    assert.equal(failure?.status, 503);
    assert.match(failure?.message, /^node n2 unreachable/);
  }
  assert.equal(counters.cluster_forward_errors, 2);
});
