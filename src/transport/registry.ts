/**
 * The transports the client ports serve. A new transport is a folder beside `tcp/` and a line
 * here; nothing else changes.
 *
 * @module
 */

import type { Transport } from "./conn.ts";
import { poll } from "./poll/transport.ts";
import { sse } from "./sse/transport.ts";
import { tcp } from "./tcp/transport.ts";
import { ws } from "./ws/transport.ts";

/**
 * Every transport, in the order a request is matched against them: a WebSocket upgrade and a
 * raw client share `GET /connect`, told apart by the WebSocket's `Upgrade` header.
 */
export const TRANSPORTS: readonly Transport[] = [ws, tcp, sse, poll];
