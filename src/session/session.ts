/**
 * A session: one client connection after its 200, a duplex chunk stream. It decodes and
 * validates frames, answers heartbeats itself and hands everything else to its owner (the
 * shard). Output is coalesced: frames written in one pass of the event loop leave in one
 * socket write, and a connection whose unsent output passes its limit is closed as too
 * slow (stored messages wait for its next connect; nothing acknowledged is lost). A session
 * the server closes leaves its owner at once, not when the client gets round to closing its
 * side: the socket itself lingers a moment and is then destroyed (`linger.ts`).
 *
 * Kept small on purpose: an idle session is this object, its decoder and its socket.
 *
 * @module
 */

import type { Socket } from "node:net";
import { setImmediate } from "node:timers";
import { ChunkDecoder, ChunkError, textChunk, utf8Length } from "../protocol/chunk.ts";
import {
  type ClientMessage,
  type Delivery,
  encodeDelivery,
  encodeError,
  HEARTBEAT,
  MessageError,
  parseClientMessage,
} from "../protocol/message.ts";
import type { ShardCounters } from "../stats/counters.ts";
import type { StreamTarget } from "./handshake.ts";
import { closeSoon } from "./linger.ts";

/** What a session reports to. */
export interface SessionOwner {
  readonly counters: ShardCounters;
  /** A valid frame other than a heartbeat; the work it started, if it is not done yet. */
  onMessage(
    session: Session,
    message: Exclude<ClientMessage, { y: 0 }>,
  ): Promise<unknown> | undefined;
  /** The connection is gone (called once). */
  onClose(session: Session): void;
}

/** Per-connection limits. */
export interface SessionLimits {
  maxFrameBytes: number;
  maxOutputBytes: number;
}

/**
 * Frames of one connection whose work (a store write, a forward) may be under way at once;
 * past it the socket is not read until half of them are done. A client cannot queue
 * unbounded work by writing faster than the shard stores (100,000 channel messages in one
 * burst grew a shard to ~1 GB).
 */
const MAX_FRAMES_IN_FLIGHT = 256;
const HEARTBEAT_CHUNK = textChunk(HEARTBEAT, HEARTBEAT.length);
const LAST_CHUNK = "0\r\n\r\n";
const encoder = new TextEncoder();
const RECV_TYPE = ["hb", "sub", "unsub", "msg", "cmsg", "ack"] as const;

/** One client connection. */
export class Session implements StreamTarget {
  readonly uid: string;
  /** Milliseconds timestamp of the last bytes received. */
  lastSeen = Date.now();
  /** Highest seq written to this connection. */
  sentSeq = 0;
  /** Live deliveries held back while stored messages are replayed; null when live. */
  backlog: Delivery[] | null = [];
  #socket: Socket;
  #owner: SessionOwner;
  #decoder: ChunkDecoder;
  #maxOutputBytes: number;
  /** This pass's frames, as text; null when there are none. */
  #output: string | null = null;
  /** Their UTF-8 length. */
  #outputBytes = 0;
  /** No more input or output; the owner has been told. */
  #closed = false;
  /** Frames whose work is under way. */
  #inFlight = 0;

  constructor(socket: Socket, uid: string, owner: SessionOwner, limits: SessionLimits) {
    this.uid = uid;
    this.#socket = socket;
    this.#owner = owner;
    this.#decoder = new ChunkDecoder(limits.maxFrameBytes);
    this.#maxOutputBytes = limits.maxOutputBytes;
  }

  /** Decodes bytes from the client (the socket's reads, or bytes that came with the head). */
  receive(bytes: Uint8Array): void {
    if (this.#closed) return;
    this.lastSeen = Date.now();
    this.#owner.counters.total_recv_bytes += bytes.length;
    try {
      const open = this.#decoder.push(bytes, (body) => this.#frame(body));
      if (!open) this.end();
    } catch (error) {
      if (error instanceof ChunkError) this.fail(error.reason);
      else if (error instanceof MessageError) this.fail(error.reason);
      else throw error;
    }
  }

  #frame(body: Uint8Array): void {
    const counters = this.#owner.counters;
    counters.total_recv_number++;
    let message: ClientMessage;
    try {
      message = parseClientMessage(body);
    } catch (error) {
      if (!(error instanceof MessageError) || error.fatal) throw error;
      counters.error_number++;
      this.sendText(encodeError(error.reason));
      return;
    }
    counters.recv_type[RECV_TYPE[message.y]]++;
    if (message.y === 0) return this.write(HEARTBEAT_CHUNK, HEARTBEAT_CHUNK.length);
    const work = this.#owner.onMessage(this, message);
    if (!work) return;
    if (++this.#inFlight === MAX_FRAMES_IN_FLIGHT) this.#socket.pause();
    work.finally(() => {
      if (--this.#inFlight === MAX_FRAMES_IN_FLIGHT / 2 && !this.#closed) this.#socket.resume();
    });
  }

  /** Queues a delivery: held back during replay, dropped if already sent. */
  deliver(delivery: Delivery): void {
    if (this.backlog) this.backlog.push(delivery);
    else this.send(delivery);
  }

  /** Writes a delivery now (unless this connection has already had its seq). */
  send(delivery: Delivery): void {
    if (delivery.seq !== 0) {
      if (delivery.seq <= this.sentSeq) return;
      this.sentSeq = delivery.seq;
    }
    this.sendText(encodeDelivery(delivery));
  }

  /** Ends replay: writes what arrived live meanwhile, then goes live. */
  goLive(): void {
    const held = this.backlog ?? [];
    this.backlog = null;
    for (const delivery of held) this.send(delivery);
  }

  /** Writes one JSON frame. */
  sendText(text: string): void {
    const bytes = utf8Length(text);
    this.write(textChunk(text, bytes), bytes + bytes.toString(16).length + 4);
  }

  /** Queues a framed chunk (`bytes` long in UTF-8) for this pass's write. */
  write(chunk: string, bytes: number): void {
    if (this.#closed) return;
    const counters = this.#owner.counters;
    counters.total_send_number++;
    counters.total_send_bytes += bytes;
    this.#outputBytes += bytes;
    if (this.#output !== null) {
      this.#output += chunk;
    } else {
      this.#output = chunk;
      scheduleFlush(this);
    }
  }

  /** Writes the queued output in one go; closes the connection if it is not keeping up. */
  flush(): void {
    const output = this.#output;
    const bytes = this.#outputBytes;
    this.#output = null;
    this.#outputBytes = 0;
    if (output === null || this.#closed) return;
    // ASCII text goes as a string (the cheap write); other text as its bytes, so that the
    // socket's `writableLength`, which counts a string's characters, stays a byte count.
    this.#socket.write(bytes === output.length ? output : encoder.encode(output));
    if (this.#socket.writableLength > this.#maxOutputBytes) {
      this.#owner.counters.error_number++;
      this.#leave();
      this.#socket.destroy();
    }
  }

  /** Sends `{"error": reason}` and closes. */
  fail(reason: string): void {
    if (this.#closed) return;
    this.#owner.counters.error_number++;
    this.sendText(encodeError(reason));
    this.end(false);
  }

  /** Closes gracefully: the last chunk (unless `lastChunk` is false), then FIN. */
  end(lastChunk = true): void {
    if (this.#closed) return;
    if (lastChunk) this.write(LAST_CHUNK, LAST_CHUNK.length);
    this.flush();
    this.#leave();
    closeSoon(this.#socket);
  }

  /** The socket closed (called once, by whoever owns the socket's listeners). */
  closed(): void {
    this.#output = null;
    this.#outputBytes = 0;
    this.#leave();
  }

  /** Stops input and output and tells the owner, once. */
  #leave(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#owner.onClose(this);
  }
}

let dirty: Session[] = [];

/**
 * One flush, after this pass of the event loop's I/O callbacks, writes every session written
 * to meanwhile: frames from all the link messages and reads of the pass share a write, not
 * only those of one task (measured: 9.3 against 10.5 µs of server CPU a delivered message
 * under unicast load, and 10% more messages/s).
 */
function scheduleFlush(session: Session): void {
  if (dirty.push(session) > 1) return;
  setImmediate(() => {
    const sessions = dirty;
    dirty = [];
    for (const s of sessions) s.flush();
  });
}
