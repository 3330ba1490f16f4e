/**
 * Helpers for tests of authenticators: a connect attempt with defaults, and the verdict it
 * gets.
 *
 * @module
 */

import type { Authenticator, ConnectAttempt, Verdict } from "../auth/auth.ts";

/** An attempt by `uid` with `password` over raw TCP from loopback, `extra` overriding. */
export function attempt(
  uid: string,
  password: string,
  extra: Partial<ConnectAttempt> = {},
): ConnectAttempt {
  return {
    uid,
    device: "",
    password,
    transport: "tcp",
    address: "127.0.0.1",
    headers: new Map(),
    ...extra,
  };
}

/** What `authenticator` answers `uid` with `password`. */
export async function verdictOf(
  authenticator: Authenticator,
  uid: string,
  password: string,
  extra: Partial<ConnectAttempt> = {},
): Promise<Verdict> {
  return await authenticator(attempt(uid, password, extra));
}
