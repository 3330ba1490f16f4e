/**
 * What every transport over a client-port socket shares: output coalesced per pass of the
 * event loop, the slow-consumer rule, and closing with a linger. A transport adds only its
 * framing, in and out.
 *
 * Output: messages written in one pass leave in one socket write. A transport frames either
 * UTF-8 text (written as a string when it is ASCII, the cheap write, otherwise as bytes) or,
 * as a WebSocket or a binary (MessagePack) chunk stream does, latin1 strings whose characters
 * are the bytes, written as such (as cheap as an ASCII write, measured); either way the
 * socket's `writableLength` stays a byte count. A connection whose unsent output passes its
 * limit is dropped as too slow: its stored messages wait for its next connect; nothing
 * acknowledged is lost.
 *
 * @module
 */

import type { Socket } from "node:net";
import { setImmediate } from "node:timers";
import { utf8Length } from "../protocol/chunk.ts";
import { type ShardCounters, TRANSPORT_COUNTERS } from "../stats/counters.ts";
import type { ConnReceiver, OpenedConn, TransportName } from "./conn.ts";
import { closeSoon } from "./linger.ts";

const encoder = new TextEncoder();

/** A client connection on a socket of a client port; subclasses frame the messages. */
export abstract class SocketConn implements OpenedConn {
  abstract readonly transport: TransportName;
  abstract readonly upstream: boolean;
  protected readonly socket: Socket;
  protected readonly counters: ShardCounters;
  protected receiver: ConnReceiver | null = null;
  #maxOutputBytes: number;
  /** True when the frames are latin1 strings (a character a byte), not UTF-8 text. */
  #latin1: boolean;
  /** This pass's framed output; null when there is none. */
  #output: string | null = null;
  /** Its length in bytes on the wire. */
  #outputBytes = 0;
  #closed = false;

  constructor(socket: Socket, counters: ShardCounters, maxOutputBytes: number, latin1 = false) {
    this.socket = socket;
    this.counters = counters;
    this.#maxOutputBytes = maxOutputBytes;
    this.#latin1 = latin1;
  }

  /** Starts feeding `receiver` (the session). */
  attach(receiver: ConnReceiver): void {
    this.receiver = receiver;
  }

  /** Bytes read off the socket: decode them into message bodies for the receiver. */
  abstract receive(bytes: Uint8Array): void;

  /**
   * One message, framed by the transport; `bytes` is the message's UTF-8 length and `seq`
   * its `s` (0 for one that is not a stored delivery).
   */
  protected abstract frame(message: string, bytes: number, seq: number): string;

  /** What ends the stream gracefully (a last chunk, a close frame), if anything. */
  protected abstract lastWords(reason?: string): string | undefined;

  send(message: string | Uint8Array, seq = 0): void {
    if (this.#closed) return;
    // A binary message is framed as latin1, a character a byte.
    const text = typeof message === "string" ? message : latin1(message);
    const bytes = typeof message === "string" ? utf8Length(message) : message.length;
    const framed = this.frame(text, bytes, seq);
    this.counters.total_send_number++;
    this.counters[TRANSPORT_COUNTERS[this.transport].send]++;
    // Latin1 frames are their byte count; UTF-8 framing is ASCII around the message.
    this.write(framed, this.#latin1 ? framed.length : bytes + framed.length - text.length);
  }

  /** Queues framed bytes (a control frame, say) for this pass's write. */
  protected write(framed: string, bytes: number): void {
    if (this.#closed) return;
    this.counters.total_send_bytes += bytes;
    this.#outputBytes += bytes;
    if (this.#output !== null) this.#output += framed;
    else {
      this.#output = framed;
      scheduleFlush(this);
    }
  }

  bufferedBytes(): number {
    return this.#outputBytes + this.socket.writableLength;
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    if (!this.#closed) this.socket.resume();
  }

  /** Writes the queued output in one go; drops the connection if it is not keeping up. */
  flush(): void {
    const output = this.#output;
    const bytes = this.#outputBytes;
    this.#output = null;
    this.#outputBytes = 0;
    if (output === null || this.#closed) return;
    if (this.#latin1) this.socket.write(output, "latin1");
    else this.socket.write(bytes === output.length ? output : encoder.encode(output));
    if (this.socket.writableLength > this.#maxOutputBytes) {
      this.counters.error_number++;
      this.counters.slow_consumer_closes++;
      this.#closed = true;
      this.socket.destroy();
      this.receiver?.closed();
    }
  }

  close(graceful: boolean, reason?: string): void {
    if (this.#closed) return;
    if (graceful) {
      const last = this.lastWords(reason);
      if (last !== undefined) this.write(last, last.length);
      this.flush();
    }
    this.#closed = true;
    this.#output = null;
    if (graceful) closeSoon(this.socket);
    else this.socket.destroy();
  }

  /** The socket closed (its listener calls this once). */
  closed(): void {
    this.#closed = true;
    this.#output = null;
    this.#outputBytes = 0;
    this.receiver?.closed();
  }
}

/** Bytes as a latin1 string, a character a byte. */
function latin1(bytes: Uint8Array): string {
  let text = "";
  for (let i = 0; i < bytes.length; i += 4096) {
    text += String.fromCharCode(...bytes.subarray(i, i + 4096));
  }
  return text;
}

/** Something written once a pass: a connection's coalesced output. */
export interface Flushable {
  flush(): void;
}

let dirty: Flushable[] = [];

/**
 * One flush, after this pass of the event loop's I/O callbacks, writes every connection
 * written to meanwhile: frames from all the link messages and reads of the pass share a
 * write, not only those of one task (measured: 9.3 against 10.5 µs of server CPU a delivered
 * message under unicast load, and 10% more messages/s).
 */
export function scheduleFlush(conn: Flushable): void {
  if (dirty.push(conn) > 1) return;
  setImmediate(() => {
    const conns = dirty;
    dirty = [];
    for (const c of conns) c.flush();
  });
}
