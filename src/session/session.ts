/**
 * A session: one client connection after it was admitted, whatever its transport. It
 * validates the messages its connection decodes, answers heartbeats itself and hands
 * everything else to its owner (the shard); it sends deliveries in `s` order, holding live
 * ones back while stored ones are replayed and dropping any `s` it has already sent. A
 * heartbeat sent during the replay is answered after it, so its answer tells a client it has
 * everything that was stored for it when it connected. A
 * session the server closes leaves its owner at once, not when the client gets round to
 * closing its side.
 *
 * It holds its client to `--client_msg_rate` with a token bucket `--client_msg_burst` deep
 * (acks are free: a client acks every delivery, and a replay is many). A message that finds
 * the bucket empty is answered `{"error":"too many messages"}` and dropped. Refusals fill a
 * second bucket of the same size, emptied at the same rate: a client refused a whole burst
 * more than the rate forgives (one that keeps sending at over twice the rate, or a burst
 * after being told) is closed with `rate limit exceeded`. One that slows to the rate is
 * served again and never closed.
 *
 * Kept small on purpose: an idle session is this object and its connection.
 *
 * @module
 */

import type { ChannelAccess } from "../core/access.ts";
import type { Delivery } from "../core/messages.ts";
import { JSON_CODEC, type MessageCodec } from "../protocol/codec.ts";
import { type ClientMessage, MessageError } from "../protocol/message.ts";
import { RECV_COUNTER, type ShardCounters } from "../stats/counters.ts";
import type { ClientConn, ConnReceiver } from "../transport/conn.ts";

/** What a session reports to. */
export interface SessionOwner {
  readonly counters: ShardCounters;
  /** How fast its clients may send: messages a second, and how many at once. */
  readonly messageRate: { perSec: number; burst: number };
  /** A valid message other than a heartbeat; the work it started, if it is not done yet. */
  onMessage(
    session: Session,
    message: Exclude<ClientMessage, { y: 0 }>,
  ): Promise<unknown> | undefined;
  /** The session is over (called once). */
  onClose(session: Session): void;
}

/** How a session writes and what its client may do; JSON and every channel by default. */
export interface SessionOptions {
  /** How its messages are written (`codec=`, PROTOCOL.md §7). */
  codec?: MessageCodec;
  /** Its channel permissions, from the authenticator; null: every channel. */
  access?: ChannelAccess | null;
}

/**
 * Messages of one connection whose work (a store write, a forward) may be under way at once;
 * past it the connection is not read until half of them are done. A client cannot queue
 * unbounded work by writing faster than the shard stores (100,000 channel messages in one
 * burst grew a shard to ~1 GB).
 */
const MAX_FRAMES_IN_FLIGHT = 256;

/** What a message costs in the rate limit's buckets: thousandths, so levels stay integers. */
const MESSAGE_COST = 1000;

/** One client connection's session. */
export class Session implements ConnReceiver {
  readonly uid: string;
  /** The device it connected as (PROTOCOL.md §7); "" for the default device. */
  readonly device: string;
  /** Its channel permissions, from its authenticator; null: every channel. */
  readonly access: ChannelAccess | null;
  /** Milliseconds timestamp of the last message received. */
  lastSeen = Date.now();
  /** Highest seq sent on this connection. */
  sentSeq = 0;
  /** Live deliveries held back while stored messages are replayed; null when live. */
  backlog: Delivery[] | null = [];
  /** Heartbeats received during replay: answered when it ends, so an answer means caught up. */
  #heldHeartbeats = 0;
  #conn: ClientConn;
  #owner: SessionOwner;
  #codec: MessageCodec;
  /** No more input or output; the owner has been told. */
  #closed = false;
  /** Messages whose work is under way. */
  #inFlight = 0;
  /** Messages it may send now, in thousandths. */
  #allowance: number;
  /** Refusals it may still be answered before it is closed, in thousandths. */
  #forbearance: number;

  constructor(
    conn: ClientConn,
    uid: string,
    device: string,
    owner: SessionOwner,
    options: SessionOptions = {},
  ) {
    this.uid = uid;
    this.device = device;
    this.access = options.access ?? null;
    this.#conn = conn;
    this.#owner = owner;
    this.#codec = options.codec ?? JSON_CODEC;
    this.#allowance = this.#forbearance = owner.messageRate.burst * MESSAGE_COST;
  }

  /** The connection carrying this session. */
  get conn(): ClientConn {
    return this.#conn;
  }

  /** One message body from the client. */
  receive(body: Uint8Array): void {
    if (this.#closed) return;
    const now = Date.now();
    this.#refill(now - this.lastSeen);
    this.lastSeen = now;
    const counters = this.#owner.counters;
    counters.total_recv_number++;
    let message: ClientMessage;
    try {
      message = this.#codec.parse(body);
    } catch (error) {
      if (!(error instanceof MessageError)) throw error;
      if (error.fatal) return this.fail(error.reason);
      if (!this.#spend()) return;
      counters.error_number++;
      return this.sendError(error.reason);
    }
    if (message.y !== 5 && !this.#spend()) return;
    counters[RECV_COUNTER[message.y]]++;
    if (message.y === 0) {
      if (this.backlog) this.#heldHeartbeats++;
      else this.#send(this.#codec.heartbeat);
      return;
    }
    const work = this.#owner.onMessage(this, message);
    if (!work) return;
    if (++this.#inFlight === MAX_FRAMES_IN_FLIGHT) this.#conn.pause();
    work.finally(() => {
      if (--this.#inFlight === MAX_FRAMES_IN_FLIGHT / 2) this.#conn.resume();
    });
  }

  /** Adds what `elapsedMs` earned to both buckets, up to a burst. */
  #refill(elapsedMs: number): void {
    const { perSec, burst } = this.#owner.messageRate;
    // perSec messages a second are perSec thousandths a millisecond; a clock set back earns
    // nothing (and takes nothing).
    const earned = Math.max(0, elapsedMs) * perSec;
    const full = burst * MESSAGE_COST;
    this.#allowance = Math.min(full, this.#allowance + earned);
    this.#forbearance = Math.min(full, this.#forbearance + earned);
  }

  /**
   * Takes one message from the allowance; false when there was none, after answering the
   * client (or closing it, when it has used up the forbearance too).
   */
  #spend(): boolean {
    if (this.#allowance >= MESSAGE_COST) {
      this.#allowance -= MESSAGE_COST;
      return true;
    }
    const counters = this.#owner.counters;
    counters.limit_messages_number++;
    this.#forbearance -= MESSAGE_COST;
    if (this.#forbearance < 0) this.fail("rate limit exceeded");
    else {
      counters.error_number++;
      this.sendError("too many messages");
    }
    return false;
  }

  /** Queues a delivery: held back during replay, dropped if already sent. */
  deliver(delivery: Delivery): void {
    if (this.backlog) this.backlog.push(delivery);
    else this.send(delivery);
  }

  /** Sends a delivery now (unless this connection has already had its seq). */
  send(delivery: Delivery): void {
    if (delivery.seq !== 0) {
      if (delivery.seq <= this.sentSeq) return;
      this.sentSeq = delivery.seq;
    }
    if (this.#closed) return;
    this.#owner.counters[delivery.type === 3 ? "sent_msg" : "sent_cmsg"]++;
    this.#conn.send(this.#codec.delivery(delivery), delivery.seq);
  }

  /** Ends replay: sends what arrived live meanwhile and answers the heartbeats held. */
  goLive(): void {
    const held = this.backlog ?? [];
    this.backlog = null;
    for (const delivery of held) this.send(delivery);
    for (; this.#heldHeartbeats > 0; this.#heldHeartbeats--) this.#send(this.#codec.heartbeat);
  }

  /** Sends `{"error": reason}`; the session stays. */
  sendError(reason: string): void {
    this.#send(this.#codec.error(reason));
  }

  #send(message: string | Uint8Array): void {
    if (!this.#closed) this.#conn.send(message);
  }

  /** Sends `{"error": reason}` and closes. */
  fail(reason: string): void {
    if (this.#closed) return;
    this.#owner.counters.error_number++;
    this.sendError(reason);
    this.#conn.close(true);
    this.#leave();
  }

  /** Closes gracefully: what is queued, then the transport's last words. */
  end(): void {
    if (this.#closed) return;
    this.#conn.close(true);
    this.#leave();
  }

  /** The connection is gone. */
  closed(): void {
    this.#leave();
  }

  #leave(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#owner.onClose(this);
  }
}
