/**
 * Reading a client's `GET /connect` off a fresh socket, bounded in size and time, and
 * deciding whether it may connect. The front door and every shard run the same check: a
 * client that dials a shard directly is held to the same rules.
 *
 * @module
 */

import type { Socket } from "node:net";
import type { Authenticator } from "../auth/auth.ts";
import { HeadError, headLength, parseHead, type RequestHead } from "../protocol/handshake.ts";
import { isValidName } from "../protocol/names.ts";

/** Limits and the password check. */
export interface HandshakeOptions {
  maxHeadBytes: number;
  timeoutMs: number;
  authenticate: Authenticator;
}

/** An admitted connect: who, and the bytes the client sent after the head. */
export interface Admitted {
  admitted: true;
  uid: string;
  /** The raw query, reused verbatim in a 303 Location. */
  query: string;
  head: RequestHead;
  rest: Uint8Array;
}

/** A refused one, with the status and reason to answer, and the counter it bumps. */
export interface Refused {
  admitted: false;
  status: 400 | 404 | 405;
  reason: string;
  counter: "bad_request_number" | "auth_fail_number";
}

/**
 * Reads one request head off `socket` and checks it. Resolves null if the socket closes
 * first. Does not write: the caller answers.
 */
export function readHandshake(
  socket: Socket,
  options: HandshakeOptions,
): Promise<Admitted | Refused | null> {
  return new Promise((resolve) => {
    let buffer: Uint8Array = new Uint8Array(0);
    const finish = (result: Admitted | Refused | null) => {
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("close", onClose);
      resolve(result);
    };
    const refuse = (reason: string) =>
      finish({ admitted: false, status: 400, reason, counter: "bad_request_number" });
    const onData = (chunk: Uint8Array) => {
      const scanFrom = Math.max(0, buffer.length - 3);
      buffer = buffer.length === 0 ? chunk : concat(buffer, chunk);
      const length = headLength(buffer, scanFrom);
      if (length < 0) {
        if (buffer.length > options.maxHeadBytes) refuse("request head too large");
        return;
      }
      if (length > options.maxHeadBytes) return refuse("request head too large");
      socket.pause();
      let head: RequestHead;
      try {
        head = parseHead(buffer.subarray(0, length));
      } catch (error) {
        if (!(error instanceof HeadError)) throw error;
        return refuse(error.reason);
      }
      checkConnect(head, buffer.subarray(length), options.authenticate).then(finish);
    };
    const onClose = () => finish(null);
    const timer = setTimeout(() => refuse("request head timeout"), options.timeoutMs);
    socket.on("data", onData);
    socket.on("close", onClose);
  });
}

async function checkConnect(
  head: RequestHead,
  rest: Uint8Array,
  authenticate: Authenticator,
): Promise<Admitted | Refused> {
  const bad = (reason: string, status: 400 | 404 | 405 = 400): Refused => ({
    admitted: false,
    status,
    reason,
    counter: "bad_request_number",
  });
  if (head.path !== "/connect") return bad("not found", 404);
  if (head.method !== "GET") return bad("method not allowed", 405);
  const uid = head.params.get("uid");
  if (!isValidName(uid)) return bad("invalid uid");
  const password = head.params.get("password");
  if (password === undefined) return bad("missing password");
  if (!await authenticate(uid, password)) {
    return {
      admitted: false,
      status: 400,
      reason: "invalid password",
      counter: "auth_fail_number",
    };
  }
  return { admitted: true, uid, query: head.query, head, rest };
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
