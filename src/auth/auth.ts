/**
 * The authenticator seam: one contract that sees the whole connect attempt and answers
 * allow, deny or unavailable. A transport's handshake asks it once per connect; what it
 * answers is the same for every transport (`400 invalid password`, or `503 auth
 * unavailable` when the backend cannot tell, never a silent allow). `none` and `file` are
 * built in here; a new backend is one more authenticator returned by
 * {@linkcode createAuthenticator}.
 *
 * @module
 */

import { createHash, timingSafeEqual } from "node:crypto";

/** Everything known about a client when it asks to connect. */
export interface ConnectAttempt {
  uid: string;
  /** The client's device; "" for the default one. */
  device: string;
  password: string;
  /** The transport's name (`tcp`, `ws`, `sse`, `poll`). */
  transport: string;
  /** The client's address, as the socket sees it. */
  address: string;
  /** The request's headers, names lower-cased. */
  headers: ReadonlyMap<string, string>;
}

/** What an authenticator answers. */
export type Verdict = "allow" | "deny" | "unavailable";

/** Decides whether an attempt may connect. */
export type Authenticator = (attempt: ConnectAttempt) => Verdict | Promise<Verdict>;

/** `--auth=none`: any password admits any valid uid. */
export const acceptAll: Authenticator = () => "allow";

/**
 * `--auth=file`: a `uid password` pair per line of `text`; blank lines and `#` comments (at
 * the start of a line or after white space, so a password may contain `#`) are skipped.
 * Throws on a line that is not a pair, naming the line. Passwords are compared in constant
 * time, so how long a wrong guess takes says nothing about how close it was.
 */
export function passwordTable(text: string): Authenticator {
  const passwords = new Map<string, Uint8Array>();
  text.split("\n").forEach((raw, i) => {
    const line = raw.replace(/(^|\s)#.*$/, "").trim();
    if (line === "") return;
    const fields = line.split(/\s+/);
    if (fields.length !== 2) throw new Error(`users file line ${i + 1}: expected 'uid password'`);
    passwords.set(fields[0], digest(fields[1]));
  });
  return ({ uid, password }) => {
    const known = passwords.get(uid);
    // An unknown uid costs a comparison too.
    const match = timingSafeEqual(known ?? NOBODY, digest(password));
    return match && known !== undefined ? "allow" : "deny";
  };
}

/** Equal-length digests, so the comparison's time does not depend on the lengths either. */
function digest(password: string): Uint8Array {
  return createHash("sha256").update(password).digest();
}

const NOBODY = digest("\0no such user\0");

/** The authenticator a configuration names. */
export function createAuthenticator(
  options: { auth: "none" | "file"; users_file: string },
): Authenticator {
  if (options.auth === "none") return acceptAll;
  if (options.users_file === "") throw new Error("--auth=file needs --users_file");
  return passwordTable(Deno.readTextFileSync(options.users_file));
}
