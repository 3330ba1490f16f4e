/**
 * What every transport over a client-port socket shares: output coalesced per pass of the
 * event loop, the slow-consumer rule, and closing with a linger. A transport adds only its
 * framing, in and out.
 *
 * Output: messages written in one pass leave in one socket write, as a string when they are
 * ASCII (the cheap write), otherwise as bytes, so that the socket's `writableLength` stays a
 * byte count. A binary connection (MessagePack) keeps its output as a latin1 string, a byte a
 * character, written as such: as cheap as an ASCII write, measured. A connection whose unsent output passes its limit is dropped as too slow: its
 * stored messages wait for its next connect; nothing acknowledged is lost.
 *
 * @module
 */

import type { Socket } from "node:net";
import { setImmediate } from "node:timers";
import { utf8Length } from "../protocol/chunk.ts";
import type { ShardCounters } from "../stats/counters.ts";
import type { ConnReceiver, OpenedConn, TransportName } from "./conn.ts";
import { closeSoon } from "./linger.ts";

const encoder = new TextEncoder();

/** A client connection on a socket of a client port; subclasses frame the messages. */
export abstract class SocketConn implements OpenedConn {
  abstract readonly transport: TransportName;
  protected readonly socket: Socket;
  protected readonly counters: ShardCounters;
  protected receiver: ConnReceiver | null = null;
  #maxOutputBytes: number;
  /** This pass's framed output; null when there is none. */
  #output: string | null = null;
  /** Its UTF-8 length. */
  #outputBytes = 0;
  #closed = false;
  /** Its messages are bytes: output is latin1. */
  readonly #binary: boolean;

  constructor(socket: Socket, counters: ShardCounters, maxOutputBytes: number, binary = false) {
    this.socket = socket;
    this.counters = counters;
    this.#maxOutputBytes = maxOutputBytes;
    this.#binary = binary;
  }

  /** Starts feeding `receiver` (the session). */
  attach(receiver: ConnReceiver): void {
    this.receiver = receiver;
  }

  /** Bytes read off the socket: decode them into message bodies for the receiver. */
  abstract receive(bytes: Uint8Array): void;

  /** One message, framed by the transport; `bytes` is the frame's UTF-8 length. */
  protected abstract frame(message: string, bytes: number): string;

  /** What ends the stream gracefully (a last chunk, a close frame), if anything. */
  protected abstract lastWords(): string | undefined;

  send(message: string | Uint8Array): void {
    const text = typeof message === "string" ? message : latin1(message);
    const bytes = typeof message === "string" ? utf8Length(message) : message.length;
    const framed = this.frame(text, bytes);
    // Framing is ASCII: it adds as many bytes as characters.
    this.write(framed, bytes + framed.length - text.length);
  }

  /** Queues framed bytes (a control frame, say) for this pass's write. */
  protected write(framed: string, bytes: number): void {
    if (this.#closed) return;
    this.counters.total_send_number++;
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
    if (this.#binary) this.socket.write(output, "latin1");
    else this.socket.write(bytes === output.length ? output : encoder.encode(output));
    if (this.socket.writableLength > this.#maxOutputBytes) {
      this.counters.error_number++;
      this.counters.slow_consumer_closes++;
      this.#closed = true;
      this.socket.destroy();
      this.receiver?.closed();
    }
  }

  close(graceful: boolean): void {
    if (this.#closed) return;
    if (graceful) {
      const last = this.lastWords();
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

let dirty: SocketConn[] = [];

/**
 * One flush, after this pass of the event loop's I/O callbacks, writes every connection
 * written to meanwhile: frames from all the link messages and reads of the pass share a
 * write, not only those of one task (measured: 9.3 against 10.5 µs of server CPU a delivered
 * message under unicast load, and 10% more messages/s).
 */
function scheduleFlush(conn: SocketConn): void {
  if (dirty.push(conn) > 1) return;
  setImmediate(() => {
    const conns = dirty;
    dirty = [];
    for (const c of conns) c.flush();
  });
}
