/**
 * A session: one client after it was admitted, whatever its transport. It validates the
 * messages its connection decodes, answers heartbeats itself and hands everything else to its
 * owner (the shard); it sends deliveries in `s` order, holding live ones back while stored
 * ones are replayed and dropping any `s` it has already sent. A heartbeat sent during the
 * replay is answered after it, so its answer tells a client it has everything that was stored
 * for it when it connected. A session the server closes leaves its owner at once, not when
 * the client gets round to closing its side.
 *
 * One session model for every transport: a session usually lives exactly as long as its
 * connection, but one whose connection has done its work and *left* (a long-poll between two
 * polls) waits without one — still the uid's session, its messages waiting stored as for any
 * offline user — until the client's next connection of the same transport and device
 * {@linkcode Session.rejoin}s it, or, after the owner's wait, it is forgotten.
 *
 * The messages of a `/send` go through the same path ({@linkcode submit}), each answered.
 *
 * It holds its client to `--client_msg_rate` with a token bucket `--client_msg_burst` deep
 * (acks are free: a client acks every delivery, and a replay is many). A message that finds
 * the bucket empty is answered `{"error":"too many messages"}` and dropped. Refusals fill a
 * second bucket of the same size, emptied at the same rate: a client refused a whole burst
 * more than the rate forgives (one that keeps sending at over twice the rate, or a burst
 * after being told) is closed with `rate limit exceeded`. One that slows to the rate is
 * served again and never closed. The `/send`s of a uid's device spend from one bucket of the
 * same size that their owner keeps between requests; a line past it is answered
 * `{"error":"too many messages"}` (there is no stream to close).
 *
 * Kept small on purpose: an idle session is this object and its connection (no budget until
 * its client sends, none again once that is earned back).
 *
 * @module
 */

import type { ChannelAccess, Sender } from "../core/access.ts";
import type { Delivery } from "../core/messages.ts";
import { JSON_CODEC, type MessageCodec } from "../protocol/codec.ts";
import { type ClientMessage, encodeError, MessageError } from "../protocol/message.ts";
import {
  type CounterName,
  RECV_COUNTER,
  type ShardCounters,
  TRANSPORT_COUNTERS,
} from "../stats/counters.ts";
import type { ClientConn, ConnReceiver, TransportName } from "../transport/conn.ts";
import { MessageBudget, type MessageRate } from "./rate.ts";

/**
 * What became of a client message: done (undefined), refused (the reason), or work under way
 * that ends in one of those.
 */
export type Outcome = string | undefined | Promise<string | undefined>;

/** What a session reports to. */
export interface SessionOwner {
  readonly counters: ShardCounters;
  /** How fast its clients may send: messages a second, and how many at once. */
  readonly messageRate: MessageRate;
  /**
   * What the `/send`s of `sender`'s uid and device spend from: a bucket that outlives the
   * request, as a stream's lives as long as its session.
   */
  sendAllowance(sender: Sender, now: number): MessageBudget;
  /** A valid message other than a heartbeat, from `sender`. */
  onMessage(sender: Sender, message: Exclude<ClientMessage, { y: 0 }>): Outcome;
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

/** The answer to a `/send` line that went through. */
const OK = '"ok"';

/** Why a message past the rate limit is refused. */
const TOO_MANY = "too many messages";

/** One client's session. */
export class Session implements ConnReceiver, Sender {
  readonly uid: string;
  readonly device: string;
  readonly access: ChannelAccess | null;
  readonly transport: TransportName;
  /** Milliseconds timestamp of the last sign of life from the client. */
  lastSeen = Date.now();
  /** Highest seq sent on this connection. */
  sentSeq = 0;
  /** Live deliveries held back while stored messages are replayed; null when live. */
  backlog: Delivery[] | null = [];
  /** When the session's connection left it (0 while it has one). */
  leftAt = 0;
  /** Counts the connections it has had: a replay for an earlier one stops. */
  epoch = 0;
  #conn: ClientConn | null;
  #owner: SessionOwner;
  #codec: MessageCodec;
  /** No more input or output; the owner has been told. */
  #closed = false;
  /** Messages whose work is under way. */
  #inFlight = 0;
  /** Heartbeats received during replay: answered when it ends, so an answer means caught up. */
  #heldHeartbeats = 0;
  /**
   * Messages it may send now, and refusals it may still be answered before it is closed; made
   * full when the client first sends, dropped by {@linkcode sweep} once full again.
   */
  #budget: MessageBudget | null = null;

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
    this.transport = conn.transport;
    this.#conn = conn;
    this.#owner = owner;
    this.#codec = options.codec ?? JSON_CODEC;
  }

  /** The connection carrying this session; null while it waits for one. */
  get conn(): ClientConn | null {
    return this.#conn;
  }

  /** One message body from the client. */
  receive(body: Uint8Array): void {
    if (this.#closed) return;
    const now = Date.now();
    this.lastSeen = now;
    const budget = this.#budget ??= new MessageBudget(this.#owner.messageRate, now);
    budget.fill(now);
    const counters = this.#owner.counters;
    const recv: CounterName | undefined = TRANSPORT_COUNTERS[this.transport].recv;
    if (recv) counters[recv]++;
    let message: ClientMessage;
    try {
      message = readMessage(counters, this.#codec, body);
    } catch (error) {
      if (!(error instanceof MessageError)) throw error;
      if (error.fatal) return this.fail(error.reason);
      if (this.#spend(budget)) this.sendError(error.reason);
      return;
    }
    if (message.y !== 5 && !this.#spend(budget)) return;
    if (message.y === 0) {
      if (this.backlog) this.#heldHeartbeats++;
      else this.#send(this.#codec.heartbeat);
      return;
    }
    const outcome = this.#owner.onMessage(this, message);
    if (outcome === undefined) return;
    if (typeof outcome === "string") return this.sendError(outcome);
    if (++this.#inFlight === MAX_FRAMES_IN_FLIGHT) this.#conn?.pause();
    outcome.then((error) => {
      if (error !== undefined) this.sendError(error);
      if (--this.#inFlight === MAX_FRAMES_IN_FLIGHT / 2) this.#conn?.resume();
    });
  }

  /** The client is there (a ping, say). */
  alive(): void {
    this.lastSeen = Date.now();
  }

  /**
   * Takes one message from the allowance; false when there was none, after answering the
   * client (or closing it, when it has used up the forbearance too).
   */
  #spend(budget: MessageBudget): boolean {
    if (budget.take()) return true;
    this.#owner.counters.limit_messages_number++;
    if (budget.forgive()) this.sendError(TOO_MANY);
    else this.fail("rate limit exceeded");
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
    if (this.#closed || !this.#conn) return;
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

  /** Tells the client `{"error": reason}`; the session stays. */
  sendError(reason: string): void {
    this.#owner.counters.error_number++;
    this.#send(this.#codec.error(reason));
  }

  #send(message: string | Uint8Array): void {
    if (!this.#closed) this.#conn?.send(message);
  }

  /** Sends `{"error": reason}` and closes. */
  fail(reason: string): void {
    if (this.#closed) return;
    this.sendError(reason);
    this.#conn?.close(true, reason);
    this.#leave();
  }

  /** Closes gracefully: what is queued, then the transport's last words. */
  end(): void {
    if (this.#closed) return;
    this.#conn?.close(true);
    this.#leave();
  }

  /** The connection is gone. */
  closed(): void {
    this.#leave();
  }

  /** The connection did its work; the session waits for the client's next one. */
  left(): void {
    if (this.#closed) return;
    this.#conn = null;
    this.leftAt = Date.now();
    this.epoch++;
  }

  /**
   * Takes `conn` as its connection (the client's next poll): what it sends starts again with
   * a replay (the owner's), so nothing is taken as sent that this connection did not carry.
   */
  rejoin(conn: ClientConn): void {
    this.#conn = conn;
    this.leftAt = 0;
    this.lastSeen = Date.now();
    this.sentSeq = 0;
    this.backlog = [];
    this.#heldHeartbeats = 0;
    this.epoch++;
  }

  /**
   * The owner's periodic check: a session whose client writes on its connection and has been
   * silent past `heartbeatMs` is closed; one that has waited without a connection past
   * `waitMs` is forgotten. A budget full again is dropped: a new one would be the same.
   */
  sweep(now: number, heartbeatMs: number, waitMs: number): void {
    const budget = this.#budget;
    if (budget) {
      budget.fill(now);
      if (budget.full) this.#budget = null;
    }
    const conn = this.#conn;
    if (conn === null) {
      if (now - this.leftAt > waitMs) this.#leave();
    } else if (conn.upstream && now - this.lastSeen > heartbeatMs) {
      this.fail("heartbeat timeout");
    }
  }

  #leave(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#conn = null;
    this.#owner.onClose(this);
  }
}

/**
 * The messages of one `/send` from `sender` (JSON lines), each handled as a session's message
 * is, and answered: `"ok"` or an `{"error": …}` text a line, in order. A bad line does not
 * stop the others; lines for one uid reach the owner in order.
 */
export function submit(
  owner: SessionOwner,
  sender: Sender,
  lines: readonly Uint8Array[],
): Promise<string[]> {
  const counters = owner.counters;
  counters.send_request_number++;
  const refused = (reason: string) => {
    counters.error_number++;
    return encodeError(reason);
  };
  const allowance = owner.sendAllowance(sender, Date.now());
  // Held to the rate a stream is: every line but an ack spends, a bad one included.
  const spend = () => {
    if (allowance.take()) return true;
    counters.limit_messages_number++;
    return false;
  };
  return Promise.all(lines.map((line) => {
    counters.send_recv_number++;
    let message: ClientMessage;
    try {
      message = readMessage(counters, JSON_CODEC, line);
    } catch (error) {
      if (!(error instanceof MessageError)) throw error;
      return refused(spend() ? error.reason : TOO_MANY);
    }
    if (message.y !== 5 && !spend()) return refused(TOO_MANY);
    if (message.y === 0) return OK;
    const outcome = owner.onMessage(sender, message);
    if (outcome === undefined) return OK;
    if (typeof outcome === "string") return refused(outcome);
    return outcome.then((error) => error === undefined ? OK : refused(error));
  }));
}

/** Parses one client message body, counting it and its type. Throws {@linkcode MessageError}. */
function readMessage(
  counters: ShardCounters,
  codec: MessageCodec,
  body: Uint8Array,
): ClientMessage {
  counters.total_recv_number++;
  const message = codec.parse(body);
  counters[RECV_COUNTER[message.y]]++;
  return message;
}
