/**
 * The server-sent events transport of PROTOCOL.md §6: `GET /sse?uid=&password=…[&since=S]`,
 * answered `200 text/event-stream` by the uid's owner; `EventSource` follows a non-owner's
 * `303`, and a reconnect's `Last-Event-ID` is where it resumes.
 *
 * @module
 */

import { eventStreamHead } from "../../protocol/sse.ts";
import type { Transport } from "../conn.ts";
import { SseConn } from "./sse_conn.ts";

/** Server-sent events: browsers' `EventSource`, or any HTTP client that reads a stream. */
export const sse: Transport = {
  name: "sse",
  method: "GET",
  path: "/sse",
  open(socket, admitted, context) {
    socket.write(eventStreamHead(admitted.cors));
    return new SseConn(socket, context.counters, context.maxOutputBytes);
  },
};
