/**
 * The connection seam: what a session writes to and what feeds it, whatever carries the
 * client (the raw chunk stream today; WebSocket, server-sent events and long-poll beside it).
 * A transport decodes its own framing into message bodies and frames what the session
 * sends; the session never sees a socket, so nothing in `session/` or `shard/` changes when a
 * transport is added.
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
   * last chunk, a close frame), or at once. Calls nothing back.
   */
  close(graceful: boolean): void;
}

/** What a connection feeds: the session it carries. */
export interface ConnReceiver {
  /** One message body from the client, in order (a view valid only during the call). */
  receive(body: Uint8Array): void;
  /** The client ended the stream gracefully. */
  end(): void;
  /** The client broke the framing: tell it `reason`, then close. */
  fail(reason: string): void;
  /** The connection is gone (closed by the client, reset, or dropped as too slow). */
  closed(): void;
}

/** Where a client socket's bytes and its close go: its handshake reader, then its connection. */
export interface StreamTarget {
  receive(bytes: Uint8Array): void;
  closed(): void;
}

/** A client let in at the handshake, for a transport to answer. */
export interface Admitted {
  admitted: true;
  uid: string;
  /** The client's device (`device=`, PROTOCOL.md §7); "" for the default device. */
  device: string;
  /** How its messages are written (`codec=`, PROTOCOL.md §7). */
  codec: MessageCodec;
  /** Its channel permissions, from the authenticator; null: every channel. */
  access: ChannelAccess | null;
  /** The raw query, reused verbatim in a 303 Location. */
  query: string;
  head: RequestHead;
  /** Bytes the client sent after the head. */
  rest: Uint8Array;
  transport: Transport;
}

/** What a transport's connections count in and are limited by. */
export interface TransportContext {
  counters: ShardCounters;
  maxFrameBytes: number;
  maxOutputBytes: number;
}

/**
 * A way for clients to connect on the client ports: the request it answers, and how it turns
 * an admitted client's socket into a connection. Registered in `registry.ts`.
 */
export interface Transport {
  readonly name: TransportName;
  readonly method: string;
  readonly path: string;
  /** Answers the admitted client (its `200`, or `101`) and builds its connection. */
  open(socket: Socket, admitted: Admitted, context: TransportContext): OpenedConn;
}

/** A connection a transport opened: it reads its socket and feeds the receiver attached. */
export interface OpenedConn extends ClientConn, StreamTarget {
  attach(receiver: ConnReceiver): void;
}
