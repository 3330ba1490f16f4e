/**
 * End to end: the process — flags, pid file, signals and graceful drain.
 */

import assert from "node:assert/strict";
import { RawClient } from "./client.ts";
import {
  type Daemon,
  delay,
  freePortRun,
  publish,
  startDaemon,
  whilePortTaken,
} from "./harness.ts";

const ROOT = new URL("../", import.meta.url);

async function runMain(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "main.ts", ...args],
    cwd: ROOT,
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  Deno.test(`process: ${signal} drains, closes streams cleanly, removes the pid file`, async () => {
    const daemon = await startDaemon();
    assert.equal(Deno.readTextFileSync(daemon.pidFile).trim(), String(daemon.pid));
    const { client, answer } = await RawClient.connect(daemon.clientPort, "drained1");
    assert.equal(answer.status, 200);
    assert.equal(await daemon.stop(signal), 0);
    assert.equal(await client.nextChunk(), null, "the last chunk, then EOF");
    client.close();
    assert.ok(!exists(daemon.pidFile), "pid file removed");
    assert.match(daemon.log(), /draining/);
  });
}

Deno.test("process: a second daemon refuses to start while the pid file's process lives", async () => {
  const daemon = await startDaemon();
  try {
    const second = await runMain([
      "--flagfile=conf/default.conf",
      `--pid_file=${daemon.pidFile}`,
      "--client_port=0",
      "--admin_port=0",
      "--shard_port_base=0",
    ]);
    assert.equal(second.code, 1);
    assert.match(second.stderr, new RegExp(`names pid ${daemon.pid}, which is running`));
    assert.equal(Deno.readTextFileSync(daemon.pidFile).trim(), String(daemon.pid), "untouched");
  } finally {
    assert.equal(await daemon.stop(), 0);
  }
});

Deno.test("process: a stale pid file (its process gone) does not block a start", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(`${dir}/ipush_server.pid`, "999999999\n");
  const daemon = await startDaemon([], { dir });
  assert.equal(Deno.readTextFileSync(daemon.pidFile).trim(), String(daemon.pid));
  assert.equal(await daemon.stop(), 0);
});

Deno.test("flags: --help lists every flag with its default and meaning", async () => {
  const { code, stdout } = await runMain(["--help"]);
  assert.equal(code, 0);
  for (
    const flag of [
      'client_port="9000"',
      'admin_port="9001"',
      "admin_host",
      "advertise_host",
      "workers",
      "shard_port_base",
      'pid_file="ipush_server.pid"',
      "storage",
      "data_dir",
      "heartbeat_timeout_sec",
      "max_frame_bytes",
      "auth",
      "users_file",
      "log_level",
      "flagfile",
    ]
  ) {
    assert.ok(stdout.includes(`--${flag}`), `--help mentions --${flag}`);
  }
});

Deno.test("flags: an unknown flag or a bad value exits 2 naming the flag", async () => {
  const unknown = await runMain(["--flagfile=conf/default.conf", "--client_prot=1"]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown flag --client_prot/);
  const bad = await runMain(["--flagfile=conf/default.conf", "--workers=lots"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /bad value for --workers: 'lots'/);
  const missing = await runMain(["--flagfile=conf/nope.conf"]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /--flagfile=conf\/nope.conf/);
});

Deno.test("flags: a cluster without --redis_url refuses to start and says why", async () => {
  const { code, stderr } = await runMain([
    "--flagfile=conf/cluster.conf",
    "--node_id=node2",
    "--pid_file=/tmp/ipush-cluster-no-redis.pid",
  ]);
  assert.equal(code, 1);
  assert.match(stderr, /a cluster \(--cluster_nodes\) needs --redis_url/);
  assert.ok(!exists("/tmp/ipush-cluster-no-redis.pid"), "no pid file left behind");
});

/** Which of `daemon`'s shards owns `uid`: its index, as `/debug/crash?shard=` takes it. */
async function shardOf(daemon: Daemon, uid: string): Promise<number> {
  const owner = String((await daemon.admin(`/shard?uid=${uid}`)).body.result);
  return daemon.shardPorts.findIndex((port) => owner.endsWith(`:${port}`));
}

/** Connects `uid` once the log says a crashed shard restarted (within 5 s); null if none did. */
async function connectAfterRestart(daemon: Daemon, uid: string) {
  for (let i = 0; i < 50; i++) {
    await delay(100);
    if (/shard-\d+ restarted/.test(daemon.log())) {
      return await RawClient.connect(daemon.clientPort, uid);
    }
  }
  return null;
}

Deno.test("process: a crashed shard is logged and restarted; its clients reconnect", async () => {
  const daemon = await startDaemon(["--debug_api=true", "--storage=sqlite"]);
  try {
    const before = await RawClient.connect(daemon.clientPort, "phoenix1");
    assert.equal(before.answer.status, 200);
    assert.deepEqual((await publish(daemon, "to=phoenix1", "before")).body, { result: "ok" });
    assert.equal((await before.client.next())?.b, "before");
    const k = await shardOf(daemon, "phoenix1");
    assert.deepEqual((await daemon.admin(`/debug/crash?shard=${k}`, { method: "POST" })).body, {
      result: "ok",
    });
    assert.equal(await before.client.nextChunk(), null, "the crashed shard's client is cut off");
    before.client.close();
    const after = await connectAfterRestart(daemon, "phoenix1");
    assert.match(daemon.log(), /shard-\d+ crashed: .*crash requested through the debug API/);
    assert.ok(after, "the shard came back");
    assert.equal(after.answer.status, 200);
    assert.deepEqual((await publish(daemon, "to=phoenix1", "after")).body, { result: "ok" });
    // Never acked, so replayed from the store first; then the new one, with the next s.
    assert.deepEqual(await after.client.next(), {
      y: 3,
      f: "op",
      t: "phoenix1",
      b: "before",
      s: 1,
    });
    assert.deepEqual(await after.client.next(), { y: 3, f: "op", t: "phoenix1", b: "after", s: 2 });
    after.client.close();
  } finally {
    assert.equal(await daemon.stop(), 0);
  }
});

Deno.test("process: a /pub whose shard crashed after its commit is answered 503, and is kept", async () => {
  const daemon = await startDaemon(["--debug_api=true", "--storage=sqlite"]);
  try {
    assert.deepEqual((await publish(daemon, "to=phoenix2", "before")).body, { result: "ok" });
    const k = await shardOf(daemon, "phoenix2");
    const armed = await daemon.admin(`/debug/crash?shard=${k}&after=pub_commit`, {
      method: "POST",
    });
    assert.deepEqual(armed.body, { result: "ok" });
    const crashed = await publish(daemon, "to=phoenix2", "crashed");
    assert.deepEqual([crashed.status, crashed.body], [503, { error: "shard restarting" }]);
    const after = await connectAfterRestart(daemon, "phoenix2");
    assert.ok(after, "the shard came back");
    // Not acknowledged, yet stored: a publisher that retries after a 503 may deliver it twice.
    assert.deepEqual(await after.client.next(), {
      y: 3,
      f: "op",
      t: "phoenix2",
      b: "before",
      s: 1,
    });
    assert.deepEqual(await after.client.next(), {
      y: 3,
      f: "op",
      t: "phoenix2",
      b: "crashed",
      s: 2,
    });
    after.client.close();
  } finally {
    assert.equal(await daemon.stop(), 0);
  }
});

Deno.test("admin: /debug/crash refuses an unknown crash point", async () => {
  const daemon = await startDaemon(["--debug_api=true", "--storage=memory"]);
  try {
    const answer = await daemon.admin("/debug/crash?shard=0&after=lunch", { method: "POST" });
    assert.deepEqual([answer.status, answer.body], [400, { error: "invalid after" }]);
    // Nothing was armed or crashed: the shard still stores and answers.
    assert.deepEqual((await publish(daemon, "to=calm1", "still")).body, { result: "ok" });
    assert.doesNotMatch(daemon.log(), /crashed/);
  } finally {
    assert.equal(await daemon.stop(), 0);
  }
});

Deno.test("admin: /debug/crash is not served without --debug_api", async () => {
  const daemon = await startDaemon();
  try {
    const answer = await daemon.admin("/debug/crash?shard=0", { method: "POST" });
    assert.equal(answer.status, 404);
    assert.deepEqual(answer.body, { error: "not found" });
  } finally {
    assert.equal(await daemon.stop(), 0);
  }
});

Deno.test("process: a shard that cannot start (its port taken) stops the daemon with a reason", async () => {
  const base = freePortRun(2);
  const squatter = Deno.listen({ hostname: "127.0.0.1", port: base + 1 });
  try {
    const { code, stderr } = await runMain([
      "--flagfile=conf/default.conf",
      "--storage=memory",
      "--host=127.0.0.1",
      "--client_port=0",
      "--admin_port=0",
      `--shard_port_base=${base}`,
      "--workers=2",
      "--pid_file=/tmp/ipush-port-taken.pid",
    ]);
    assert.equal(code, 1);
    assert.match(stderr, /shard-1 cannot start: .*(in use|EADDRINUSE)/i);
    assert.ok(!exists("/tmp/ipush-port-taken.pid"), "no pid file left behind");
  } finally {
    squatter.close();
  }
});

Deno.test("harness: a daemon whose port was taken before it bound starts again on other ports", async () => {
  const taken = freePortRun(2);
  const squatter = Deno.listen({ hostname: "127.0.0.1", port: taken + 1 });
  const bases: number[] = [];
  try {
    const daemon = await whilePortTaken(() => {
      bases.push(bases.length === 0 ? taken : freePortRun(2));
      return startDaemon(["--storage=memory", `--shard_port_base=${bases.at(-1)}`]);
    });
    try {
      assert.equal(bases.length, 2, "the first start failed on the taken port, the second served");
      assert.deepEqual(daemon.shardPorts, [bases[1], bases[1] + 1]);
    } finally {
      assert.equal(await daemon.stop(), 0);
    }
    await assert.rejects(
      whilePortTaken(() => {
        throw new Error("not a port");
      }),
      /not a port/,
      "any other failure is thrown at once",
    );
  } finally {
    squatter.close();
  }
});
