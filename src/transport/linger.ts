/**
 * Closing a client socket from the server's side. `socket.end()` only half-closes: the
 * descriptor stays until the client closes its side too, and a client that never does (a
 * refused one, one redirected, one the server closed for a bad frame or silence) would hold
 * it forever — a thousand such clients hold a thousand descriptors. So an ended socket
 * lingers for {@linkcode LINGER_MS}, reading and discarding whatever still arrives (closing
 * with unread input would reset the connection and could destroy the answer before the client
 * reads it), and is then destroyed.
 *
 * @module
 */

import type { Socket } from "node:net";
import { Deadlines } from "./deadlines.ts";

/** How long an ended socket waits for the client to close before it is destroyed. */
export const LINGER_MS = 2_000;

const lingering = new Deadlines<Socket>(250, (socket) => socket.destroy());

/** Writes `last` (if any), half-closes, and destroys the socket after the linger. */
export function closeSoon(socket: Socket, last?: string | Uint8Array): void {
  if (socket.destroyed) return;
  if (last === undefined) socket.end();
  else socket.end(last);
  lingering.add(socket, Date.now() + LINGER_MS);
}

/** The socket closed: it no longer lingers. */
export function closed(socket: Socket): void {
  lingering.delete(socket);
}
