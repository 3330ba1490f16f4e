/**
 * The client side of the ipush wire (PROTOCOL.md §1–2, §6): the response head of
 * `GET /connect`, the duplex chunk stream that follows a 200, WebSocket frames after a 101,
 * and the requests of a long-poll.
 *
 * @module
 */

import { Buffer } from "node:buffer";

const CRLF = Buffer.from("\r\n");
const HEAD_END = Buffer.from("\r\n\r\n");

/** A server → client frame, as far as the load generator looks into it. */
export interface Frame {
  y?: number;
  f?: string;
  t?: string;
  c?: string;
  b?: unknown;
  s?: number;
  /** The server's `{"error": reason}` (PROTOCOL.md), sent before it closes a session. */
  error?: string;
}

/** A parsed HTTP response head. */
export interface ResponseHead {
  status: number;
  /** Header names lowercased. */
  headers: Map<string, string>;
  /** Byte length of the head including the blank line. */
  length: number;
}

/**
 * Parses the response head at the start of `buf`. Returns null while the blank line has not
 * arrived yet; throws on a status line that is not HTTP.
 */
export function parseHead(buf: Buffer): ResponseHead | null {
  const end = buf.indexOf(HEAD_END);
  if (end < 0) return null;
  const lines = buf.toString("latin1", 0, end).split("\r\n");
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
  if (!m) throw new Error(`bad status line: ${JSON.stringify(lines[0].slice(0, 60))}`);
  const headers = new Map<string, string>();
  for (let i = 1; i < lines.length; i++) {
    const colon = lines[i].indexOf(":");
    if (colon > 0) {
      headers.set(lines[i].slice(0, colon).trim().toLowerCase(), lines[i].slice(colon + 1).trim());
    }
  }
  return { status: Number(m[1]), headers, length: end + HEAD_END.length };
}

/** The request head a raw mobile client sends. */
export function connectRequest(pathAndQuery: string): string {
  return `GET ${pathAndQuery} HTTP/1.1\r\nUser-Agent: ipush_load/0.1\r\nAccept: */*\r\n\r\n`;
}

/** `/connect?uid=..&password=..` (or another path) with both values percent-encoded. */
export function connectPath(uid: string, password: string, path = "/connect"): string {
  return `${path}?uid=${encodeURIComponent(uid)}&password=${encodeURIComponent(password)}`;
}

/**
 * A browser's WebSocket upgrade request (RFC 6455's example key: the load generator does not
 * check the server's accept value, the end-to-end tests do).
 */
export function upgradeRequest(pathAndQuery: string): string {
  return `GET ${pathAndQuery} HTTP/1.1\r\nHost: ipush\r\nUpgrade: websocket\r\n` +
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
    "Sec-WebSocket-Version: 13\r\n\r\n";
}

/** One long-poll request, kept alive for the next. */
export function pollRequest(pathAndQuery: string): string {
  return `GET ${pathAndQuery} HTTP/1.1\r\nHost: ipush\r\n\r\n`;
}

/**
 * One client text frame holding `body` (ASCII), as a latin1 string. Masked, as RFC 6455
 * requires, with the all-zero key: the server unmasks it all the same, and the load generator
 * spends no time on masking that a browser's network stack would.
 */
export function encodeWsFrame(body: string, opcode = 1): string {
  const n = body.length;
  const length = n < 126
    ? String.fromCharCode(0x80 | n)
    : String.fromCharCode(0x80 | 126, n >>> 8, n & 255);
  return String.fromCharCode(0x80 | opcode) + length + "\0\0\0\0" + body;
}

/** What a reader of a server's stream decodes its messages as. */
abstract class StreamReader {
  /**
   * @param encoding how a message becomes a string: UTF-8 text, or its bytes as latin1
   *   (`codec=msgpack`)
   */
  constructor(protected readonly encoding: "utf8" | "latin1" = "utf8") {}
}

/**
 * Incremental parser of the server's WebSocket frames (unmasked, unfragmented, as ipush
 * sends them). Only an unfinished frame is kept between reads.
 */
export class WsReader extends StreamReader {
  #pending: Buffer | null = null;

  /**
   * Feeds one read. Calls `onFrame` with each data frame's payload (decoded as the reader's
   * encoding), in order; control frames other than close are skipped. Returns true on a close frame. Throws on a
   * frame ipush never sends.
   */
  push(data: Buffer, onFrame: (body: string) => void): boolean {
    let buf = this.#pending === null ? data : Buffer.concat([this.#pending, data]);
    this.#pending = null;
    let pos = 0;
    while (buf.length - pos >= 2) {
      const b0 = buf[pos];
      const short = buf[pos + 1];
      if (short & 0x80) throw new Error("masked frame from the server");
      const extra = short === 126 ? 2 : short === 127 ? 8 : 0;
      if (buf.length - pos < 2 + extra) break;
      const length = short === 126
        ? buf.readUInt16BE(pos + 2)
        : short === 127
        ? Number(buf.readBigUInt64BE(pos + 2))
        : short;
      const start = pos + 2 + extra;
      if (buf.length < start + length) break;
      const opcode = b0 & 0x0f;
      if (!(b0 & 0x80) || opcode === 0) throw new Error("fragmented frame from the server");
      if (opcode === 8) return true;
      if (opcode === 1 || opcode === 2) {
        onFrame(buf.toString(this.encoding, start, start + length));
      }
      pos = start + length;
    }
    if (pos < buf.length) {
      buf = buf.subarray(pos);
      this.#pending = Buffer.from(buf);
    }
    return false;
  }
}

/** One chunk frame: lowercase hex byte length, CRLF, body, CRLF. */
export function encodeFrame(body: string, encoding: "utf8" | "latin1" = "utf8"): string {
  return `${Buffer.byteLength(body, encoding).toString(16)}\r\n${body}\r\n`;
}

/**
 * Incremental parser of the chunk stream. Frames may arrive split across reads or several in
 * one read; only the unfinished tail is kept between reads, so an idle connection holds no
 * buffer at all.
 */
export class ChunkReader extends StreamReader {
  #pending: Buffer | null = null;

  /**
   * Feeds one read. Calls `onFrame` with each complete body (decoded as the reader's encoding)
   * in order.
   * Returns true when the server sent the terminating `0\r\n\r\n` (a graceful close).
   * Throws on malformed framing; the connection is unusable after that.
   */
  push(data: Buffer, onFrame: (body: string) => void): boolean {
    let buf = this.#pending === null ? data : Buffer.concat([this.#pending, data]);
    this.#pending = null;
    let pos = 0;
    while (pos < buf.length) {
      const lineEnd = buf.indexOf(CRLF, pos);
      if (lineEnd < 0) {
        if (buf.length - pos > 32) throw new Error("chunk size line too long");
        break;
      }
      const size = parseSize(buf, pos, lineEnd);
      if (size === 0) return true;
      const bodyStart = lineEnd + 2;
      const bodyEnd = bodyStart + size;
      if (bodyEnd + 2 > buf.length) break;
      if (buf[bodyEnd] !== 13 || buf[bodyEnd + 1] !== 10) {
        throw new Error(`chunk of ${size} bytes not followed by CRLF`);
      }
      onFrame(buf.toString(this.encoding, bodyStart, bodyEnd));
      pos = bodyEnd + 2;
    }
    if (pos < buf.length) {
      // Copy the tail: keeping a slice would pin the whole read buffer.
      buf = buf.subarray(pos);
      this.#pending = Buffer.from(buf);
    }
    return false;
  }
}

/** Hex chunk size in `buf[start, end)`, ignoring chunk extensions after `;`. */
function parseSize(buf: Buffer, start: number, end: number): number {
  let size = 0;
  let digits = 0;
  for (let i = start; i < end; i++) {
    const c = buf[i];
    let d: number;
    if (c >= 48 && c <= 57) d = c - 48;
    else if (c >= 97 && c <= 102) d = c - 87;
    else if (c >= 65 && c <= 70) d = c - 55;
    else if (c === 59 || c === 32) break;
    else throw new Error(`bad chunk size byte ${c}`);
    size = size * 16 + d;
    if (++digits > 8) throw new Error("chunk size too large");
  }
  if (digits === 0) throw new Error("empty chunk size line");
  return size;
}
