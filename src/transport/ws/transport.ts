/**
 * The WebSocket transport of PROTOCOL.md §6: `GET /connect` with `Upgrade: websocket` on the
 * same client ports as raw TCP, answered `101` by the uid's owner (a non-owner's `303` and any
 * refusal come before the upgrade, as for raw clients).
 *
 * @module
 */

import { upgradedHead, upgradeProblem, WS_VERSION } from "../../protocol/ws.ts";
import type { Transport } from "../conn.ts";
import { WsConn } from "./ws_conn.ts";

/** WebSocket: browsers, and any client with a WebSocket library. */
export const ws: Transport = {
  name: "ws",
  method: "GET",
  path: "/connect",
  upgrade: "websocket",
  binary: true,
  check(head) {
    const problem = upgradeProblem(head.headers);
    if (!problem) return null;
    // RFC 6455 §4.4: a version we do not speak is answered with the one we do.
    const headers = problem.status === 426 ? `Sec-WebSocket-Version: ${WS_VERSION}\r\n` : "";
    return { ...problem, headers };
  },
  open(socket, admitted, context) {
    socket.write(upgradedHead(admitted.head.headers.get("sec-websocket-key")!), "latin1");
    const binary = admitted.codec.name === "msgpack";
    return new WsConn(socket, context.counters, context, binary);
  },
};
