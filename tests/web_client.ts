/**
 * A byte-level client for the browser transports' end-to-end tests: HTTP heads, WebSocket
 * frames (masked as a browser masks them, or not), event-stream lines and whole HTTP
 * answers, written independently of the daemon's codecs so the tests check the wire.
 *
 * @module
 */

import { readSome } from "./client.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A response head as the client saw it. */
export interface Head {
  status: number;
  /** The head exactly as received, up to and including the blank line. */
  text: string;
  headers: Map<string, string>;
}

/** One WebSocket frame from the server. */
export interface Frame {
  fin: boolean;
  opcode: number;
  /** Whether the server masked it (it must not). */
  masked: boolean;
  payload: Uint8Array;
}

/** A client frame: FIN (or not), the opcode, the payload, masked with a random key unless not. */
export function clientFrame(
  opcode: number,
  payload: string | Uint8Array,
  { fin = true, mask = true }: { fin?: boolean; mask?: boolean } = {},
): Uint8Array {
  const body = typeof payload === "string" ? encoder.encode(payload) : payload;
  const n = body.length;
  const lengthBytes = n < 126 ? 0 : n < 65536 ? 2 : 8;
  const frame = new Uint8Array(2 + lengthBytes + (mask ? 4 : 0) + n);
  frame[0] = (fin ? 0x80 : 0) | opcode;
  frame[1] = (mask ? 0x80 : 0) | (n < 126 ? n : n < 65536 ? 126 : 127);
  const view = new DataView(frame.buffer);
  if (lengthBytes === 2) view.setUint16(2, n);
  if (lengthBytes === 8) view.setBigUint64(2, BigInt(n));
  const key = mask ? crypto.getRandomValues(new Uint8Array(4)) : new Uint8Array(4);
  const at = 2 + lengthBytes;
  if (mask) frame.set(key, at);
  const start = at + (mask ? 4 : 0);
  for (let i = 0; i < n; i++) frame[start + i] = body[i] ^ key[i & 3];
  return frame;
}

/** The request head of a browser's WebSocket upgrade (RFC 6455's own example key). */
export function upgradeRequest(target: string, extra = ""): string {
  return `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n` +
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
    `Sec-WebSocket-Version: 13\r\n${extra}\r\n`;
}

/** One TCP connection, read as bytes. */
export class WireClient {
  #conn: Deno.Conn;
  #buffer = new Uint8Array(0);
  #eof = false;
  #reading: Promise<Uint8Array | null> | null = null;

  private constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }

  static async open(port: number): Promise<WireClient> {
    return new WireClient(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  async write(data: string | Uint8Array): Promise<void> {
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    for (let at = 0; at < bytes.length;) at += await this.#conn.write(bytes.subarray(at));
  }

  /** Reads a response head. */
  async head(timeoutMs = 5000): Promise<Head> {
    const deadline = Date.now() + timeoutMs;
    let end: number;
    while ((end = indexOf(this.#buffer, "\r\n\r\n")) < 0) {
      if (!await this.#fill(deadline)) throw new Error(`closed before a head: ${this.#text()}`);
    }
    const text = decoder.decode(this.#take(end + 4));
    const [status, ...lines] = text.trimEnd().split("\r\n");
    const headers = new Map(lines.map((line) => {
      const colon = line.indexOf(":");
      return [line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim()];
    }));
    return { status: Number(status.split(" ")[1]), text, headers };
  }

  /** A whole HTTP answer: its head and its `Content-Length` body as text. */
  async answer(timeoutMs = 5000): Promise<Head & { body: string }> {
    const head = await this.head(timeoutMs);
    const length = Number(head.headers.get("content-length") ?? 0);
    return { ...head, body: decoder.decode(await this.bytes(length, timeoutMs)) };
  }

  /** Exactly `n` bytes. */
  async bytes(n: number, timeoutMs = 5000): Promise<Uint8Array> {
    const deadline = Date.now() + timeoutMs;
    while (this.#buffer.length < n) {
      if (!await this.#fill(deadline)) throw new Error(`closed with ${this.#buffer.length}/${n}`);
    }
    return this.#take(n);
  }

  /** The next WebSocket frame; null when the server closed the connection. */
  async frame(timeoutMs = 5000): Promise<Frame | null> {
    const deadline = Date.now() + timeoutMs;
    while (this.#buffer.length < 2) if (!await this.#fill(deadline)) return null;
    const [b0, b1] = this.#buffer;
    const short = b1 & 0x7f;
    const lengthBytes = short === 126 ? 2 : short === 127 ? 8 : 0;
    const masked = (b1 & 0x80) !== 0;
    const header = await this.bytes(2 + lengthBytes + (masked ? 4 : 0), deadline - Date.now());
    const view = new DataView(header.buffer, header.byteOffset);
    const length = lengthBytes === 2
      ? view.getUint16(2)
      : lengthBytes === 8
      ? Number(view.getBigUint64(2))
      : short;
    const payload = await this.bytes(length, deadline - Date.now());
    return { fin: (b0 & 0x80) !== 0, opcode: b0 & 0x0f, masked, payload };
  }

  /** The next text frame's JSON (control frames in between are returned as they are). */
  async message(timeoutMs = 5000): Promise<Record<string, unknown>> {
    const frame = await this.frame(timeoutMs);
    if (!frame) throw new Error("closed");
    if (frame.opcode !== 1) throw new Error(`opcode ${frame.opcode}, not a text frame`);
    return JSON.parse(decoder.decode(frame.payload));
  }

  /** The next line of an event stream (without its LF). */
  async line(timeoutMs = 5000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    let end: number;
    while ((end = this.#buffer.indexOf(0x0a)) < 0) {
      if (!await this.#fill(deadline)) throw new Error(`closed mid-line: ${this.#text()}`);
    }
    return decoder.decode(this.#take(end + 1)).slice(0, -1);
  }

  /** The next event of an event stream, comments skipped: its fields. */
  async event(timeoutMs = 5000): Promise<Map<string, string>> {
    const fields = new Map<string, string>();
    for (;;) {
      const line = await this.line(timeoutMs);
      if (line === "") {
        if (fields.size > 0) return fields;
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      fields.set(line.slice(0, colon), line.slice(colon + 1).trimStart());
    }
  }

  /** True if the server closes the connection within `timeoutMs` (what it sent is dropped). */
  async closedWithin(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    try {
      while (await this.#fill(deadline)) this.#buffer = new Uint8Array(0);
      return true;
    } catch {
      return false;
    }
  }

  close(): void {
    try {
      this.#conn.close();
    } catch { /* already closed */ }
  }

  #text(): string {
    return JSON.stringify(decoder.decode(this.#buffer));
  }

  #take(n: number): Uint8Array {
    const taken = this.#buffer.slice(0, n);
    this.#buffer = this.#buffer.slice(n);
    return taken;
  }

  /** Reads once; false on EOF, throws past the deadline (the read stays pending). */
  async #fill(deadline: number): Promise<boolean> {
    if (this.#eof) return false;
    const wait = deadline - Date.now();
    if (wait <= 0) throw new Error(`timed out; buffered ${this.#text()}`);
    this.#reading ??= readSome(this.#conn);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) =>
      timer = setTimeout(resolve, wait, "timeout")
    );
    const bytes = await Promise.race([this.#reading, timeout]);
    clearTimeout(timer);
    if (bytes === "timeout") throw new Error(`timed out; buffered ${this.#text()}`);
    this.#reading = null;
    if (bytes === null) {
      this.#eof = true;
      return false;
    }
    const joined = new Uint8Array(this.#buffer.length + bytes.length);
    joined.set(this.#buffer);
    joined.set(bytes, this.#buffer.length);
    this.#buffer = joined;
    return true;
  }
}

function indexOf(bytes: Uint8Array, text: string): number {
  const needle = encoder.encode(text);
  outer: for (let i = 0; i + needle.length <= bytes.length; i++) {
    for (let j = 0; j < needle.length; j++) if (bytes[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}
