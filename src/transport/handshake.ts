/**
 * Reading a client's request off a socket of a client port, bounded in size and time, and
 * deciding what it is: a way to connect (a transport), a request answered at once (an
 * endpoint: `/send`, `/shard`, the JavaScript client), a CORS preflight — and whether it may
 * go ahead. The front door and every shard run the same check: a client that dials a shard
 * directly is held to the same rules, but only the owner of the uid authenticates: a login
 * for a uid another shard owns is redirected before its password is checked, so each connect
 * is checked once, by the shard that serves it, before the request's deadline. A socket kept
 * alive for a next request is read by a new reader, with the same bounds.
 *
 * A request is its head and, for an endpoint, the body its `Content-Length` announces (at
 * most `maxBodyBytes`; a chunked body is refused with 411). Both must be complete within
 * `timeoutMs` of the reader's start. After a transport's head, what follows is the
 * transport's stream, not a body.
 *
 * @module
 */

import type { Socket } from "node:net";
import type { Authenticator, Verdict } from "../auth/auth.ts";
import type { ChannelAccess } from "../core/access.ts";
import { isValidName } from "../core/names.ts";
import type { ShardAddress } from "../core/shard_map.ts";
import { codecNamed, JSON_CODEC, type MessageCodec } from "../protocol/codec.ts";
import {
  HeadError,
  headLength,
  parseHead,
  type RequestHead,
  resumePoint,
} from "../protocol/handshake.ts";
import type { CounterName } from "../stats/counters.ts";
import type { StreamTarget, Transport } from "./conn.ts";
import type { Cors } from "./cors.ts";
import { Deadlines } from "./deadlines.ts";
import { closeSoon } from "./linger.ts";

/**
 * A request a client port answers at once, and what it must carry: `login` (a valid uid,
 * device and password the authenticator allows), `uid` (a valid uid), or `none`.
 */
export interface Endpoint {
  readonly method: string;
  readonly path: string;
  readonly needs: "login" | "uid" | "none";
}

/** What a client port answers: a way to connect, or an endpoint. */
export type Route = Transport | Endpoint;

/** True for a route that opens a session. */
export function isTransport(route: Route): route is Transport {
  return "open" in route;
}

/** Limits, what is served, where uids live, the check of a login owned here, CORS. */
export interface HandshakeOptions {
  maxHeadBytes: number;
  /** Largest request body (a `/send`'s). */
  maxBodyBytes: number;
  timeoutMs: number;
  transports: readonly Transport[];
  endpoints: readonly Endpoint[];
  /** Where `uid` must log in, or null when this port owns it (and so authenticates it). */
  redirectFor(uid: string): ShardAddress | null;
  authenticate: Authenticator;
  cors: Cors;
}

/** A request that may go ahead. Fields a route does not need are empty. */
export interface Accepted {
  accepted: true;
  route: Route | "preflight";
  uid: string;
  device: string;
  /** Where the client resumes: every `s ≤ since` is acknowledged first (0: it says nothing). */
  since: number;
  /** How a transport's messages are written (`codec=`). */
  codec: MessageCodec;
  /** A login's channel permissions, from the authenticator; null: every channel. */
  access: ChannelAccess | null;
  head: RequestHead;
  /** The CORS header lines of every answer to it. */
  cors: string;
  /** An endpoint's request body. */
  body: Uint8Array;
  /** Bytes read past the request (a transport's stream, or a next request). */
  rest: Uint8Array;
}

/** A refused one, with the status, reason and header lines to answer, and its counter. */
export interface Refused {
  accepted: false;
  status: 400 | 403 | 404 | 405 | 411 | 413 | 426 | 429 | 503;
  reason: string;
  headers: string;
  counter: CounterName;
}

/** A valid login for a uid another shard owns: it is sent there (303, or 307 for a `/send`). */
export interface Redirected {
  accepted: false;
  redirect: ShardAddress;
  route: Route;
  head: RequestHead;
  /** The CORS header lines of the answer. */
  cors: string;
}

/** What a request gets. */
export type Outcome = Accepted | Refused | Redirected;

const EMPTY = new Uint8Array(0);
const CONTINUE = "HTTP/1.1 100 Continue\r\n\r\n";

/**
 * Reads one request off a socket (fed through {@linkcode StreamTarget.receive}) and checks
 * it; `done` hears the outcome once, or null if the socket closes first (or, when `idle`,
 * the time runs out before a byte of it came: the socket is then closed quietly, as a kept-
 * alive connection is). Pauses the socket once the request is complete, and writes nothing
 * but a `100 Continue`: the caller answers.
 */
export class HandshakeReader implements StreamTarget {
  #socket: Socket;
  #options: HandshakeOptions;
  #done: ((result: Outcome | null) => void) | null;
  #idle: boolean;
  #buffer: Uint8Array = EMPTY;
  /** Once the head is read, and until the body is: the head, the route, the body's length. */
  #waiting: { head: RequestHead; route: Route | "preflight"; length: number } | null = null;
  #checking = false;

  constructor(
    socket: Socket,
    options: HandshakeOptions,
    done: (result: Outcome | null) => void,
    idle = false,
  ) {
    this.#socket = socket;
    this.#options = options;
    this.#done = done;
    this.#idle = idle;
    // The request, and its password check, must be done by then.
    pending.add(this, Date.now() + options.timeoutMs);
  }

  receive(chunk: Uint8Array): void {
    if (!this.#done || this.#checking) return;
    const buffer = this.#buffer;
    const joined = buffer.length === 0 ? chunk : concat(buffer, chunk);
    if (this.#waiting) return this.#body(joined);
    const length = headLength(joined, Math.max(0, buffer.length - 3));
    const limit = this.#options.maxHeadBytes;
    if (length < 0) {
      this.#buffer = joined;
      if (joined.length > limit) this.#refuse(400, "request head too large");
      return;
    }
    if (length > limit) return this.#refuse(400, "request head too large");
    let head: RequestHead;
    try {
      head = parseHead(joined.subarray(0, length));
    } catch (error) {
      if (!(error instanceof HeadError)) throw error;
      return this.#refuse(400, error.reason);
    }
    const route = routeOf(head, this.#options);
    if (route === "not found" || route === "method not allowed") {
      return this.#refuse(route === "not found" ? 404 : 405, route, head);
    }
    if (route !== "preflight" && isTransport(route)) {
      return this.#check(head, route, EMPTY, joined.subarray(length));
    }
    // An endpoint's (or a preflight's) body, if it announces one.
    if (head.headers.has("transfer-encoding")) {
      return this.#refuse(411, "send the body with a Content-Length", head);
    }
    const declared = head.headers.get("content-length") ?? "0";
    if (!/^\d{1,12}$/.test(declared)) return this.#refuse(400, "malformed request", head);
    const bodyLength = Number(declared);
    if (bodyLength > this.#options.maxBodyBytes) return this.#refuse(413, "body too large", head);
    this.#waiting = { head, route, length: bodyLength };
    const early = joined.length - length;
    if (bodyLength > early && /100-continue/i.test(head.headers.get("expect") ?? "")) {
      this.#socket.write(CONTINUE);
    }
    this.#body(joined.subarray(length));
  }

  closed(): void {
    this.#finish()?.(null);
  }

  /** The deadline passed: the request is late, or, once it is read, its password check. */
  expire(): void {
    if (this.#checking) {
      const headers = this.#options.cors.headers(this.#waiting?.head.headers.get("origin"));
      return this.#finish()?.({
        accepted: false,
        status: 503,
        reason: "auth unavailable",
        headers,
        counter: "auth_unavailable_number",
      });
    }
    if (this.#idle && this.#buffer.length === 0 && !this.#waiting) {
      closeSoon(this.#socket);
      return this.#finish()?.(null);
    }
    this.#refuse(400, "request head timeout");
  }

  /** Bytes of an endpoint's body (the head already read). */
  #body(bytes: Uint8Array): void {
    const { head, route, length } = this.#waiting!;
    if (bytes.length < length) {
      this.#buffer = bytes;
      return;
    }
    this.#check(head, route, bytes.subarray(0, length), bytes.subarray(length));
  }

  /** The request is complete: check it, then tell `done`. */
  #check(head: RequestHead, route: Route | "preflight", body: Uint8Array, rest: Uint8Array) {
    this.#socket.pause();
    this.#checking = true;
    this.#buffer = EMPTY;
    // A close or the time-out while the password is checked still wins, as they come first.
    const address = this.#socket.remoteAddress ?? "";
    checkRequest(head, route, body, rest, address, this.#options).then((result) =>
      this.#finish()?.(result)
    );
  }

  /** Refuses the request; with its `head` when it was read, so that CORS lets the page see why. */
  #refuse(status: Refused["status"], reason: string, head = this.#waiting?.head): void {
    const headers = head ? this.#options.cors.headers(head.headers.get("origin")) : "";
    this.#finish()?.({ accepted: false, status, reason, headers, counter: "bad_request_number" });
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

/** Requests under way: cut off between their reader's deadline and 250 ms after. */
const pending = new Deadlines<HandshakeReader>(250, (reader) => reader.expire());

/** The route a head asks for, or why there is none. */
function routeOf(
  head: RequestHead,
  options: HandshakeOptions,
): Route | "preflight" | "not found" | "method not allowed" {
  const onPath: Route[] = [];
  for (const route of options.transports) if (route.path === head.path) onPath.push(route);
  for (const route of options.endpoints) if (route.path === head.path) onPath.push(route);
  if (onPath.length === 0) return "not found";
  if (head.method === "OPTIONS") return "preflight";
  const upgrade = head.headers.get("upgrade")?.toLowerCase();
  const route = onPath.find((r) =>
    r.method === head.method &&
    (!isTransport(r) || r.upgrade === undefined || r.upgrade === upgrade)
  );
  return route ?? "method not allowed";
}

async function checkRequest(
  head: RequestHead,
  route: Route | "preflight",
  body: Uint8Array,
  rest: Uint8Array,
  address: string,
  options: HandshakeOptions,
): Promise<Outcome> {
  const origin = head.headers.get("origin");
  const cors = options.cors.headers(origin);
  const refused = (
    status: Refused["status"],
    reason: string,
    counter: Refused["counter"] = "bad_request_number",
    extra = "",
  ): Refused => ({ accepted: false, status, reason, headers: cors + extra, counter });
  const accepted = (
    uid = "",
    device = "",
    since = 0,
    codec = JSON_CODEC,
    access: ChannelAccess | null = null,
  ): Accepted => ({
    accepted: true,
    route,
    uid,
    device,
    since,
    codec,
    access,
    head,
    cors,
    body,
    rest,
  });
  if (!options.cors.allows(origin)) return refused(403, "origin not allowed");
  if (route === "preflight") return accepted();
  const needs = isTransport(route) ? "login" : route.needs;
  if (needs === "none") return accepted();
  const uid = head.params.get("uid");
  if (!isValidName(uid)) return refused(400, "invalid uid");
  if (needs === "uid") return accepted(uid);
  const device = head.params.get("device") ?? "";
  if (device !== "" && !isValidName(device)) return refused(400, "invalid device");
  const since = resumePoint(head.headers, head.params);
  if (since === null) return refused(400, "invalid since");
  const codec = codecNamed(head.params.get("codec") ?? "");
  if (!codec) return refused(400, "invalid codec");
  if (codec !== JSON_CODEC && !(isTransport(route) && route.binary)) {
    return refused(400, "codec needs raw TCP or WebSocket");
  }
  const problem = isTransport(route) ? route.check?.(head) : null;
  if (problem) return refused(problem.status, problem.reason, undefined, problem.headers);
  const password = head.params.get("password");
  if (password === undefined) return refused(400, "missing password");
  const owner = options.redirectFor(uid);
  if (owner) return { accepted: false, redirect: owner, route, head, cors };
  const verdict = await options.authenticate({
    uid,
    device,
    password,
    transport: isTransport(route) ? route.name : route.path.slice(1),
    address,
    headers: head.headers,
  });
  const access = accessOf(verdict);
  if (access !== undefined) return accepted(uid, device, since, codec, access);
  if (verdict === "unavailable") {
    return refused(503, "auth unavailable", "auth_unavailable_number");
  }
  const reason = typeof verdict === "object" && "deny" in verdict
    ? verdict.deny
    : "invalid password";
  return refused(400, reason, "auth_fail_number");
}

/** The channel access an allow gives (null: every channel); undefined if not an allow. */
function accessOf(verdict: Verdict): ChannelAccess | null | undefined {
  if (verdict === "allow") return null;
  return typeof verdict === "object" && "allow" in verdict ? verdict.allow : undefined;
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
