/**
 * A session: one client after it was admitted, whatever its transport. It validates the
 * messages its connection decodes, answers heartbeats itself and hands everything else to its
 * owner (the shard); it sends deliveries in `s` order, holding live ones back while stored
 * ones are replayed and dropping any `s` it has already sent. A session the server closes
 * leaves its owner at once, not when the client gets round to closing its side.
 *
 * One session model for every transport: a session usually lives exactly as long as its
 * connection, but one whose connection has done its work and *left* (a long-poll between two
 * polls) waits without one — still the uid's session, its messages waiting stored as for any
 * offline user — until the client's next connection of the same transport and device
 * {@linkcode Session.rejoin}s it, or, after the owner's wait, it is forgotten.
 *
 * The messages of a `/send` go through the same path ({@linkcode submit}), each answered.
 *
 * Kept small on purpose: an idle session is this object and its connection.
 *
 * @module
 */

import type { Delivery } from "../core/messages.ts";
import {
  type ClientMessage,
  encodeDelivery,
  encodeError,
  HEARTBEAT,
  MessageError,
  parseClientMessage,
} from "../protocol/message.ts";
import {
  type CounterName,
  RECV_COUNTER,
  type ShardCounters,
  TRANSPORT_COUNTERS,
} from "../stats/counters.ts";
import type { ClientConn, ConnReceiver, TransportName } from "../transport/conn.ts";

/** Who a message is from: the uid (and device) its connection or request proved. */
export interface Sender {
  readonly uid: string;
  /** The device (PROTOCOL.md §7); "" for the default one. */
  readonly device: string;
}

/**
 * What became of a client message: done (undefined), refused (the reason), or work under way
 * that ends in one of those.
 */
export type Outcome = string | undefined | Promise<string | undefined>;

/** What a session reports to. */
export interface SessionOwner {
  readonly counters: ShardCounters;
  /** A valid message other than a heartbeat, from `sender`. */
  onMessage(sender: Sender, message: Exclude<ClientMessage, { y: 0 }>): Outcome;
  /** The session is over (called once). */
  onClose(session: Session): void;
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

/** One client's session. */
export class Session implements ConnReceiver, Sender {
  readonly uid: string;
  readonly device: string;
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
  /** No more input or output; the owner has been told. */
  #closed = false;
  /** Messages whose work is under way. */
  #inFlight = 0;

  constructor(conn: ClientConn, uid: string, device: string, owner: SessionOwner) {
    this.uid = uid;
    this.device = device;
    this.transport = conn.transport;
    this.#conn = conn;
    this.#owner = owner;
  }

  /** The connection carrying this session; null while it waits for one. */
  get conn(): ClientConn | null {
    return this.#conn;
  }

  /** One message body from the client. */
  receive(body: Uint8Array): void {
    if (this.#closed) return;
    this.lastSeen = Date.now();
    const counters = this.#owner.counters;
    const recv: CounterName | undefined = TRANSPORT_COUNTERS[this.transport].recv;
    if (recv) counters[recv]++;
    let message: ClientMessage;
    try {
      message = readMessage(counters, body);
    } catch (error) {
      if (!(error instanceof MessageError)) throw error;
      return error.fatal ? this.fail(error.reason) : this.sendError(error.reason);
    }
    if (message.y === 0) return this.sendText(HEARTBEAT);
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
    if (!this.#closed) this.#conn?.send(encodeDelivery(delivery), delivery.seq);
  }

  /** Ends replay: sends what arrived live meanwhile, then goes live. */
  goLive(): void {
    const held = this.backlog ?? [];
    this.backlog = null;
    for (const delivery of held) this.send(delivery);
  }

  /** Sends one message (JSON text) that is not a delivery: an error, a heartbeat. */
  sendText(text: string): void {
    if (!this.#closed) this.#conn?.send(text);
  }

  /** Tells the client `{"error": reason}`; the session stays. */
  sendError(reason: string): void {
    this.#owner.counters.error_number++;
    this.sendText(encodeError(reason));
  }

  /** Sends `{"error": reason}` and closes. */
  fail(reason: string): void {
    if (this.#closed) return;
    this.#owner.counters.error_number++;
    this.sendText(encodeError(reason));
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
    this.epoch++;
  }

  /**
   * The owner's periodic check: a session whose client writes on its connection and has been
   * silent past `heartbeatMs` is closed; one that has waited without a connection past
   * `waitMs` is forgotten.
   */
  sweep(now: number, heartbeatMs: number, waitMs: number): void {
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
 * The messages of one `/send` from `sender`, each handled as a session's message is, and
 * answered: `"ok"` or an `{"error": …}` text a line, in order. A bad line does not stop the
 * others; lines for one uid reach the owner in order.
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
  return Promise.all(lines.map((line) => {
    counters.send_recv_number++;
    let message: ClientMessage;
    try {
      message = readMessage(counters, line);
    } catch (error) {
      if (!(error instanceof MessageError)) throw error;
      return refused(error.reason);
    }
    if (message.y === 0) return OK;
    const outcome = owner.onMessage(sender, message);
    if (outcome === undefined) return OK;
    if (typeof outcome === "string") return refused(outcome);
    return outcome.then((error) => error === undefined ? OK : refused(error));
  }));
}

/** Parses one client message body, counting it and its type. Throws {@linkcode MessageError}. */
function readMessage(counters: ShardCounters, body: Uint8Array): ClientMessage {
  counters.total_recv_number++;
  const message = parseClientMessage(body);
  counters[RECV_COUNTER[message.y]]++;
  return message;
}
