/**
 * The connection seam: what a session writes to and what feeds it, whatever carries the
 * client (the raw chunk stream, a WebSocket, server-sent events, a long-poll). A transport
 * decodes its own framing into message bodies and frames what the session sends; the session
 * never sees a socket, so nothing in `session/` or `shard/` changes when a transport is added.
 *
 * @module
 */

import type { Socket } from "node:net";
import type { ChannelAccess } from "../core/access.ts";
import type { MessageCodec } from "../protocol/codec.ts";
import type { RequestHead } from "../protocol/handshake.ts";
import type { ShardCounters } from "../stats/counters.ts";

/** The transports a client can connect over. */
export type TransportName = "tcp" | "ws" | "sse" | "poll";

/** One client connection, as its session sees it. */
export interface ClientConn {
  readonly transport: TransportName;
  /**
   * Whether the client writes on this connection too. Server-sent events and a long-poll
   * carry only the server's side (the client's messages come by `/send`), so their silence
   * says nothing about the client.
   */
  readonly upstream: boolean;
  /**
   * Queues one message (a JSON text on one line) for the client. The connection frames it
   * and writes a pass of the event loop's messages together. `seq` is the message's `s` when
   * it is a stored delivery (0 otherwise), for transports that carry it beside the message
   * (a server-sent event's `id:`). A `Uint8Array` is a binary message (MessagePack).
   */
  send(message: string | Uint8Array, seq?: number): void;
  /** Bytes queued for the client and not yet taken by the network. */
  bufferedBytes(): number;
  /** Stops reading the client (input backpressure) until {@linkcode ClientConn.resume}. */
  pause(): void;
  resume(): void;
  /**
   * Ends the connection: gracefully (what is queued, then the transport's last words — the
   * last chunk, a close frame), or at once. `reason` is the error the server closes it for,
   * already sent as `{"error": reason}`, for transports that can say it again (a WebSocket's
   * close frame). Calls nothing back.
   */
  close(graceful: boolean, reason?: string): void;
}

/** What a connection feeds: the session it carries. */
export interface ConnReceiver {
  /** One message body from the client, in order (a view valid only during the call). */
  receive(body: Uint8Array): void;
  /** The client showed it is there without sending a message (a WebSocket ping). */
  alive(): void;
  /** The client ended the stream gracefully. */
  end(): void;
  /** The client broke the framing: tell it `reason`, then close. */
  fail(reason: string): void;
  /** The connection is gone (closed by the client, reset, or dropped as too slow). */
  closed(): void;
  /**
   * The connection has done its work and the client will be back on another one (a
   * long-poll between two polls): the session waits for it, without a connection.
   */
  left(): void;
}

/** Where a client socket's bytes and its close go: its request reader, then its connection. */
export interface StreamTarget {
  receive(bytes: Uint8Array): void;
  closed(): void;
}

/** A client let in at the handshake, for a transport to answer. */
export interface Admitted {
  uid: string;
  /** The client's device (`device=`, PROTOCOL.md §7); "" for the default device. */
  device: string;
  /** How its messages are written (`codec=`, PROTOCOL.md §7). */
  codec: MessageCodec;
  /** Its channel permissions, from the authenticator; null: every channel. */
  access: ChannelAccess | null;
  /**
   * Where the client resumes (`since=`, or a server-sent events reconnect's
   * `Last-Event-ID`): every `s ≤ since` is acknowledged first; 0 when it says nothing.
   */
  since: number;
  head: RequestHead;
  /** The CORS header lines every answer to this request carries ("" for none). */
  cors: string;
  /** Bytes the client sent after the head. */
  rest: Uint8Array;
  /**
   * Hands the socket back to the client port for the client's next request (HTTP/1.1
   * keep-alive), `rest` being what was read past this one.
   */
  next(rest: Uint8Array): void;
}

/** What a transport's connections count in and are limited by. */
export interface TransportContext {
  counters: ShardCounters;
  maxFrameBytes: number;
  maxOutputBytes: number;
}

/** A refusal a transport asks for instead of opening: the status, the reason, header lines. */
export interface TransportRefusal {
  status: 400 | 426;
  reason: string;
  headers?: string;
}

/**
 * A way for clients to connect on the client ports: the request it answers, and how it turns
 * an admitted client's socket into a connection. Registered in `registry.ts`.
 */
export interface Transport {
  readonly name: TransportName;
  readonly method: string;
  readonly path: string;
  /** The `Upgrade` header value (lower case) the request must carry: `websocket`. */
  readonly upgrade?: string;
  /** Whether it carries binary messages, so `codec=msgpack` (raw TCP, WebSocket). */
  readonly binary?: boolean;
  /** What else the request must get right (a WebSocket key, a poll's `wait`), or null. */
  check?(head: RequestHead): TransportRefusal | null;
  /** Answers the admitted client (its `200`, or `101`) and builds its connection. */
  open(socket: Socket, admitted: Admitted, context: TransportContext): OpenedConn;
}

/** A connection a transport opened: it reads its socket and feeds the receiver attached. */
export interface OpenedConn extends ClientConn, StreamTarget {
  attach(receiver: ConnReceiver): void;
}
