/**
 * The client-facing TCP server, front door and shards alike: read and check the handshake,
 * then refuse (400/404/405, or 503 while draining), redirect (303 to the owning shard), or
 * admit (200, for a shard that owns the uid).
 *
 * @module
 */

import net from "node:net";
import { connectLocation, redirectHead, refusal } from "../protocol/handshake.ts";
import type { ShardAddress } from "../routing/hash.ts";
import type { ShardCounters } from "../stats/counters.ts";
import { type Admitted, type HandshakeOptions, reachedHost, readHandshake } from "./handshake.ts";

/** What a connect server needs. */
export interface ConnectServerOptions {
  handshake: HandshakeOptions;
  counters: ShardCounters;
  /** Refuses new clients with 503 while true. */
  draining(): boolean;
  /** Where `uid` must connect, or null when this server owns it. */
  redirectFor(uid: string): ShardAddress | null;
  /** Takes over an admitted client that this server owns. */
  admit(socket: net.Socket, admitted: Admitted): void;
}

/** Creates the server (not yet listening). */
export function createConnectServer(options: ConnectServerOptions): net.Server {
  const { handshake, counters } = options;
  return net.createServer({ noDelay: true }, async (socket) => {
    socket.on("error", () => {/* a reset mid-handshake: nothing to clean up */});
    const result = await readHandshake(socket, handshake);
    if (!result) return;
    counters.connect_request_number++;
    if (!result.admitted) {
      counters[result.counter]++;
      socket.end(refusal(result.status, result.reason));
    } else if (options.draining()) {
      socket.end(refusal(503, "draining"));
    } else {
      const owner = options.redirectFor(result.uid);
      if (owner) {
        counters.redirect_number++;
        const host = owner.host || reachedHost(socket);
        socket.end(redirectHead(connectLocation(host, owner.port, result.query)));
      } else {
        options.admit(socket, result);
      }
    }
  });
}

/** Starts listening; resolves with the bound port. */
export function listen(server: net.Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host, port, backlog: 4096 }, () => {
      server.off("error", reject);
      resolve((server.address() as net.AddressInfo).port);
    });
  });
}
