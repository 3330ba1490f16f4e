/**
 * The requests and results that cross modules, threads and nodes, and the checks that every
 * one of them passes when it arrives from outside the process (another node's
 * `/cluster/ops`, the cluster bus): node-to-node input is input, held to the rules `/pub`
 * holds a back end to.
 *
 * @module
 */

import { badRequest, type ErrorAnswer, ServiceError } from "./errors.ts";
import { isValidName } from "./names.ts";

/** A message for one uid, as the admin API or another shard hands it over. */
export interface UnicastRequest {
  to: string;
  from: string;
  /** The payload as JSON text: one JSON value, on one line. */
  body: string;
  ttlSec: number;
  volatile: boolean;
}

/** A message for every subscriber of a channel. */
export interface ChannelRequest {
  channel: string;
  from: string;
  body: string;
  ttlSec: number;
  volatile: boolean;
}

/**
 * What a stored message's publisher may be told (PROTOCOL.md §7, receipts): its `s` (0 when
 * volatile), and how many of the uid's devices were connected when it was delivered.
 */
export interface Receipt {
  s: number;
  online: number;
}

/** A channel message's receipt: the members given a copy, and how many of them were online. */
export interface ChannelReceipt {
  recipients: number;
  online: number;
}

/** One request's outcome in a batch: its receipt, or why it failed. */
export type PubResult = Receipt | ErrorAnswer;

/** The largest `ttl`, in seconds (a little over 31 years). */
export const MAX_TTL_SEC = 999_999_999;

/** The longest JSON text a payload of `maxBodyBytes` can become (a control byte is `\u0000`). */
export function maxBodyText(maxBodyBytes: number): number {
  return maxBodyBytes * 6 + 2;
}

/**
 * Checks a {@linkcode UnicastRequest} that arrived from outside the process; throws a
 * {@linkcode ServiceError} (400, or 413 for a body text over `maxBodyBytes`) naming the rule.
 */
export function checkUnicast(value: unknown, maxBodyBytes: number): UnicastRequest {
  const fields = objectOf(value, "request");
  return {
    to: nameOf(fields.to, "to"),
    ...messageFields(fields, maxBodyBytes),
  };
}

/** Checks a {@linkcode ChannelRequest} that arrived from outside the process. */
export function checkChannel(value: unknown, maxBodyBytes: number): ChannelRequest {
  const fields = objectOf(value, "request");
  return {
    channel: nameOf(fields.channel, "channel"),
    ...messageFields(fields, maxBodyBytes),
  };
}

/** A field that must hold a uid or channel id. */
export function nameOf(value: unknown, field: string): string {
  if (!isValidName(value)) {
    throw badRequest(value === undefined ? `missing ${field}` : `invalid ${field}`);
  }
  return value;
}

/** The value as an object, or a 400 naming what it should have been. */
export function objectOf(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw badRequest(`${what} is not a json object`);
  }
  return value as Record<string, unknown>;
}

function messageFields(
  fields: Record<string, unknown>,
  maxBodyBytes: number,
): Omit<UnicastRequest, "to"> {
  const { body, ttlSec, volatile } = fields;
  if (!Number.isSafeInteger(ttlSec) || (ttlSec as number) < 0 || (ttlSec as number) > MAX_TTL_SEC) {
    throw badRequest("invalid ttlSec");
  }
  if (typeof volatile !== "boolean") throw badRequest("invalid volatile");
  return {
    from: nameOf(fields.from, "from"),
    body: jsonText(body, maxBodyBytes),
    ttlSec: ttlSec as number,
    volatile,
  };
}

const encoder = new TextEncoder();

/** A body that will be spliced into frames as `"b":<body>`: one JSON value on one line. */
function jsonText(body: unknown, maxBodyBytes: number): string {
  if (typeof body !== "string") throw badRequest("invalid body");
  // A raw line break can only be white space in JSON; a frame must stay one line.
  if (/[\r\n]/.test(body)) throw badRequest("body is not one json value on one line");
  try {
    JSON.parse(body);
  } catch {
    throw badRequest("body is not one json value on one line");
  }
  if (body.length > maxBodyBytes / 3 && encoder.encode(body).length > maxBodyBytes) {
    throw new ServiceError(`body over ${maxBodyBytes} bytes`, 413);
  }
  return body;
}

/** The most messages one batch may carry (a `/pub/batch`, a forwarded shard group). */
export const BATCH_MAX_ITEMS = 10_000;

/**
 * An operation for the owner of one uid: what the admin API and a shard's clients hand to
 * the shard that owns a uid, on this node or (over `/cluster/ops`) on another.
 */
export type OwnerOp =
  | { op: "publish"; request: UnicastRequest }
  /**
   * Many messages for uids of one shard (`uid`, the routing key, is one of them), stored in
   * one journal batch; answers a `PubResult` per request, in order.
   */
  | { op: "publish_many"; uid: string; requests: UnicastRequest[] }
  | { op: "subscribe" | "unsubscribe"; uid: string; channel: string }
  /** The offline messages of the uid's `device`, in the `/msg` form. */
  | { op: "offline"; uid: string; device: string; limit: number };

/** The uid an {@linkcode OwnerOp} is for: where it is routed. */
export function ownerOf(op: OwnerOp): string {
  return op.op === "publish" ? op.request.to : op.uid;
}

/**
 * Checks an {@linkcode OwnerOp} that arrived from another node; throws a 400 naming what is
 * wrong. `maxBodyBytes` and `msgLimit` are this node's `--max_frame_bytes` and `--msg_limit`.
 */
export function checkOwnerOp(value: unknown, maxBodyBytes: number, msgLimit: number): OwnerOp {
  const fields = objectOf(value, "op");
  const maxBody = maxBodyText(maxBodyBytes);
  switch (fields.op) {
    case "publish":
      return { op: "publish", request: checkUnicast(fields.request, maxBody) };
    case "publish_many": {
      const { requests } = fields;
      if (!Array.isArray(requests) || requests.length === 0 || requests.length > BATCH_MAX_ITEMS) {
        throw badRequest(`invalid requests (1 to ${BATCH_MAX_ITEMS})`);
      }
      return {
        op: "publish_many",
        uid: nameOf(fields.uid, "uid"),
        requests: requests.map((request) => checkUnicast(request, maxBody)),
      };
    }
    case "subscribe":
    case "unsubscribe":
      return {
        op: fields.op,
        uid: nameOf(fields.uid, "uid"),
        channel: nameOf(fields.channel, "channel"),
      };
    case "offline": {
      const { limit, device } = fields;
      if (!Number.isSafeInteger(limit) || (limit as number) < 1 || (limit as number) > msgLimit) {
        throw badRequest(`invalid limit (1 to ${msgLimit})`);
      }
      return {
        op: "offline",
        uid: nameOf(fields.uid, "uid"),
        // A node that does not name a device means the default one.
        device: device === undefined || device === "" ? "" : nameOf(device, "device"),
        limit: limit as number,
      };
    }
    default:
      throw badRequest("unknown op (publish, publish_many, subscribe, unsubscribe or offline)");
  }
}
