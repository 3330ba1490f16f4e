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
  /** Every message sent, in order, as JSON text. */
  readonly sent: string[] = [];
  /** Set by `close`: whether it was graceful. */
  closedGracefully: boolean | undefined;
  paused = false;
  /** What `bufferedBytes` answers. */
  buffered = 0;

  constructor(transport: TransportName = "tcp") {
    this.transport = transport;
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

  close(graceful: boolean): void {
    this.closedGracefully ??= graceful;
  }

  /** The messages sent so far, parsed, and forgotten. */
  take(): Record<string, unknown>[] {
    return this.sent.splice(0).map((text) => JSON.parse(text));
  }
}
