/**
 * The raw-TCP transport of PROTOCOL.md §1–§2: `GET /connect` answered with the exact `200`
 * head, then the duplex chunk stream on the same socket.
 *
 * @module
 */

import { connectedHead } from "../../protocol/handshake.ts";
import type { Transport } from "../conn.ts";
import { ChunkedConn } from "./chunked_conn.ts";

/** Raw TCP: mobile clients and `curl -L`. */
export const tcp: Transport = {
  name: "tcp",
  method: "GET",
  path: "/connect",
  binary: true,
  open(socket, admitted, context) {
    const binary = admitted.codec.name === "msgpack";
    socket.write(connectedHead(binary ? "application/msgpack" : undefined));
    return new ChunkedConn(socket, context.counters, context, binary);
  },
};
