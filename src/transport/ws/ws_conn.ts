/**
 * The WebSocket transport's connection: after the `101`, the socket carries RFC 6455 frames,
 * each message one text frame of one JSON object (or, with `codec=msgpack`, one binary frame
 * of one MessagePack map), decoded by the project's own codec
 * (`protocol/ws.ts`). Pings are answered with pongs and count as a sign of life; a close
 * frame is echoed; a frame that breaks the protocol closes with its code (1009 past
 * `--max_frame_bytes`), one the session refuses with 1008 and the session's reason.
 *
 * The connection is its decoder's sink, so an idle WebSocket is this object and the decoder's
 * few numbers.
 *
 * @module
 */

import type { Socket } from "node:net";
import {
  binaryFrame,
  CloseCode,
  closeFrame,
  pongFrame,
  textFrame,
  WsDecoder,
  WsError,
  type WsSink,
} from "../../protocol/ws.ts";
import type { ShardCounters } from "../../stats/counters.ts";
import { SocketConn } from "../socket_conn.ts";

/** A client on a WebSocket. */
export class WsConn extends SocketConn implements WsSink {
  readonly transport = "ws" as const;
  readonly upstream = true;
  #decoder: WsDecoder;
  /** The close code to end with when it is not the session's plain end. */
  #closeCode = 0;
  /** Messages are binary frames (`codec=msgpack`). */
  #binary: boolean;

  constructor(
    socket: Socket,
    counters: ShardCounters,
    limits: { maxFrameBytes: number; maxOutputBytes: number },
    binary: boolean,
  ) {
    super(socket, counters, limits.maxOutputBytes, true);
    this.#binary = binary;
    this.#decoder = new WsDecoder(this, limits.maxFrameBytes, binary);
  }

  receive(bytes: Uint8Array): void {
    const receiver = this.receiver;
    if (!receiver || this.#decoder.closed) return;
    this.counters.total_recv_bytes += bytes.length;
    try {
      this.#decoder.push(bytes);
    } catch (error) {
      if (!(error instanceof WsError)) throw error;
      this.#closeCode = error.code;
      receiver.fail(error.reason);
    }
  }

  message(payload: Uint8Array): void {
    this.receiver!.receive(payload);
  }

  ping(payload: Uint8Array): void {
    this.receiver!.alive();
    const pong = pongFrame(payload);
    this.write(pong, pong.length);
  }

  pong(): void {
    this.receiver!.alive();
  }

  closing(code: number): void {
    // Echoed, as RFC 6455 §5.5.1 has it; a close without a code is answered 1000.
    this.#closeCode = code === CloseCode.NoStatus ? CloseCode.Normal : code;
    this.receiver!.end();
  }

  protected frame(message: string, bytes: number): string {
    return this.#binary ? binaryFrame(message) : textFrame(message, bytes);
  }

  protected lastWords(reason?: string): string {
    if (this.#closeCode !== 0) return closeFrame(this.#closeCode, reason);
    if (reason !== undefined) return closeFrame(CloseCode.PolicyViolation, reason);
    // The server ends a session without an error only when it shuts down.
    return closeFrame(CloseCode.GoingAway, "draining");
  }
}
