/**
 * A cluster bus entry as it crosses from the bus (main thread) to the shards: its stream id
 * and its channel messages. The id is what a shard's bus mark records (docs/cluster.md).
 *
 * Stream ids are `<ms>-<seq>`, totally ordered within one stream: by `ms`, then by `seq`, as
 * integers. As strings they are not ("9-0" > "10-0"), hence {@linkcode compareEntryIds}.
 *
 * @module
 */

import type { ChannelRequest } from "./requests.ts";

/** One bus entry for a shard. */
export interface BusEntry {
  /** Its stream id, `<ms>-<seq>`. */
  id: string;
  requests: ChannelRequest[];
}

/**
 * Where a node stood on the bus when it applied map version `version`: up to which entry each
 * of its shards (by map id) had stored its members' copies (null: none yet), and the ids of
 * the shards of the map it applied (which uids it let go then; absent from a node that did
 * not say). A shard taking over its uids replays what is after them (docs/cluster.md).
 */
export interface BusPosition {
  version: number;
  marks: Record<string, string | null>;
  shards?: string[];
}

const ENTRY_ID = /^(\d{1,16})-(\d{1,16})$/;

/** The two integers of a stream id; throws on anything else (a mark is never guessed at). */
function partsOf(id: string): [number, number] {
  const match = ENTRY_ID.exec(id);
  const parts: [number, number] | null = match ? [Number(match[1]), Number(match[2])] : null;
  if (!parts || !parts.every(Number.isSafeInteger)) throw new Error(`not a stream id: ${id}`);
  return parts;
}

/** True when `id` is a stream id this module can compare. */
export function isEntryId(id: string): boolean {
  try {
    partsOf(id);
    return true;
  } catch {
    return false;
  }
}

/** Negative, zero or positive as stream id `a` is before, equal to or after `b`. */
export function compareEntryIds(a: string, b: string): number {
  const [aMs, aSeq] = partsOf(a);
  const [bMs, bSeq] = partsOf(b);
  return aMs !== bMs ? aMs - bMs : aSeq - bSeq;
}

/**
 * The latest id before `id`, for a bound that excludes `id` itself ("everything before this
 * entry"). Below `<ms>-0` it is `<ms - 1>` with the largest seq this module compares, which no
 * stream reaches within one millisecond.
 */
export function entryIdBefore(id: string): string {
  const [ms, seq] = partsOf(id);
  if (seq > 0) return `${ms}-${seq - 1}`;
  if (ms === 0) return "0-0";
  return `${ms - 1}-${Number.MAX_SAFE_INTEGER}`;
}

/** The later of two stream ids. */
export function laterEntryId(a: string, b: string): string {
  return compareEntryIds(a, b) >= 0 ? a : b;
}
