/**
 * The MessagePack form of the messages (`codec=msgpack`, PROTOCOL.md §7): every body a map
 * with the same keys as the JSON form, through npm `msgpackr`, chosen by measurement over
 * `@msgpack/msgpack` (whose decoder pre-allocates an array per array header without checking
 * the bytes left: a 64 KB frame of nested headers aborted the process out of memory, and its
 * encoder silently wraps integers past 64 bits).
 *
 * A payload is stored as JSON text whatever codec carried it, so a message sent in one codec
 * is delivered in the other. Going in, a map's `b` becomes its exact JSON text: 64-bit
 * integers arrive as BigInt and are written out digit for digit; what JSON cannot hold (bin,
 * ext, non-string keys, NaN) is refused with a reason. Going out, the stored text is parsed,
 * with integers past 32 bits taken as BigInt so that ids keep every digit and stay integers.
 * Measured per message: 0.3 µs to read a y=3 with a string body (JSON: 1.0), 0.1 µs an ack.
 *
 * @module
 */

import { addExtension, Packr, Unpackr } from "msgpackr";
import type { Delivery } from "../core/messages.ts";
import { isValidName } from "../core/names.ts";
import { type ClientMessage, MessageError } from "./message.ts";

/** An ext value: MessagePack's own extension types have no JSON form. */
class Ext {
  constructor(readonly type: number) {}
}

// msgpackr decodes some ext types into JS objects by default (dates, sets, errors, cycles);
// every one of them becomes a marker the walk refuses. The table is the process's; nothing
// else here uses msgpackr.
for (let type = 0; type < 256; type++) {
  addExtension({ type, unpack: () => new Ext(type > 127 ? type - 256 : type) } as never);
}

// Maps stay maps (exact string keys, order kept, `__proto__` kept), 64-bit integers BigInt.
const unpackr = new Unpackr(
  { useRecords: false, mapsAsObjects: false, int64AsType: "auto", structuredClone: false } as never,
);
// Plain maps any MessagePack client reads: no records, fixmaps for small maps.
const packr = new Packr({
  useRecords: false,
  variableMapSize: true,
  largeBigIntToFloat: true,
  useToJSON: false,
});

/** A payload a client nests deeper than this is refused (the walk recurses once a level). */
const MAX_BODY_DEPTH = 1_000;

const U64 = 1n << 64n;
const I64 = -(1n << 63n);

/** The exact JSON text of a decoded value; throws the reason (a string) when it has none. */
function jsonText(value: unknown, depth: number): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number") {
    if (Number.isFinite(value)) return String(value);
    throw "non-finite number";
  }
  if (typeof value === "bigint") {
    if (value < U64 && value >= I64) return value.toString();
    throw "integer beyond 64 bits";
  }
  if (typeof value === "boolean" || value === null) return String(value);
  if (++depth > MAX_BODY_DEPTH) throw "nested too deep";
  if (Array.isArray(value)) return `[${value.map((item) => jsonText(item, depth)).join(",")}]`;
  if (value instanceof Map) {
    const members: string[] = [];
    for (const [key, item] of value) {
      if (typeof key !== "string") throw `map key of type ${typeof key}`;
      members.push(`${JSON.stringify(key)}:${jsonText(item, depth)}`);
    }
    return `{${members.join(",")}}`;
  }
  // A plain object only comes from msgpackr's record extension: refused as well.
  throw value instanceof Ext
    ? `ext type ${value.type}`
    : value instanceof Uint8Array
    ? "bin"
    : "no JSON form";
}

/** Parses and validates one client frame in MessagePack. Throws {@linkcode MessageError}. */
export function parseMsgpackMessage(bytes: Uint8Array): ClientMessage {
  let frame: unknown;
  try {
    frame = unpackr.unpack(bytes);
  } catch (error) {
    throw new MessageError(`bad msgpack: ${(error as Error).message}`, true);
  }
  if (!(frame instanceof Map)) throw new MessageError("frame is not a msgpack map", true);
  const name = (key: "c" | "t"): string => {
    const value = frame.get(key);
    if (isValidName(value)) return value;
    throw new MessageError(`invalid ${key}`, false);
  };
  const body = (): string => {
    if (!frame.has("b")) throw new MessageError("missing b", false);
    try {
      return jsonText(frame.get("b"), 0);
    } catch (reason) {
      if (typeof reason !== "string") throw reason;
      throw new MessageError(`invalid b: ${reason}`, false);
    }
  };
  const y = frame.get("y");
  switch (y) {
    case 0:
      return { y: 0 };
    case 1:
    case 2:
      return { y, c: name("c") };
    case 3:
      return { y: 3, t: name("t"), b: body() };
    case 4:
      return { y: 4, c: name("c"), b: body() };
    case 5: {
      const s = frame.get("s");
      if (Number.isSafeInteger(s) && (s as number) >= 1) return { y: 5, s: s as number };
      throw new MessageError("invalid s", false);
    }
    default:
      throw new MessageError("unknown type", true);
  }
}

/** Integer literals past 32 bits as exact BigInt (so they stay integers, digit for digit). */
function exactIntegers(_key: string, value: unknown, context?: { source?: string }): unknown {
  if (typeof value !== "number" || (value <= 0xffffffff && value >= -0x80000000)) return value;
  const source = context?.source ?? "";
  if (!/^-?\d+$/.test(source)) return value;
  const exact = BigInt(source);
  return exact < U64 && exact >= I64 ? exact : value;
}

/** The last payload parsed: a channel message reaches every member with the same text. */
let lastText: string | undefined;
let lastValue: unknown;

/**
 * A stored payload's value; the reviver's cost (8× a plain parse, measured) is paid only where
 * a long integer may be.
 */
function bodyValue(text: string): unknown {
  if (text === lastText) return lastValue;
  lastValue = /\d{10}/.test(text) ? JSON.parse(text, exactIntegers as never) : JSON.parse(text);
  lastText = text;
  return lastValue;
}

/**
 * The MessagePack form of a delivery: `{y, f, t, (c), b, (s)}`. The bytes are msgpackr's
 * buffer, valid until its next `pack`: the connection copies them at once. A payload nested
 * deeper than the encoder goes (about 1,400 levels, which a JSON client may send) travels as
 * its JSON text, a string: delivered all the same.
 */
export function encodeMsgpackDelivery(message: Delivery): Uint8Array {
  const fields: Record<string, unknown> = message.type === 4
    ? { y: 4, f: message.from, t: message.uid, c: message.channel, b: null }
    : { y: 3, f: message.from, t: message.uid, b: null };
  // Past 32 bits (an accepted loss's floor, docs/cluster.md) as a 64-bit integer, not a float.
  if (message.seq > 0) fields.s = message.seq > 0xffffffff ? BigInt(message.seq) : message.seq;
  try {
    fields.b = bodyValue(message.body);
    return packr.pack(fields);
  } catch (error) {
    if (!(error instanceof RangeError)) throw error;
    fields.b = message.body;
    return packr.pack(fields);
  }
}

/** Any other server message (an error, the heartbeat) in MessagePack. */
export function encodeMsgpack(fields: Record<string, unknown>): Uint8Array {
  return packr.pack(fields);
}
