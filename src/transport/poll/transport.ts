/**
 * The long-poll transport of PROTOCOL.md §6 (comet, as BOSH): `GET /poll?uid=&password=…&
 * since=S[&wait=SEC]`. The owner acknowledges every `s ≤ S`, then answers at once when there
 * are messages after it, or holds the request up to `wait` seconds (default 25, at most 60)
 * and answers with what arrives, or `[]`. A non-owner answers `303`.
 *
 * @module
 */

import type { Transport } from "../conn.ts";
import { PollConn } from "./poll_conn.ts";

/** A poll's `wait` when it gives none, and the longest it may ask for, in seconds. */
export const DEFAULT_WAIT_SEC = 25;
export const MAX_WAIT_SEC = 60;

/** The `wait` of a poll, in seconds (at most {@linkcode MAX_WAIT_SEC}); null if malformed. */
export function waitOf(params: ReadonlyMap<string, string>): number | null {
  const wait = params.get("wait");
  if (wait === undefined || wait === "") return DEFAULT_WAIT_SEC;
  return /^\d{1,6}$/.test(wait) ? Math.min(Number(wait), MAX_WAIT_SEC) : null;
}

/** Long-poll: browsers and networks where nothing but plain requests gets through. */
export const poll: Transport = {
  name: "poll",
  method: "GET",
  path: "/poll",
  check(head) {
    return waitOf(head.params) === null ? { status: 400, reason: "invalid wait" } : null;
  },
  open(socket, admitted, context) {
    const waitMs = waitOf(admitted.head.params)! * 1000;
    return new PollConn(socket, admitted, { ...context, waitMs });
  },
};
