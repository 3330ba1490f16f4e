/**
 * Server-sent events framing (the WHATWG HTML `text/event-stream` format) for PROTOCOL.md §6:
 * each message one event whose `data:` is its JSON text, with `id: <s>` when it is a stored
 * delivery, so that a browser's `EventSource` reconnects with `Last-Event-ID: <s>`. JSON texts
 * have no line break, so a message is always one `data:` line.
 *
 * @module
 */

import { httpDate } from "./handshake.ts";

/**
 * The `200` that opens an event stream. Its body ends with the connection (no length, no
 * chunks); `no-store` keeps caches out, `X-Accel-Buffering: no` a buffering proxy (nginx).
 * `headers` are extra header lines (CORS).
 */
export function eventStreamHead(headers = "", date = httpDate()): string {
  return "HTTP/1.1 200 OK\r\n" +
    "Content-Type: text/event-stream; charset=utf-8\r\n" +
    "Cache-Control: no-store\r\n" +
    "Connection: close\r\n" +
    "X-Accel-Buffering: no\r\n" +
    headers +
    `Date: ${date}\r\n` +
    "\r\n";
}

/** One message as an event: `id: <s>` (a stored delivery's) and `data: <json>`. */
export function event(message: string, seq: number): string {
  return seq > 0 ? `id: ${seq}\ndata: ${message}\n\n` : `data: ${message}\n\n`;
}

/** A comment: no event, only traffic, so that proxies and the client see the stream is alive. */
export const KEEPALIVE_COMMENT = ":\n\n";
