/**
 * The authenticator seam: one contract that sees the whole connect attempt and answers
 * allow, deny or unavailable. The client port of the shard that owns the uid asks it once
 * per connect (the front door only redirects); what it answers is the same for every
 * transport (`400 invalid password`, or the authenticator's own reason such as `invalid
 * token`; `503 auth unavailable` when the backend cannot tell, never a silent allow). An
 * allow may carry the client's channel permissions, which its session keeps.
 *
 * `none` and `file` are built in here, `http` (`http.ts`) and `token` (`token.ts`) beside;
 * a new backend is one more authenticator returned by `createAuthenticator` (`registry.ts`).
 *
 * @module
 */

import type { ChannelAccess } from "../core/access.ts";
import { matchesDigest, secretDigest } from "../core/secret.ts";

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

/**
 * What an authenticator answers: `allow` (every channel allowed), `{allow: access}` (its
 * channel actions decided by `access`), `deny` (`invalid password`), `{deny: reason}` (the
 * refusal's own reason), or `unavailable` (the backend could not tell).
 */
export type Verdict =
  | "allow"
  | "deny"
  | "unavailable"
  | { allow: ChannelAccess }
  | { deny: string };

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
    passwords.set(fields[0], secretDigest(fields[1]));
  });
  return ({ uid, password }) => {
    const known = passwords.get(uid);
    // An unknown uid costs a comparison too.
    const match = matchesDigest(known ?? NOBODY, password);
    return match && known !== undefined ? "allow" : "deny";
  };
}

const NOBODY = secretDigest("\0no such user\0");
