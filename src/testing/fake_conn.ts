/**
 * A {@linkcode ClientConn} that keeps what it is given, for unit tests of sessions and the
 * shard core without sockets.
 *
 * @module
 */

import type { ClientConn, TransportName } from "../transport/conn.ts";

/** A connection that records what a session sends and how it is closed. */
export class FakeConn implements ClientConn {
  readonly transport: TransportName;
  readonly upstream: boolean;
  /** Every message sent, in order, as JSON text. */
  readonly sent: string[] = [];
  /** Set by `close`: whether it was graceful, and the reason given. */
  closedGracefully: boolean | undefined;
  closeReason: string | undefined;
  paused = false;
  /** What `bufferedBytes` answers. */
  buffered = 0;

  constructor(transport: TransportName = "tcp") {
    this.transport = transport;
    this.upstream = transport === "tcp" || transport === "ws";
  }

  send(message: string): void {
    if (this.closedGracefully !== undefined) throw new Error(`sent after close: ${message}`);
    this.sent.push(message);
  }

  bufferedBytes(): number {
    return this.buffered;
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
  }

  close(graceful: boolean, reason?: string): void {
    if (this.closedGracefully !== undefined) return;
    this.closedGracefully = graceful;
    this.closeReason = reason;
  }

  /** The messages sent so far, parsed, and forgotten. */
  take(): Record<string, unknown>[] {
    return this.sent.splice(0).map((text) => JSON.parse(text));
  }
}
