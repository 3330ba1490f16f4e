/**
 * The server-sent events transport's connection: after the `200 text/event-stream` head, each
 * message is one event (`id: <s>` for a stored delivery, `data: <json>`). The client writes
 * nothing on it (its messages come by `/send`); bytes it sends anyway are ignored. Every open
 * stream gets a comment every {@linkcode KEEPALIVE_MS}, one timer for all of them, so that
 * proxies keep it and the client can tell a quiet stream from a dead one.
 *
 * @module
 */

import type { Socket } from "node:net";
import { event, KEEPALIVE_COMMENT } from "../../protocol/sse.ts";
import type { ShardCounters } from "../../stats/counters.ts";
import { SocketConn } from "../socket_conn.ts";

/** How often an open stream gets a comment. */
export const KEEPALIVE_MS = 15_000;

const streams = new Set<SseConn>();
let timer: ReturnType<typeof setInterval> | undefined;

/** A client on an event stream. */
export class SseConn extends SocketConn {
  readonly transport = "sse" as const;
  readonly upstream = false;

  constructor(socket: Socket, counters: ShardCounters, maxOutputBytes: number) {
    super(socket, counters, maxOutputBytes);
    streams.add(this);
    timer ??= setInterval(keepAlive, KEEPALIVE_MS);
  }

  receive(): void {}

  /** Writes the keep-alive comment. */
  comment(): void {
    this.write(KEEPALIVE_COMMENT, KEEPALIVE_COMMENT.length);
  }

  protected frame(message: string, _bytes: number, seq: number): string {
    return event(message, seq);
  }

  protected lastWords(): undefined {
    return undefined;
  }

  override close(graceful: boolean, reason?: string): void {
    forget(this);
    super.close(graceful, reason);
  }

  override closed(): void {
    forget(this);
    super.closed();
  }
}

function keepAlive(): void {
  for (const stream of streams) stream.comment();
}

function forget(stream: SseConn): void {
  streams.delete(stream);
  if (streams.size === 0 && timer !== undefined) {
    clearInterval(timer);
    timer = undefined;
  }
}
