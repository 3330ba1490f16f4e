/**
 * The two forms a client's messages take (`codec=` on connect, PROTOCOL.md §7): JSON texts,
 * the default, or MessagePack maps with the same keys. A session reads and writes through
 * one; the transport frames whatever it produces.
 *
 * @module
 */

import type { Delivery } from "../core/messages.ts";
import {
  type ClientMessage,
  encodeDelivery,
  encodeError,
  HEARTBEAT,
  parseClientMessage,
} from "./message.ts";
import { encodeMsgpack, encodeMsgpackDelivery, parseMsgpackMessage } from "./msgpack.ts";

/** A codec's name, as `codec=` gives it. */
export type CodecName = "json" | "msgpack";

/** How a session's messages are read and written. */
export interface MessageCodec {
  readonly name: CodecName;
  /** Parses and validates one client message. Throws `MessageError`. */
  parse(body: Uint8Array): ClientMessage;
  /** A delivery: a JSON text, or MessagePack bytes. */
  delivery(message: Delivery): string | Uint8Array;
  /** `{"error": reason}` in this codec. */
  error(reason: string): string | Uint8Array;
  /** The heartbeat's answer. */
  readonly heartbeat: string | Uint8Array;
}

/** JSON texts (PROTOCOL.md §2). */
export const JSON_CODEC: MessageCodec = {
  name: "json",
  parse: parseClientMessage,
  delivery: encodeDelivery,
  error: encodeError,
  heartbeat: HEARTBEAT,
};

/** MessagePack maps (PROTOCOL.md §7). */
export const MSGPACK_CODEC: MessageCodec = {
  name: "msgpack",
  parse: parseMsgpackMessage,
  delivery: encodeMsgpackDelivery,
  error: (reason) => encodeMsgpack({ error: reason }),
  // Its own copy: msgpackr reuses the buffer it packs into.
  heartbeat: encodeMsgpack({ y: 0 }).slice(),
};

/** The codec `codec=` names ("" is JSON). */
export function codecNamed(name: string): MessageCodec | undefined {
  if (name === "" || name === "json") return JSON_CODEC;
  if (name === "msgpack") return MSGPACK_CODEC;
  return undefined;
}
