/**
 * The long-poll transport's connection: one `GET /poll` held until it has something to say,
 * answered `{"result":[message, …]}` once, after which the socket takes the client's next
 * request (HTTP/1.1 keep-alive) and the session waits without a connection for the next
 * poll (`ConnReceiver.left`): what reaches it meanwhile waits stored, as for any offline user.
 *
 * It answers at the end of the first pass of the event loop in which the session gave it
 * messages (so a replay's first page, or a live delivery, goes at once and together), when
 * its `wait` is up (`[]`), or when its answer reaches `--max_output_bytes` (the rest waits
 * for the next poll). A client that closes a held poll leaves its session waiting too.
 *
 * @module
 */

import type { Socket } from "node:net";
import { response, wantsClose } from "../../protocol/handshake.ts";
import { type ShardCounters, TRANSPORT_COUNTERS } from "../../stats/counters.ts";
import type { Admitted, ConnReceiver, OpenedConn } from "../conn.ts";
import { Deadlines } from "../deadlines.ts";
import { closeSoon } from "../linger.ts";
import { type Flushable, scheduleFlush } from "../socket_conn.ts";

const encoder = new TextEncoder();
const EMPTY = new Uint8Array(0);

/** Bytes of a pipelined next request kept while a poll is held; past it the socket goes. */
const MAX_EARLY_BYTES = 65_536;

const enum State {
  Held,
  /** Answered: the socket has gone back to the client port. */
  Answered,
  Closed,
}

/** Polls being held: each answered `[]` once its `wait` is up (within 250 ms). */
const held = new Deadlines<PollConn>(250, (conn) => conn.expire());

/** One held poll. */
export class PollConn implements OpenedConn, Flushable {
  readonly transport = "poll" as const;
  readonly upstream = false;
  #socket: Socket;
  /** The request's CORS header lines, and what hands the socket on for the next request. */
  #cors: string;
  #next: (rest: Uint8Array) => void;
  #counters: ShardCounters;
  #maxOutputBytes: number;
  #receiver: ConnReceiver | null = null;
  #state = State.Held;
  /** The messages so far, comma-separated; null while there are none. */
  #messages: string | null = null;
  /** What the client sent after this request (a pipelined next one). */
  #early: Uint8Array;
  /** `Connection: close` asked for by the client: no next request on this socket. */
  #last: boolean;

  constructor(
    socket: Socket,
    admitted: Admitted,
    limits: { counters: ShardCounters; maxOutputBytes: number; waitMs: number },
  ) {
    // Only what the answer needs is kept: a held poll is an idle client's whole cost.
    this.#socket = socket;
    this.#cors = admitted.cors;
    this.#next = admitted.next;
    this.#counters = limits.counters;
    this.#maxOutputBytes = limits.maxOutputBytes;
    // A view, even an empty one, would keep the socket's whole read buffer.
    this.#early = admitted.rest.length === 0 ? EMPTY : admitted.rest.slice();
    this.#last = wantsClose(admitted.head.headers);
    held.add(this, Date.now() + limits.waitMs);
  }

  attach(receiver: ConnReceiver): void {
    this.#receiver = receiver;
  }

  send(message: string): void {
    if (this.#state !== State.Held) return;
    this.#counters.total_send_number++;
    this.#counters[TRANSPORT_COUNTERS.poll.send]++;
    if (this.#messages === null) {
      this.#messages = message;
      scheduleFlush(this);
    } else this.#messages += "," + message;
    if (this.#messages.length >= this.#maxOutputBytes) this.#answer(false);
  }

  bufferedBytes(): number {
    return (this.#messages?.length ?? 0) + this.#socket.writableLength;
  }

  pause(): void {}

  resume(): void {
    // Read on while held, to hear of a client that goes away.
    if (this.#state === State.Held) this.#socket.resume();
  }

  /** The end of the pass the first messages came in: answer with them. */
  flush(): void {
    if (this.#state === State.Held && this.#messages !== null) this.#answer(false);
  }

  /** The poll's `wait` is up. */
  expire(): void {
    if (this.#state === State.Held) this.#answer(false);
  }

  /** Ends the poll: answered with what it has (the session is over), or dropped. */
  close(graceful: boolean): void {
    if (this.#state !== State.Held) return;
    if (graceful) this.#answer(true);
    else {
      this.#stop();
      this.#socket.destroy();
    }
  }

  receive(bytes: Uint8Array): void {
    if (this.#state !== State.Held) return;
    const early = new Uint8Array(this.#early.length + bytes.length);
    early.set(this.#early);
    early.set(bytes, this.#early.length);
    this.#early = early;
    if (early.length > MAX_EARLY_BYTES) this.close(false);
  }

  /** The socket closed while the poll was held: the session waits for the next one. */
  closed(): void {
    if (this.#state !== State.Held) return;
    this.#stop();
    this.#receiver?.left();
  }

  #stop(): void {
    this.#state = State.Closed;
    held.delete(this);
    this.#messages = null;
  }

  /** Writes the answer; then the socket takes the next request, or closes if `last`. */
  #answer(last: boolean): void {
    const body = encoder.encode(`{"result":[${this.#messages ?? ""}]}`);
    this.#state = State.Answered;
    held.delete(this);
    this.#messages = null;
    const close = last || this.#last;
    const headers = "Content-Type: application/json; charset=utf-8\r\n" +
      "Cache-Control: no-store\r\n" +
      (close ? "Connection: close\r\n" : "Connection: keep-alive\r\n") +
      this.#cors;
    const answer = response(200, headers, { body });
    this.#counters.total_send_bytes += answer.length;
    if (close) {
      closeSoon(this.#socket, answer);
      if (!last) this.#receiver?.left();
      return;
    }
    this.#socket.write(answer);
    this.#receiver?.left();
    this.#next(this.#early);
  }
}
