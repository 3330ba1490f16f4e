/**
 * The WebSocket codec (RFC 6455, version 13) of the client ports, beside the chunk codec:
 * framing only, for a socket whose request head the client port has already read. No HTTP
 * server, no streams, no object per frame.
 *
 * Why hand-written (measured in Deno 2.9.6 on the project's machine, 3 interleaved runs, as
 * ratios to raw TCP chunk framing in the same run): idle RSS per connection at 15,000
 * connections 1.04–1.11× raw (npm `ws` 1.30–1.52×, `Deno.upgradeWebSocket` on `Deno.serve`
 * 3.8–4.1×, and that one cannot share the raw protocol's port anyway); server CPU a delivered
 * message 0.97× raw at one message a write, 0.57× with 100 coalesced messages a write; decode
 * 0.66–0.80× raw's µs a frame.
 *
 * Handshake: {@linkcode upgradeProblem} checks what a version-13 upgrade needs beyond
 * `GET` and `Upgrade: websocket` (a `Connection` naming `upgrade`, a 16-byte base64
 * `Sec-WebSocket-Key`, `Sec-WebSocket-Version: 13`); {@linkcode upgradedHead} is the 101 with
 * `Sec-WebSocket-Accept`. No extension and no subprotocol is negotiated.
 *
 * Output: {@linkcode textFrame}, {@linkcode binaryFrame} (`codec=msgpack`, PROTOCOL.md §7)
 * and the control frames are whole unmasked frames as latin1
 * strings, one character a byte: the header as characters, then the payload, as it is when it
 * is ASCII, else its UTF-8 bytes as characters. A pass's frames are concatenated and leave in
 * one `socket.write(output, "latin1")`, which costs what a UTF-8 string write does.
 *
 * Input: {@linkcode WsDecoder} is an incremental state machine over the client's masked
 * frames, fed each read as it comes, in any split:
 *
 *     Head0   byte 0: FIN, RSV (must be 0), opcode                → Head1
 *     Head1   byte 1: MASK (must be 1), 7-bit length               → Mask, or Length (2 or 8 bytes)
 *     Length  big-endian length, checked against the limit         → Mask
 *     Mask    4 key bytes                                          → Payload (or the frame's end)
 *     Payload unmasked in place; whole in this read: a view of it; split across reads: copied
 *             into `#partial`, sized to the frame                  → Head0
 *
 * A whole small (7-bit length) unfragmented text frame in the read, the usual case for a JSON
 * message, is taken in one step with no state stored. Text must be UTF-8: all-ASCII payloads
 * (found while unmasking) need no further check, others go through `isUtf8`. Fragments are
 * kept only while a fragmented message is in progress; control frames may come between them.
 * A connection takes one kind of message: text, or binary with `codec=msgpack`.
 * An idle connection's decoder is a few numbers and two null references.
 *
 * @module
 */

import { Buffer, isUtf8 } from "node:buffer";
import { createHash } from "node:crypto";

/** The close codes ipush sends or checks (RFC 6455 §7.4.1). */
export const CloseCode = {
  Normal: 1000,
  GoingAway: 1001,
  ProtocolError: 1002,
  Unsupported: 1003,
  /** Reported (never sent) when a close frame carries no code. */
  NoStatus: 1005,
  InvalidData: 1007,
  PolicyViolation: 1008,
  TooBig: 1009,
} as const;

/** A frame that breaks the protocol: the connection is closed with `code`. */
export class WsError extends Error {
  constructor(readonly code: number, readonly reason: string) {
    super(reason);
    this.name = "WsError";
  }
}

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/** Base64 of 16 bytes. */
const KEY = /^[+/0-9A-Za-z]{21}[AQgw]==$/;
const CONNECTION_UPGRADE = /(?:^|,)\s*upgrade\s*(?:,|$)/i;

/** The WebSocket version ipush speaks. */
export const WS_VERSION = "13";

/**
 * What stands in the way of a 101 for this upgrade request, or null: `426` for another
 * version (the answer names ours), `400` for a missing or malformed field.
 */
export function upgradeProblem(
  headers: ReadonlyMap<string, string>,
): { status: 400 | 426; reason: string } | null {
  if (headers.get("sec-websocket-version") !== WS_VERSION) {
    return { status: 426, reason: "websocket version 13 required" };
  }
  if (!CONNECTION_UPGRADE.test(headers.get("connection") ?? "")) {
    return { status: 400, reason: "websocket upgrade needs Connection: Upgrade" };
  }
  if (!KEY.test(headers.get("sec-websocket-key") ?? "")) {
    return { status: 400, reason: "invalid Sec-WebSocket-Key" };
  }
  return null;
}

/** `Sec-WebSocket-Accept` for a key: base64(SHA-1(key + GUID)). */
export function acceptKey(key: string): string {
  return createHash("sha1").update(key + GUID).digest("base64");
}

/** The 101 that turns the socket into a WebSocket. */
export function upgradedHead(key: string): string {
  return "HTTP/1.1 101 Switching Protocols\r\n" +
    "Upgrade: websocket\r\n" +
    "Connection: Upgrade\r\n" +
    `Sec-WebSocket-Accept: ${acceptKey(key)}\r\n` +
    "\r\n";
}

const FIN_TEXT = 0x81;
const FIN_BINARY = 0x82;
const FIN_CLOSE = 0x88;
const FIN_PING = 0x89;
const FIN_PONG = 0x8a;

/** A frame header (FIN and opcode in `byte0`, no mask) as characters. */
function header(byte0: number, length: number): string {
  if (length < 126) return String.fromCharCode(byte0, length);
  if (length < 0x10000) return String.fromCharCode(byte0, 126, length >>> 8, length & 255);
  // Lengths stay below 2^32: the top four bytes are zero.
  return String.fromCharCode(
    byte0,
    127,
    0,
    0,
    0,
    0,
    length >>> 24,
    (length >>> 16) & 255,
    (length >>> 8) & 255,
    length & 255,
  );
}

/**
 * One text frame holding `text`, as a latin1 string. `bytes` is the text's UTF-8 length
 * (`utf8Length`): when it equals the text's length, the text is ASCII and goes as it is.
 */
export function textFrame(text: string, bytes: number): string {
  const payload = bytes === text.length ? text : Buffer.from(text, "utf8").toString("latin1");
  return header(FIN_TEXT, bytes) + payload;
}

/** One binary frame holding `bytes`, a latin1 string (a character a byte), as it is. */
export function binaryFrame(bytes: string): string {
  return header(FIN_BINARY, bytes.length) + bytes;
}

/** The pong answering a ping's payload. */
export function pongFrame(payload: Uint8Array): string {
  return header(FIN_PONG, payload.length) + Buffer.from(payload).toString("latin1");
}

/** A ping (for tests and clients; the server answers pings, it does not send them). */
export function pingFrame(payload: Uint8Array): string {
  return header(FIN_PING, payload.length) + Buffer.from(payload).toString("latin1");
}

/** Longest close reason: a control frame's 125 bytes less the code's two. */
const MAX_CLOSE_REASON = 123;

/** A close frame with a code and a reason, cut to fit a control frame (on a character). */
export function closeFrame(code: number, reason = ""): string {
  let bytes = Buffer.from(reason, "utf8");
  if (bytes.length > MAX_CLOSE_REASON) {
    let end = MAX_CLOSE_REASON;
    while ((bytes[end] & 0xc0) === 0x80) end--; // not inside a character
    bytes = bytes.subarray(0, end);
  }
  return header(FIN_CLOSE, 2 + bytes.length) + String.fromCharCode(code >>> 8, code & 255) +
    bytes.toString("latin1");
}

/** Where a decoder's frames go. Payload views are valid only during the call. */
export interface WsSink {
  /**
   * A whole message (fragments joined): valid UTF-8 text, or on a binary connection
   * (`codec=msgpack`) the bytes of a binary message.
   */
  message(payload: Uint8Array): void;
  ping(payload: Uint8Array): void;
  pong(payload: Uint8Array): void;
  /** The client's close frame: its code ({@linkcode CloseCode.NoStatus} if none) and reason. */
  closing(code: number, reason: string): void;
}

const enum State {
  Head0,
  Head1,
  Length,
  Mask,
  Payload,
  /** After a close frame: nothing more is read. */
  Closed,
}

const OP_CONTINUATION = 0;
const OP_TEXT = 1;
const OP_BINARY = 2;
const OP_CLOSE = 8;
const OP_PING = 9;
const OP_PONG = 10;
const EMPTY = new Uint8Array(0);
const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Incremental decoder of one connection's client frames; see the module comment. Throws
 * {@linkcode WsError} on a frame that breaks the protocol (the connection is then closed
 * with its code, and the decoder is not fed again).
 */
export class WsDecoder {
  #sink: WsSink;
  #maxMessageBytes: number;
  /** The opcode of this connection's messages: text, or binary for `codec=msgpack`. */
  #opcode: number;
  /** Byte 0 of an unfragmented message frame: FIN and that opcode. */
  #fin: number;
  #state = State.Head0;
  /** FIN bit and opcode of the frame being read. */
  #byte0 = 0;
  /** True while a fragmented text message is in progress. */
  #fragmented = false;
  /** Bytes still to come of the length field, the mask, or the payload. */
  #need = 0;
  #length = 0;
  /** The mask key, byte 0 in the high bits. */
  #mask = 0;
  /** Payload bytes of this frame taken so far. */
  #done = 0;
  /** This frame's payload, only when it is split across reads. */
  #partial: Uint8Array | null = null;
  /** Finished fragments of the message in progress. */
  #fragments: Uint8Array[] | null = null;
  #fragmentBytes = 0;

  constructor(sink: WsSink, maxMessageBytes: number, binary = false) {
    this.#sink = sink;
    this.#maxMessageBytes = maxMessageBytes;
    this.#opcode = binary ? OP_BINARY : OP_TEXT;
    this.#fin = binary ? FIN_BINARY : FIN_TEXT;
  }

  /** True once the client's close frame was read. */
  get closed(): boolean {
    return this.#state === State.Closed;
  }

  /** Feeds one read; its bytes are unmasked in place. */
  push(bytes: Uint8Array): void {
    const n = bytes.length;
    let i = 0;
    while (i < n) {
      const state = this.#state;
      if (state === State.Head0 && bytes[i] === this.#fin && !this.#fragmented && n - i >= 6) {
        // The fast path: a whole masked message frame with a 7-bit length in this read.
        const length = bytes[i + 1] ^ 0x80; // 0 ≤ length < 126 ⇔ MASK set and a 7-bit length
        const start = i + 6;
        const end = start + length;
        if (length < 126 && end <= n) {
          const k0 = bytes[i + 2], k1 = bytes[i + 3], k2 = bytes[i + 4], k3 = bytes[i + 5];
          if (length > this.#maxMessageBytes) {
            throw new WsError(CloseCode.TooBig, "frame too large");
          }
          let or = 0;
          let j = start;
          for (; j + 4 <= end; j += 4) {
            or |= (bytes[j] ^= k0) | (bytes[j + 1] ^= k1) | (bytes[j + 2] ^= k2) |
              (bytes[j + 3] ^= k3);
          }
          if (j < end) or |= bytes[j++] ^= k0;
          if (j < end) or |= bytes[j++] ^= k1;
          if (j < end) or |= bytes[j] ^= k2;
          const payload = bytes.subarray(start, end);
          if (or >= 0x80 && this.#opcode === OP_TEXT && !isUtf8(payload)) {
            throw new WsError(CloseCode.InvalidData, "invalid utf-8");
          }
          i = end;
          this.#sink.message(payload);
          continue;
        }
      }
      switch (state) {
        case State.Head0:
          this.#head0(bytes[i++]);
          break;
        case State.Head1:
          this.#head1(bytes[i++]);
          break;
        case State.Length:
          this.#length = this.#length * 256 + bytes[i++];
          if (--this.#need === 0) this.#lengthDone();
          break;
        case State.Mask:
          this.#mask = ((this.#mask << 8) | bytes[i++]) >>> 0;
          if (--this.#need === 0) {
            if (this.#length === 0) this.#frameEnd(EMPTY);
            else {
              this.#state = State.Payload;
              this.#need = this.#length;
              this.#done = 0;
            }
          }
          break;
        case State.Payload: {
          const take = Math.min(this.#need, n - i);
          unmask(bytes, i, take, this.#mask, this.#done);
          if (this.#partial === null && take === this.#length) {
            i += take;
            this.#frameEnd(bytes.subarray(i - take, i));
            break;
          }
          this.#partial ??= new Uint8Array(this.#length);
          this.#partial.set(bytes.subarray(i, i + take), this.#done);
          i += take;
          this.#done += take;
          this.#need -= take;
          if (this.#need === 0) {
            const payload = this.#partial;
            this.#partial = null;
            this.#frameEnd(payload);
          }
          break;
        }
        case State.Closed:
          return;
      }
    }
  }

  #head0(byte: number): void {
    if (byte & 0x70) throw new WsError(CloseCode.ProtocolError, "reserved bits set");
    const opcode = byte & 0x0f;
    if (opcode >= OP_CLOSE) {
      if (!(byte & 0x80) || opcode > OP_PONG) {
        throw new WsError(CloseCode.ProtocolError, "bad control frame");
      }
    } else if (opcode === OP_CONTINUATION) {
      if (!this.#fragmented) throw new WsError(CloseCode.ProtocolError, "unexpected continuation");
    } else if (opcode === OP_TEXT || opcode === OP_BINARY) {
      if (opcode !== this.#opcode) {
        throw new WsError(
          CloseCode.Unsupported,
          opcode === OP_BINARY
            ? "binary frames need codec=msgpack"
            : "codec=msgpack takes binary frames",
        );
      }
      if (this.#fragmented) throw new WsError(CloseCode.ProtocolError, "unfinished message");
    } else {
      throw new WsError(CloseCode.ProtocolError, "unknown opcode");
    }
    this.#byte0 = byte;
    this.#state = State.Head1;
  }

  #head1(byte: number): void {
    if (!(byte & 0x80)) throw new WsError(CloseCode.ProtocolError, "unmasked frame");
    const length = byte & 0x7f;
    if (length < 126) {
      this.#length = length;
      return this.#lengthDone();
    }
    if ((this.#byte0 & 0x0f) >= OP_CLOSE) {
      throw new WsError(CloseCode.ProtocolError, "bad control frame");
    }
    this.#state = State.Length;
    this.#need = length === 126 ? 2 : 8;
    this.#length = 0;
  }

  /** The length is known: check it against the limit (a fragment adds to its message's). */
  #lengthDone(): void {
    const total = (this.#byte0 & 0x0f) === OP_CONTINUATION
      ? this.#fragmentBytes + this.#length
      : this.#length;
    if ((this.#byte0 & 0x0f) < OP_CLOSE && total > this.#maxMessageBytes) {
      throw new WsError(CloseCode.TooBig, "frame too large");
    }
    this.#state = State.Mask;
    this.#need = 4;
    this.#mask = 0;
  }

  #frameEnd(payload: Uint8Array): void {
    this.#state = State.Head0;
    const byte0 = this.#byte0;
    const opcode = byte0 & 0x0f;
    if (opcode === OP_PING) return this.#sink.ping(payload);
    if (opcode === OP_PONG) return this.#sink.pong(payload);
    if (opcode === OP_CLOSE) return this.#close(payload);
    if (!(byte0 & 0x80)) {
      // A first or middle fragment: copied, as the view dies with the read.
      this.#fragmented = true;
      (this.#fragments ??= []).push(payload.slice());
      this.#fragmentBytes += payload.length;
      return;
    }
    let whole = payload;
    const fragments = this.#fragments;
    if (fragments !== null) {
      whole = new Uint8Array(this.#fragmentBytes + payload.length);
      let at = 0;
      for (const fragment of fragments) {
        whole.set(fragment, at);
        at += fragment.length;
      }
      whole.set(payload, at);
      this.#fragments = null;
      this.#fragmentBytes = 0;
      this.#fragmented = false;
    }
    if (this.#opcode === OP_TEXT && !isUtf8(whole)) {
      throw new WsError(CloseCode.InvalidData, "invalid utf-8");
    }
    this.#sink.message(whole);
  }

  #close(payload: Uint8Array): void {
    if (payload.length === 1) throw new WsError(CloseCode.ProtocolError, "bad close frame");
    let code: number = CloseCode.NoStatus;
    let reason = "";
    if (payload.length >= 2) {
      code = (payload[0] << 8) | payload[1];
      if (!validCloseCode(code)) throw new WsError(CloseCode.ProtocolError, "bad close code");
      try {
        reason = utf8.decode(payload.subarray(2));
      } catch {
        throw new WsError(CloseCode.InvalidData, "invalid utf-8");
      }
    }
    this.#state = State.Closed;
    this.#fragments = null;
    this.#sink.closing(code, reason);
  }
}

/** A code a close frame may carry (RFC 6455 §7.4): defined, not reserved, or 3000–4999. */
function validCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
    (code >= 3000 && code <= 4999);
}

/** XORs `length` bytes at `at` with the mask key, from key byte `phase % 4` on. */
function unmask(bytes: Uint8Array, at: number, length: number, mask: number, phase: number) {
  const keyByte = (j: number) => (mask >>> (24 - 8 * ((phase + j) & 3))) & 255;
  let i = 0;
  for (; i < length && ((phase + i) & 3) !== 0; i++) bytes[at + i] ^= keyByte(i);
  const k0 = mask >>> 24, k1 = (mask >>> 16) & 255, k2 = (mask >>> 8) & 255, k3 = mask & 255;
  for (; i + 4 <= length; i += 4) {
    const p = at + i;
    bytes[p] ^= k0;
    bytes[p + 1] ^= k1;
    bytes[p + 2] ^= k2;
    bytes[p + 3] ^= k3;
  }
  for (; i < length; i++) bytes[at + i] ^= keyByte(i);
}
