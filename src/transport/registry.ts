/**
 * The transports the client ports serve. A new transport is a folder beside `tcp/` and a line
 * here; nothing else changes.
 *
 * @module
 */

import type { Transport } from "./conn.ts";
import { tcp } from "./tcp/transport.ts";

/** Every transport, in the order a request is matched against them. */
export const TRANSPORTS: readonly Transport[] = [tcp];
