/**
 * The raw-TCP transport's connection: after the `200` head the socket is a duplex stream of
 * HTTP chunks, each a whole message (PROTOCOL.md §2), decoded by the project's own chunk codec.
 * Every JSON body the server sends ends with a newline, counted in its size, so that
 * `curl -N` shows one message a line; a MessagePack body is the map alone.
 *
 * @module
 */

import type { Socket } from "node:net";
import { ChunkDecoder, ChunkError, textChunk } from "../../protocol/chunk.ts";
import type { ShardCounters } from "../../stats/counters.ts";
import { SocketConn } from "../socket_conn.ts";

const LAST_CHUNK = "0\r\n\r\n";

/** A client on the raw chunk stream. */
export class ChunkedConn extends SocketConn {
  readonly transport = "tcp" as const;
  readonly upstream = true;
  #decoder: ChunkDecoder;
  /** What ends a body: a newline for JSON, nothing for MessagePack. */
  #end: string;

  constructor(
    socket: Socket,
    counters: ShardCounters,
    limits: { maxFrameBytes: number; maxOutputBytes: number },
    binary: boolean,
  ) {
    super(socket, counters, limits.maxOutputBytes, binary);
    this.#decoder = new ChunkDecoder(limits.maxFrameBytes);
    this.#end = binary ? "" : "\n";
  }

  receive(bytes: Uint8Array): void {
    const receiver = this.receiver;
    if (!receiver) return;
    this.counters.total_recv_bytes += bytes.length;
    try {
      if (!this.#decoder.push(bytes, (body) => receiver.receive(body))) receiver.end();
    } catch (error) {
      if (!(error instanceof ChunkError)) throw error;
      receiver.fail(error.reason);
    }
  }

  protected frame(message: string, bytes: number): string {
    return textChunk(message + this.#end, bytes + this.#end.length);
  }

  protected lastWords(): string {
    return LAST_CHUNK;
  }
}
