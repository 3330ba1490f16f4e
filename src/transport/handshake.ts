/**
 * Reading a client's request head off a fresh socket, bounded in size and time, and deciding
 * what it gets: a refusal, a redirect to the shard that owns its uid, or, on that shard, the
 * authenticator's check and the transport the request asks for. The front door and every
 * shard run the same rules (a client that dials a shard directly is held to them too), but
 * only the owner authenticates: each connect is checked once, by the shard that serves it,
 * before the deadline of its head.
 *
 * @module
 */

import type { Socket } from "node:net";
import type { Authenticator, Verdict } from "../auth/auth.ts";
import type { ChannelAccess } from "../core/access.ts";
import { isValidName } from "../core/names.ts";
import type { ShardAddress } from "../core/shard_map.ts";
import { codecNamed } from "../protocol/codec.ts";
import { HeadError, headLength, parseHead, type RequestHead } from "../protocol/handshake.ts";
import type { CounterName } from "../stats/counters.ts";
import type { Admitted, StreamTarget, Transport } from "./conn.ts";
import { Deadlines } from "./deadlines.ts";

/** Limits, the transports served, where uids live, and the check of a client owned here. */
export interface HandshakeOptions {
  maxHeadBytes: number;
  timeoutMs: number;
  transports: readonly Transport[];
  /** Where `uid` must connect, or null when this port owns it (and so authenticates it). */
  redirectFor(uid: string): ShardAddress | null;
  authenticate: Authenticator;
}

/** A refused one, with the status and reason to answer, and the counter it bumps. */
export interface Refused {
  admitted: false;
  status: 400 | 404 | 405 | 429 | 503;
  reason: string;
  counter: CounterName;
}

/** A valid connect for a uid another shard owns: it is sent there. */
export interface Redirected {
  admitted: false;
  redirect: ShardAddress;
  /** The raw query, reused verbatim in the Location. */
  query: string;
}

/** What a request head gets. */
export type Outcome = Admitted | Refused | Redirected;

const EMPTY = new Uint8Array(0);

/**
 * Reads one request head off a socket (fed through {@linkcode StreamTarget.receive}) and
 * checks it; `done` hears the outcome once, or null if the socket closes first. Pauses the
 * socket once the head is complete, and does not write: the caller answers.
 */
export class HandshakeReader implements StreamTarget {
  #socket: Socket;
  #options: HandshakeOptions;
  #done: ((result: Outcome | null) => void) | null;
  #buffer: Uint8Array = EMPTY;
  #headRead = false;
  constructor(
    socket: Socket,
    options: HandshakeOptions,
    done: (result: Outcome | null) => void,
  ) {
    this.#socket = socket;
    this.#options = options;
    this.#done = done;
    // The head, and its password check, must be done by then.
    pending.add(this, Date.now() + options.timeoutMs);
  }

  receive(chunk: Uint8Array): void {
    if (!this.#done || this.#headRead) return;
    const buffer = this.#buffer;
    const scanFrom = Math.max(0, buffer.length - 3);
    const joined = buffer.length === 0 ? chunk : concat(buffer, chunk);
    const length = headLength(joined, scanFrom);
    const limit = this.#options.maxHeadBytes;
    if (length < 0) {
      this.#buffer = joined;
      if (joined.length > limit) this.#refuse("request head too large");
      return;
    }
    if (length > limit) return this.#refuse("request head too large");
    this.#socket.pause();
    this.#headRead = true;
    this.#buffer = EMPTY;
    let head: RequestHead;
    try {
      head = parseHead(joined.subarray(0, length));
    } catch (error) {
      if (!(error instanceof HeadError)) throw error;
      return this.#refuse(error.reason);
    }
    // A close or the time-out while the password is checked still wins, as they come first.
    const address = this.#socket.remoteAddress ?? "";
    checkConnect(head, joined.subarray(length), address, this.#options).then((result) =>
      this.#finish()?.(result)
    );
  }

  closed(): void {
    this.#finish()?.(null);
  }

  /** The deadline passed: the head is late, or, once it is read, its check. */
  expire(): void {
    if (!this.#headRead) return this.#refuse("request head timeout");
    this.#finish()?.({
      admitted: false,
      status: 503,
      reason: "auth unavailable",
      counter: "auth_unavailable_number",
    });
  }

  #refuse(reason: string): void {
    this.#finish()?.({ admitted: false, status: 400, reason, counter: "bad_request_number" });
  }

  /** Ends reading: returns the outcome's listener the first time, null after. */
  #finish(): ((result: Outcome | null) => void) | null {
    const done = this.#done;
    this.#done = null;
    this.#buffer = EMPTY;
    pending.delete(this);
    return done;
  }
}

/** Handshakes under way: a head is cut off between `--handshake_timeout_sec` and 250 ms after. */
const pending = new Deadlines<HandshakeReader>(250, (reader) => reader.expire());

async function checkConnect(
  head: RequestHead,
  rest: Uint8Array,
  address: string,
  options: HandshakeOptions,
): Promise<Outcome> {
  const bad = (reason: string, status: 400 | 404 | 405 = 400): Refused => ({
    admitted: false,
    status,
    reason,
    counter: "bad_request_number",
  });
  const served = options.transports.filter((t) => t.path === head.path);
  if (served.length === 0) return bad("not found", 404);
  const transport = served.find((t) => t.method === head.method);
  if (!transport) return bad("method not allowed", 405);
  const uid = head.params.get("uid");
  if (!isValidName(uid)) return bad("invalid uid");
  const device = head.params.get("device") ?? "";
  if (device !== "" && !isValidName(device)) return bad("invalid device");
  const codec = codecNamed(head.params.get("codec") ?? "");
  if (!codec) return bad("invalid codec");
  const password = head.params.get("password");
  if (password === undefined) return bad("missing password");
  const owner = options.redirectFor(uid);
  if (owner) return { admitted: false, redirect: owner, query: head.query };
  const verdict = await options.authenticate({
    uid,
    device,
    password,
    transport: transport.name,
    address,
    headers: head.headers,
  });
  const access = accessOf(verdict);
  if (access === undefined) return refusalOf(verdict);
  return { admitted: true, uid, device, codec, access, query: head.query, head, rest, transport };
}

/** The channel access an allow gives (null: every channel); undefined if not an allow. */
function accessOf(verdict: Verdict): ChannelAccess | null | undefined {
  if (verdict === "allow") return null;
  return typeof verdict === "object" && "allow" in verdict ? verdict.allow : undefined;
}

/** How a verdict other than an allow is answered. */
function refusalOf(verdict: Verdict): Refused {
  if (verdict === "unavailable") {
    return {
      admitted: false,
      status: 503,
      reason: "auth unavailable",
      counter: "auth_unavailable_number",
    };
  }
  const reason = typeof verdict === "object" && "deny" in verdict
    ? verdict.deny
    : "invalid password";
  return { admitted: false, status: 400, reason, counter: "auth_fail_number" };
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const joined = new Uint8Array(a.length + b.length);
  joined.set(a);
  joined.set(b, a.length);
  return joined;
}

/** The address the client reached us at: reachable by that client, so fit for a 303. */
export function reachedHost(socket: Socket): string {
  const local = socket.localAddress ?? "127.0.0.1";
  return local.startsWith("::ffff:") ? local.slice(7) : local;
}
