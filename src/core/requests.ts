/**
 * The requests and results that cross modules, threads and nodes, and the checks that every
 * one of them passes when it arrives from outside the process (another node's
 * `/cluster/ops`, the cluster bus): node-to-node input is input, held to the rules `/pub`
 * holds a back end to.
 *
 * @module
 */

import { badRequest, type ErrorAnswer, ServiceError } from "./errors.ts";
import type { HandedUser, StoredMessage } from "./messages.ts";
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

/** A receipt of no members (to add others' to, or for an entry whose copies were stored). */
export function noReceipt(): ChannelReceipt {
  return { recipients: 0, online: 0 };
}

/** Adds `receipt`'s counts to `total` (the receipts of several shards, or requests). */
export function addReceipt(total: ChannelReceipt, receipt: ChannelReceipt): void {
  total.recipients += receipt.recipients;
  total.online += receipt.online;
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
  | { op: "offline"; uid: string; device: string; limit: number }
  /**
   * The state of uids of one shard (`uid`, the routing key, is one of them) that a map change
   * moved there, handed off by their old owner (docs/cluster.md); answers the uids that shard
   * kept its own state of, because it served them throughout (the handed copy is stale).
   */
  | { op: "import"; uid: string; users: HandedUser[] };

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
    case "import": {
      const { users } = fields;
      if (!Array.isArray(users) || users.length === 0 || users.length > BATCH_MAX_ITEMS) {
        throw badRequest(`invalid users (1 to ${BATCH_MAX_ITEMS})`);
      }
      return {
        op: "import",
        uid: nameOf(fields.uid, "uid"),
        users: users.map((user) => checkHandedUser(user, maxBody)),
      };
    }
    default:
      throw badRequest(
        "unknown op (publish, publish_many, subscribe, unsubscribe, offline or import)",
      );
  }
}

/** A count, seq or time: a safe integer from 0. */
function countOf(value: unknown, field: string): number {
  if (!Number.isSafeInteger(value) || (value as number) < 0) throw badRequest(`invalid ${field}`);
  return value as number;
}

/** An array field, or a 400 naming it. */
function arrayOf(value: unknown, field: string): unknown[] {
  if (!Array.isArray(value)) throw badRequest(`invalid ${field}`);
  return value;
}

/**
 * Checks a {@linkcode HandedUser} from another node: names valid, no cursor past `lastSeq`,
 * messages of this uid in strictly increasing `s` up to `lastSeq`, each as `/pub` would take
 * it, no device or channel twice. The 400 names the uid and the rule.
 */
function checkHandedUser(value: unknown, maxBodyText: number): HandedUser {
  const fields = objectOf(value, "user");
  const uid = nameOf(fields.uid, "uid");
  const wrong = (what: string) => badRequest(`user ${uid}: ${what}`);
  const lastSeq = countOf(fields.lastSeq, "lastSeq");
  const devices = arrayOf(fields.devices, "devices").map((item) => {
    const device = objectOf(item, "device");
    const id = device.device === "" ? "" : nameOf(device.device, "device");
    const lastAck = countOf(device.lastAck, "lastAck");
    if (lastAck > lastSeq) throw wrong(`device ${id || '""'} acked past lastSeq`);
    return { device: id, lastAck, seenAt: countOf(device.seenAt, "seenAt") };
  });
  if (new Set(devices.map((d) => d.device)).size !== devices.length) throw wrong("a device twice");
  let previous = 0;
  const messages = arrayOf(fields.messages, "messages").map((item): StoredMessage => {
    const message = objectOf(item, "message");
    if (message.uid !== uid) throw wrong("a message of another uid");
    const seq = countOf(message.seq, "seq");
    if (seq <= previous || seq > lastSeq) throw wrong("seq not increasing up to lastSeq");
    previous = seq;
    const { type } = message;
    if (type !== 3 && type !== 4) throw wrong("invalid type");
    const stored: StoredMessage = {
      uid,
      seq,
      type,
      from: nameOf(message.from, "from"),
      body: jsonText(message.body, maxBodyText),
      expiresAt: countOf(message.expiresAt, "expiresAt"),
    };
    if (type === 4) stored.channel = nameOf(message.channel, "channel");
    else if (message.channel !== undefined) throw wrong("a channel on a type 3 message");
    return stored;
  });
  const channels = arrayOf(fields.channels, "channels").map((c) => nameOf(c, "channel"));
  if (new Set(channels).size !== channels.length) throw wrong("a channel twice");
  return { uid, lastSeq, devices, messages, channels };
}
