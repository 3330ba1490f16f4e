/**
 * Comparing a secret a client or a back end presents (a password, the admin token) with the
 * one expected, in constant time: both are hashed to equal-length digests first, so neither
 * how long a wrong guess takes nor its length says anything about how close it was.
 *
 * @module
 */

import { createHash, timingSafeEqual } from "node:crypto";

/** The SHA-256 digest of `secret`: what is kept and compared instead of the secret itself. */
export function secretDigest(secret: string): Uint8Array {
  return createHash("sha256").update(secret).digest();
}

/** True when `given` is the secret whose digest is `expected`, in constant time. */
export function matchesDigest(expected: Uint8Array, given: string): boolean {
  return timingSafeEqual(expected, secretDigest(given));
}
