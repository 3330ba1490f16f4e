/**
 * End to end: a raw client speaking MessagePack (`codec=msgpack`, PROTOCOL.md §7) connects,
 * receives, acks and sends; a JSON client and it exchange messages without either losing a
 * digit; a malformed MessagePack body is answered with a clear error and a close.
 */

import assert from "node:assert/strict";
import { Packr, Unpackr } from "msgpackr";
import { connected, frame } from "./client.ts";
import { type Daemon, publish, startDaemon } from "./harness.ts";

const packr = new Packr({ useRecords: false, variableMapSize: true });
const unpackr = new Unpackr({ useRecords: false, int64AsType: "bigint" } as never);
const encoder = new TextEncoder();

/** A raw client whose chunk bodies are bytes, written independently of the daemon's codec. */
class BinaryClient {
  #conn: Deno.Conn;
  #buffer = new Uint8Array(0);
  head = "";

  private constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }

  /** Connects as `uid` with `codec=msgpack`, following one 303. */
  static async connect(daemon: Daemon, uid: string): Promise<BinaryClient> {
    let port = daemon.clientPort;
    for (let hop = 0; hop < 2; hop++) {
      const client = new BinaryClient(await Deno.connect({ hostname: "127.0.0.1", port }));
      await client.#write(
        encoder.encode(`GET /connect?uid=${uid}&password=pw&codec=msgpack HTTP/1.1\r\n\r\n`),
      );
      client.head = await client.#readHead();
      if (!client.head.startsWith("HTTP/1.1 303")) return client;
      port = Number(new URL(/^Location: (.*)$/m.exec(client.head)![1].trim()).port);
      client.close();
    }
    throw new Error("redirected twice");
  }

  /** Sends one chunk whose body is `bytes`. */
  async sendBytes(bytes: Uint8Array): Promise<void> {
    const size = encoder.encode(`${bytes.length.toString(16)}\r\n`);
    await this.#write(Uint8Array.from([...size, ...bytes, 0x0d, 0x0a]));
  }

  /** The next chunk's body, unpacked; null at the end of the stream. */
  async next(): Promise<Record<string, unknown> | null> {
    for (;;) {
      const text = new TextDecoder("latin1").decode(this.#buffer.subarray(0, 16));
      const match = /^([0-9a-f]+)\r\n/.exec(text);
      if (match) {
        const size = parseInt(match[1], 16);
        if (size === 0) return null;
        const start = match[0].length;
        if (this.#buffer.length >= start + size + 2) {
          const body = this.#buffer.slice(start, start + size);
          this.#buffer = this.#buffer.slice(start + size + 2);
          return unpackr.unpack(body);
        }
      }
      if (!await this.#fill()) return null;
    }
  }

  close(): void {
    try {
      this.#conn.close();
    } catch { /* closed by the server */ }
  }

  async #readHead(): Promise<string> {
    for (;;) {
      const text = new TextDecoder("latin1").decode(this.#buffer);
      const end = text.indexOf("\r\n\r\n");
      if (end >= 0) {
        this.#buffer = this.#buffer.slice(end + 4);
        return text.slice(0, end + 4);
      }
      if (!await this.#fill()) throw new Error(`closed before a head: ${text}`);
    }
  }

  async #fill(): Promise<boolean> {
    const chunk = new Uint8Array(65536);
    const n = await this.#conn.read(chunk).catch(() => null);
    if (n === null) return false;
    const joined = new Uint8Array(this.#buffer.length + n);
    joined.set(this.#buffer);
    joined.set(chunk.subarray(0, n), this.#buffer.length);
    this.#buffer = joined;
    return true;
  }

  async #write(bytes: Uint8Array): Promise<void> {
    for (let at = 0; at < bytes.length;) at += await this.#conn.write(bytes.subarray(at));
  }
}

Deno.test("msgpack: a raw client connects, receives, acks and sends in MessagePack", async (t) => {
  const daemon = await startDaemon(["--storage=memory"]);
  const packed = await BinaryClient.connect(daemon, "mp-alice");
  const json = await connected(daemon.clientPort, "mp-bob");
  try {
    await t.step("the 200 head says application/msgpack", () => {
      assert.match(packed.head, /^HTTP\/1\.1 200 OK\r\n/);
      assert.match(packed.head, /\r\nContent-Type: application\/msgpack\r\n/);
    });

    await t.step(
      "a /pub arrives as a map with the same keys; an ack moves the cursor",
      async () => {
        await publish(daemon, "to=mp-alice", "hello");
        assert.deepEqual(await packed.next(), { y: 3, f: "op", t: "mp-alice", b: "hello", s: 1 });
        await packed.sendBytes(packr.pack({ y: 5, s: 1 }));
        await packed.sendBytes(packr.pack({ y: 0 }));
        assert.deepEqual(await packed.next(), { y: 0 });
        assert.deepEqual((await daemon.admin("/msg?uid=mp-alice")).body, { result: [] });
      },
    );

    await t.step("to a JSON client and back, every digit of a 64-bit id kept", async () => {
      await packed.sendBytes(
        packr.pack({ y: 3, t: "mp-bob", b: { id: 18446744073709551615n, n: -5 } }),
      );
      assert.equal(
        await json.nextChunk(),
        '{"y":3,"f":"mp-alice","t":"mp-bob","b":{"id":18446744073709551615,"n":-5},"s":1}\n',
      );
      await json.writeRaw(frame('{"y":3,"t":"mp-alice","b":{"id":12345678901234567890}}'));
      assert.deepEqual(await packed.next(), {
        y: 3,
        f: "mp-bob",
        t: "mp-alice",
        b: { id: 12345678901234567890n },
        s: 2,
      });
    });

    await t.step("a field error is a map too, and the stream stays", async () => {
      await packed.sendBytes(packr.pack({ y: 3, t: "mp-bob", b: new Uint8Array([1]) }));
      assert.deepEqual(await packed.next(), { error: "invalid b: bin" });
    });

    await t.step("a malformed body: a clear error, then a close", async () => {
      await packed.sendBytes(Uint8Array.from([0xdf, 0x00, 0x0f, 0x42, 0x40, 0xa1]));
      const answer = await packed.next();
      assert.match(String(answer?.error), /^bad msgpack: /);
      assert.equal(await packed.next(), null, "the server closes the stream");
    });

    await t.step("an unknown codec is refused at the handshake", async () => {
      const answer = await fetch(
        `http://127.0.0.1:${daemon.shardPorts[0]}/connect?uid=x&password=p&codec=xml`,
      );
      assert.deepEqual([answer.status, await answer.json()], [400, { error: "invalid codec" }]);
    });
  } finally {
    packed.close();
    json.close();
    await daemon.stop();
  }
});

Deno.test("msgpack over WebSocket: binary frames both ways, beside a JSON client; a text frame is 1003", async () => {
  const daemon = await startDaemon([]);
  const { body } = await daemon.admin("/shard?uid=mpw");
  const owner = String(body.result);
  const open = (query: string) => {
    const ws = new WebSocket(`ws://${owner}/connect?uid=mpw&password=pw&${query}`);
    ws.binaryType = "arraybuffer";
    const messages: unknown[] = [];
    const waiting: (() => void)[] = [];
    ws.onmessage = (event) => {
      messages.push(event.data);
      waiting.shift()?.();
    };
    const next = async () => {
      if (messages.length === 0) await new Promise<void>((resolve) => waiting.push(resolve));
      return messages.shift();
    };
    const closed = new Promise<CloseEvent>((resolve) => ws.onclose = resolve);
    return { ws, next, closed, opened: new Promise((resolve) => ws.onopen = resolve) };
  };
  const json = await connected(daemon.clientPort, "mpw_json");
  const binary = open("codec=msgpack&device=tablet");
  try {
    await binary.opened;
    await publish(daemon, "to=mpw", "hello");
    const delivered = await binary.next();
    assert.ok(delivered instanceof ArrayBuffer, "a binary frame");
    assert.deepEqual(unpackr.unpack(new Uint8Array(delivered)), {
      y: 3,
      f: "op",
      t: "mpw",
      b: "hello",
      s: 1,
    });
    binary.ws.send(packr.pack({ y: 3, t: "mpw_json", b: { n: 7 } }));
    assert.deepEqual(await json.next(), { y: 3, f: "mpw", t: "mpw_json", b: { n: 7 }, s: 1 });
    binary.ws.send(packr.pack({ y: 5, s: 1 }));
    binary.ws.send(packr.pack({ y: 0 }));
    assert.deepEqual(unpackr.unpack(new Uint8Array(await binary.next() as ArrayBuffer)), { y: 0 });
    const listed = await daemon.admin("/msg?uid=mpw&device=tablet");
    assert.deepEqual(listed.body.result, [], "the tablet's ack moved its cursor");

    binary.ws.send('{"y":0}');
    const closed = await binary.closed;
    assert.deepEqual([closed.code, closed.reason], [1003, "codec=msgpack takes binary frames"]);
  } finally {
    json.close();
    binary.ws.close();
    await daemon.stop();
  }
});
