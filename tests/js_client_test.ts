/**
 * The JavaScript client (`src/client/ipush.js`) against the real daemon: under Deno over each
 * transport (pushes, sends to a raw client, channels, a refusal), across a shard crash (it
 * finds the shard's new port and resumes with no gap and no repeat), and under Node 20, loaded
 * from the daemon's own `/ipush.js`.
 */

import assert from "node:assert/strict";
import { connected, settle } from "./client.ts";
import { type Daemon, eventually, publish, startDaemon } from "./harness.ts";
import {
  connect,
  type IpushClient,
  type Message,
  type StateEvent,
  TRANSPORTS,
} from "../src/client/ipush.js";

function watch(client: IpushClient) {
  const messages: Message[] = [];
  const states: StateEvent[] = [];
  client.on("message", (message) => messages.push(message));
  client.on("state", (event) => states.push(event));
  return { messages, states };
}

async function opened(client: IpushClient, what: string) {
  assert.ok(await eventually(() => client.state === "open", 10_000), `${what} did not open`);
}

Deno.test("ipush.js under Deno, over each transport, against the daemon", async (t) => {
  const users = await Deno.makeTempFile();
  const uids = TRANSPORTS.flatMap((t) => [`js_${t}`, `js_peer_${t}`]);
  await Deno.writeTextFile(users, [...uids, "js_bad"].map((uid) => `${uid} pw\n`).join(""));
  const daemon = await startDaemon(["--auth=file", `--users_file=${users}`]);
  const url = `http://127.0.0.1:${daemon.clientPort}`;
  try {
    for (const transport of TRANSPORTS) {
      await t.step(`${transport}: pushes in, sends out, channels both ways`, async () => {
        const uid = `js_${transport}`;
        const peerUid = `js_peer_${transport}`;
        const client = connect({ url, uid, password: "pw", transports: [transport] });
        const { messages } = watch(client);
        const peer = await connected(daemon.clientPort, peerUid);
        try {
          await opened(client, transport);
          assert.equal(client.transport, transport);
          await publish(daemon, `to=${uid}`, "pushed");
          assert.ok(await eventually(() => messages.length === 1, 5000));
          await client.subscribe(`room_${transport}`);
          // By /send the subscription is stored when the promise resolves; on a WebSocket it is
          // on its way: publish until the room's messages arrive.
          const room = () => messages.filter((m) => m.y === 4);
          assert.ok(
            await eventually(async () => {
              await publish(daemon, `channel=room_${transport}`, "to the room");
              return room().length > 0;
            }, 5000),
            JSON.stringify(messages),
          );
          if (transport !== "ws") assert.equal(room()[0].s, 2, "the first publish reached it");
          assert.deepEqual(messages.map((m) => m.s), messages.map((_, i) => i + 1), "no gap");
          assert.deepEqual(room()[0], {
            y: 4,
            f: "op",
            t: uid,
            c: `room_${transport}`,
            b: "to the room",
            s: room()[0].s,
          });
          await client.send(peerUid, { from: transport });
          assert.deepEqual(await peer.next(), {
            y: 3,
            f: uid,
            t: peerUid,
            b: { from: transport },
            s: 1,
          });
          assert.deepEqual(await settle(peer), []);
          // Acked automatically: nothing is left offline.
          assert.ok(
            await eventually(
              async () => ((await daemon.admin(`/msg?uid=${uid}`)).body.result as []).length === 0,
              5000,
            ),
            "acked",
          );
        } finally {
          client.close();
          peer.close();
        }
      });
    }

    await t.step("a wrong password fails for good, with the server's reason", async () => {
      const client = connect({ url, uid: "js_bad", password: "wrong" });
      const { states } = watch(client);
      assert.ok(await eventually(() => client.state === "failed", 10_000));
      // The WebSocket's refusal is opaque to a client; the event stream's says why.
      assert.equal(states.at(-1)?.error?.message, "invalid password");
      client.close();
    });
  } finally {
    await daemon.stop();
    await Deno.remove(users);
  }
});

Deno.test("ipush.js finds a restarted shard and resumes: no gap, no repeat", async () => {
  const daemon = await startDaemon(["--debug_api=true"]);
  const url = `http://127.0.0.1:${daemon.clientPort}`;
  const client = connect({ url, uid: "js_crash", transports: ["ws"], backoff: { maxMs: 500 } });
  const { messages, states } = watch(client);
  try {
    await opened(client, "ws");
    for (let i = 1; i <= 3; i++) await publish(daemon, "to=js_crash", `before ${i}`);
    assert.ok(await eventually(() => messages.length === 3, 5000));
    const shard = await ownerIndex(daemon, "js_crash");
    await daemon.admin(`/debug/crash?shard=${shard}`, { method: "POST" });
    // The crash comes just after its answer: a publish sent before it could be stored by the
    // old worker and answered 503 as it dies, and its retry would store it again.
    assert.ok(
      await eventually(() => states.some((e) => e.state === "reconnecting"), 5000),
      "the shard crashed",
    );
    // Published while the shard restarts (and retried until it takes them).
    for (let i = 1; i <= 3; i++) {
      assert.ok(
        await eventually(
          async () => (await publish(daemon, "to=js_crash", `after ${i}`)).status === 200,
          15_000,
        ),
        "the shard came back",
      );
    }
    assert.ok(await eventually(() => messages.length >= 6, 15_000), JSON.stringify(messages));
    assert.deepEqual(messages.map((m) => m.s), [1, 2, 3, 4, 5, 6]);
    assert.ok(states.some((e) => e.state === "reconnecting"));
    assert.equal(client.state, "open");
  } finally {
    client.close();
    await daemon.stop();
  }
});

/** The index of the shard that owns `uid` (its place among the node's shard ports). */
async function ownerIndex(daemon: Daemon, uid: string): Promise<number> {
  const { body } = await daemon.admin(`/shard?uid=${uid}`);
  return daemon.shardPorts.indexOf(Number(String(body.result).split(":")[1]));
}

Deno.test("ipush.js under Node 20, as the daemon serves it: server-sent events without EventSource", async () => {
  const daemon = await startDaemon();
  const dir = await Deno.makeTempDir({ prefix: "ipush-node-" });
  try {
    const source = await (await fetch(`http://127.0.0.1:${daemon.clientPort}/ipush.js`)).text();
    await Deno.writeTextFile(`${dir}/ipush.mjs`, source);
    await Deno.writeTextFile(
      `${dir}/main.mjs`,
      `import { connect } from "./ipush.mjs";
const client = connect({ url: process.argv[2], uid: "js_node", password: "pw" });
client.on("state", (e) => console.log(JSON.stringify({ state: e.state, transport: e.transport })));
client.on("message", (m) => {
  console.log(JSON.stringify({ message: m }));
  client.send("js_node", "echo").then(() => client.close());
});
`,
    );
    const node = new Deno.Command("node", {
      args: [`${dir}/main.mjs`, `http://127.0.0.1:${daemon.clientPort}`],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const lines: Record<string, unknown>[] = [];
    const reading = (async () => {
      const decoder = new TextDecoder();
      let text = "";
      for await (const bytes of node.stdout) {
        text += decoder.decode(bytes, { stream: true });
        const parts = text.split("\n");
        text = parts.pop()!;
        lines.push(...parts.map((line) => JSON.parse(line)));
      }
    })();
    assert.ok(await eventually(() => lines.some((l) => l.state === "open"), 15_000), "open");
    await publish(daemon, "to=js_node", "hello node");
    const status = await node.status;
    await reading;
    const stderr = new TextDecoder().decode((await node.stderr.getReader().read()).value);
    assert.equal(status.code, 0, stderr);
    assert.deepEqual(lines.find((l) => l.state === "open"), { state: "open", transport: "sse" });
    assert.deepEqual(lines.find((l) => l.message)?.message, {
      y: 3,
      f: "op",
      t: "js_node",
      b: "hello node",
      s: 1,
    });
    // Its send went by /send, and was stored for js_node itself.
    const { body } = await daemon.admin("/msg?uid=js_node");
    assert.deepEqual((body.result as string[]).map((m) => JSON.parse(m).b), ["echo"]);
  } finally {
    await daemon.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
