/**
 * A raw-socket test client, written independently of the daemon's own codec so that the
 * end-to-end tests check the wire, not the code against itself.
 *
 * @module
 */

import assert from "node:assert/strict";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A response head as the client saw it. */
export interface Answer {
  status: number;
  /** The head exactly as received, up to and including the blank line. */
  head: string;
  headers: Map<string, string>;
  /** Bytes after the head that arrived with it (a refusal's body, or first chunks). */
  rest: string;
}

/** One TCP connection speaking the ipush client protocol. */
export class RawClient {
  #conn: Deno.Conn;
  #buffer = "";
  #closed = false;
  #reading: Promise<Uint8Array | null> | null = null;

  private constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }

  /** Opens a connection to `port` on loopback. */
  static async open(port: number): Promise<RawClient> {
    return new RawClient(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  /**
   * Connects as `uid` at `port`, following one 303 like a mobile client. Resolves with the
   * connected client and the final answer (200 expected; otherwise the caller inspects it).
   */
  static async connect(
    port: number,
    uid: string,
    password = "pw",
    device?: string,
  ): Promise<{ client: RawClient; answer: Answer; redirected: boolean }> {
    let query = `uid=${encodeURIComponent(uid)}&password=${encodeURIComponent(password)}`;
    if (device !== undefined) query += `&device=${encodeURIComponent(device)}`;
    let client = await RawClient.open(port);
    let answer = await client.request(`GET /connect?${query} HTTP/1.1\r\nAccept: */*\r\n\r\n`);
    let redirected = false;
    if (answer.status === 303) {
      client.close();
      const location = new URL(answer.headers.get("location")!);
      client = await RawClient.open(Number(location.port));
      answer = await client.request(
        `GET ${location.pathname}${location.search} HTTP/1.1\r\n\r\n`,
      );
      redirected = true;
    }
    return { client, answer, redirected };
  }

  /** Sends a request head and reads the response head (and whatever came with it). */
  async request(head: string): Promise<Answer> {
    await this.writeRaw(head);
    return await this.readHead();
  }

  /** Reads up to and including the blank line of a response head. */
  async readHead(timeoutMs = 5000): Promise<Answer> {
    const deadline = Date.now() + timeoutMs;
    while (!this.#buffer.includes("\r\n\r\n")) {
      if (!await this.#fill(deadline)) throw new Error(`closed before a head: ${this.#buffer}`);
    }
    const end = this.#buffer.indexOf("\r\n\r\n") + 4;
    const head = this.#buffer.slice(0, end);
    this.#buffer = this.#buffer.slice(end);
    const [statusLine, ...lines] = head.trimEnd().split("\r\n");
    const headers = new Map(
      lines.map((line) => {
        const colon = line.indexOf(":");
        return [line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim()];
      }),
    );
    return { status: Number(statusLine.split(" ")[1]), head, headers, rest: this.#buffer };
  }

  /** Writes bytes as they are. */
  async writeRaw(data: string | Uint8Array): Promise<void> {
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    for (let at = 0; at < bytes.length;) at += await this.#conn.write(bytes.subarray(at));
  }

  /** Frames a JSON value as one chunk and writes it. */
  async send(message: unknown): Promise<void> {
    await this.writeRaw(frame(JSON.stringify(message)));
  }

  /** The next chunk body, parsed; null when the server closed the stream. */
  async next(timeoutMs = 5000): Promise<Record<string, unknown> | null> {
    const body = await this.nextChunk(timeoutMs);
    return body === null ? null : JSON.parse(body);
  }

  /** The next chunk body as text; null on the last chunk or a close. */
  async nextChunk(timeoutMs = 5000): Promise<string | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const match = /^([0-9a-f]+)\r\n/.exec(this.#buffer);
      if (match) {
        const size = parseInt(match[1], 16);
        if (size === 0) return null;
        const start = match[0].length;
        const bytes = encoder.encode(this.#buffer.slice(start));
        if (bytes.length >= size + 2) {
          const body = decoder.decode(bytes.subarray(0, size));
          if (decoder.decode(bytes.subarray(size, size + 2)) !== "\r\n") {
            throw new Error(`chunk not followed by CRLF: ${this.#buffer}`);
          }
          this.#buffer = decoder.decode(bytes.subarray(size + 2));
          return body;
        }
      } else if (this.#buffer.length > 0 && !/^[0-9a-f]*\r?$/.test(this.#buffer)) {
        throw new Error(`not a chunk: ${JSON.stringify(this.#buffer)}`);
      }
      if (!await this.#fill(deadline)) return null;
    }
  }

  /** Resolves true if the server closes the connection within `timeoutMs`. */
  async closedWithin(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    try {
      while (await this.#fill(deadline)) { /* drain until EOF */ }
      return true;
    } catch {
      return false;
    }
  }

  /** Closes the connection (idempotent). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch { /* already closed by the peer */ }
  }

  /** Reads once; false on EOF (or reset), throws on timeout (the read stays pending). */
  async #fill(deadline: number): Promise<boolean> {
    const wait = deadline - Date.now();
    if (wait <= 0) throw new Error(`timed out; buffered: ${JSON.stringify(this.#buffer)}`);
    this.#reading ??= readSome(this.#conn);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), wait);
    });
    const bytes = await Promise.race([this.#reading, timeout]);
    clearTimeout(timer);
    if (bytes === "timeout") {
      throw new Error(`timed out; buffered: ${JSON.stringify(this.#buffer)}`);
    }
    this.#reading = null;
    if (bytes === null) return false;
    this.#buffer += decoder.decode(bytes, { stream: true });
    return true;
  }
}

/** One chunk: hex length, CRLF, body, CRLF. */
export function frame(body: string): string {
  return `${encoder.encode(body).length.toString(16)}\r\n${body}\r\n`;
}

/** Connects as `uid` (following a 303) and asserts the 200. */
export async function connected(port: number, uid: string, device?: string): Promise<RawClient> {
  const { client, answer } = await RawClient.connect(port, uid, "pw", device);
  assert.equal(answer.status, 200, `connect ${uid}: ${answer.head}`);
  return client;
}

/**
 * A heartbeat round trip: resolves with every message the server sent before the heartbeat's
 * answer, so "nothing more is coming" can be asserted without sleeping.
 */
export async function settle(client: RawClient): Promise<Record<string, unknown>[]> {
  await client.send({ y: 0 });
  const seen = [];
  for (;;) {
    const message = await client.next();
    assert.ok(message, "stream closed");
    if (message.y === 0) return seen;
    seen.push(message);
  }
}

/** What the peer sent next on `conn` (up to 64 KiB); null once it closed or reset. */
export async function readSome(conn: Deno.Conn): Promise<Uint8Array | null> {
  const chunk = new Uint8Array(65536);
  try {
    const read = await conn.read(chunk);
    return read === null ? null : chunk.subarray(0, read);
  } catch (error) {
    if (error instanceof Deno.errors.ConnectionReset || error instanceof Deno.errors.BadResource) {
      return null;
    }
    throw error;
  }
}
