/**
 * End to end: the terminal client (`scripts/client.ts`, `deno task client`) against the real
 * daemon, driven through its standard input and read from its standard output as a person at
 * the keyboard would.
 */

import assert from "node:assert/strict";
import { connected } from "./client.ts";
import { type Daemon, eventually, publish, startDaemon } from "./harness.ts";

const ROOT = new URL("../", import.meta.url);

/** The client as a child process: type lines, wait for lines. */
class Terminal {
  #child: Deno.ChildProcess;
  #stdin: WritableStreamDefaultWriter<Uint8Array>;
  #output = "";
  readonly exited: Promise<number>;

  constructor(args: string[]) {
    this.#child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-net", "scripts/client.ts", ...args],
      cwd: ROOT,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#stdin = this.#child.stdin.getWriter();
    const read = async (stream: ReadableStream<Uint8Array>) => {
      for await (const text of stream.pipeThrough(new TextDecoderStream())) this.#output += text;
    };
    this.exited = Promise.all([read(this.#child.stdout), read(this.#child.stderr)])
      .then(() => this.#child.status).then((status) => status.code);
  }

  /** Everything printed so far. */
  get output(): string {
    return this.#output;
  }

  async type(line: string): Promise<void> {
    await this.#stdin.write(new TextEncoder().encode(`${line}\n`));
  }

  /** Waits for a printed line matching `pattern`; fails with what was printed. */
  async line(pattern: RegExp, ms = 10_000): Promise<string> {
    let found: string | undefined;
    await eventually(() => {
      found = this.#output.split("\n").find((line) => pattern.test(line));
      return found !== undefined;
    }, ms);
    assert.ok(found, `no line matching ${pattern} in:\n${this.#output}`);
    return found;
  }

  async close(): Promise<void> {
    await this.#stdin.close().catch(() => {});
    try {
      this.#child.kill("SIGKILL");
    } catch { /* exited */ }
    await this.exited;
  }
}

Deno.test("terminal client: prints a /pub and acks it, sends to a user, subscribes and gets a channel message, unsubscribes, quits", async () => {
  const daemon: Daemon = await startDaemon();
  const alice = new Terminal(["--uid=alice", `--host=127.0.0.1:${daemon.clientPort}`]);
  const bob = await connected(daemon.clientPort, "bob");
  try {
    // Connected through the front door's 303, to alice's shard.
    const at = await alice.line(/^\* connected as alice at 127\.0\.0\.1:\d+/);
    const shard = (await daemon.admin("/shard?uid=alice")).body.result;
    assert.ok(at.includes(`at ${shard};`), `${at} (alice's shard is ${shard})`);

    assert.deepEqual((await publish(daemon, "to=alice", "hello from the back end")).body, {
      result: "ok",
    });
    await alice.line(/^\d\d:\d\d:\d\d op → you: hello from the back end {2}\(s=1\)$/);
    // It acked what it printed: nothing is left offline.
    assert.ok(
      await eventually(
        async () => ((await daemon.admin("/msg?uid=alice")).body.result as string[]).length === 0,
        5_000,
      ),
      "s=1 was not acked",
    );

    await alice.type("send bob hi bob, it is alice");
    await alice.line(/you → bob: hi bob, it is alice$/);
    const toBob = await bob.next();
    assert.deepEqual(
      { y: toBob?.y, f: toBob?.f, t: toBob?.t, b: toBob?.b },
      { y: 3, f: "alice", t: "bob", b: "hi bob, it is alice" },
    );

    await alice.type("sub news");
    await alice.line(/subscribing to #news$/);
    // The subscribe is stored asynchronously: publish until the first copy arrives.
    assert.ok(
      await eventually(async () => {
        await publish(daemon, "channel=news", "standup in 5");
        return /#news op: standup in 5 {2}\(s=\d+\)$/m.test(alice.output);
      }, 10_000),
      `no channel message:\n${alice.output}`,
    );

    // Unsubscribed, a channel message no longer reaches it. A channel /pub answers once every
    // member's copy is stored and written to its connection, so a message to alice published
    // after it and printed means the channel's copy, had there been one, was printed before.
    await alice.type("unsub news");
    await alice.line(/unsubscribing from #news$/);
    let probe = 0;
    assert.ok(
      await eventually(async () => {
        probe++;
        assert.equal((await publish(daemon, "channel=news", `probe ${probe}`)).status, 200);
        assert.equal((await publish(daemon, "to=alice", `marker ${probe}`)).status, 200);
        await alice.line(new RegExp(`op → you: marker ${probe} `));
        return !alice.output.includes(`#news op: probe ${probe} `);
      }, 10_000),
      `still subscribed:\n${alice.output}`,
    );

    await alice.type("frobnicate");
    await alice.line(/^unknown command "frobnicate"; type help$/);
    await alice.type("help");
    await alice.line(/^ {2}unsub <channel>/);
    await alice.type("quit");
    assert.equal(await alice.exited, 0, alice.output);
    assert.match(alice.output, /\* closed/);
  } finally {
    bob.close();
    await alice.close();
    assert.equal(await daemon.stop(), 0);
  }
});

Deno.test("terminal client: a refused connect says why and exits 1", async () => {
  const daemon = await startDaemon();
  const client = new Terminal(["--uid=not a uid", `--host=127.0.0.1:${daemon.clientPort}`]);
  try {
    assert.equal(await client.exited, 1);
    assert.match(client.output, /refused: HTTP 400 \{"error":"invalid uid"\}/);
  } finally {
    await client.close();
    assert.equal(await daemon.stop(), 0);
  }
});
