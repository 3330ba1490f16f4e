/**
 * `--auth=token` (PROTOCOL.md §8): the password is a JWT, verified by npm `jose` with no call
 * to anyone. HS256 with `--auth_token_secret`, RS256 or ES256 with the public key (PEM) in
 * `--auth_token_key_file`; both may be given, and a token is then checked with the key its
 * `alg` names. Only those algorithms are accepted (never `none`). `sub` must be the uid, `exp`
 * is required, and `exp`/`nbf` are checked with `--auth_token_leeway_sec` of clock skew.
 *
 * The optional `channels` claim lists the channels the client may subscribe and publish to:
 * names, or prefixes ending in `*` (`team-*`; `*` alone is every channel). Without it the
 * client may use none. A claim that is not a list of such entries makes the token invalid.
 * Every refusal is `invalid token`.
 *
 * @module
 */

import { createPublicKey } from "node:crypto";
import { importSPKI, type JWTPayload, jwtVerify } from "jose";
import type { AccessAnswer, ChannelAccess } from "../core/access.ts";
import { isValidName } from "../core/names.ts";
import type { Authenticator, Verdict } from "./auth.ts";

/** What tokens are checked with. */
export interface TokenOptions {
  /** The HS256 secret; "" for none. */
  secret: string;
  /** A PEM file holding an RSA (RS256) or P-256 (ES256) public key; "" for none. */
  keyFile: string;
  leewaySec: number;
}

/** The shortest HS256 secret accepted: 256 bits, as RFC 7518 §3.2 asks. */
export const MIN_SECRET_BYTES = 32;

const INVALID: Verdict = { deny: "invalid token" };

/** Builds the verifier; throws with a message naming the flag when there is no usable key. */
export async function tokenVerifier(options: TokenOptions): Promise<Authenticator> {
  const keys = new Map<string, CryptoKey>();
  if (options.secret !== "") {
    const secret = new TextEncoder().encode(options.secret);
    if (secret.length < MIN_SECRET_BYTES) {
      throw new Error(`--auth_token_secret must be at least ${MIN_SECRET_BYTES} bytes`);
    }
    // Imported once: jose would import a raw secret again for every token (measured 2×).
    const key = await crypto.subtle.importKey(
      "raw",
      secret,
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["verify"],
    );
    keys.set("HS256", key);
  }
  if (options.keyFile !== "") {
    const pem = Deno.readTextFileSync(options.keyFile);
    const alg = algorithmOf(pem, options.keyFile);
    keys.set(alg, await importSPKI(pem, alg));
  }
  if (keys.size === 0) {
    throw new Error("--auth=token needs --auth_token_secret or --auth_token_key_file");
  }
  const verify = {
    algorithms: [...keys.keys()],
    requiredClaims: ["exp"],
    clockTolerance: options.leewaySec,
  };
  const keyFor = ({ alg }: { alg?: string }) => keys.get(alg ?? "")!;
  return async ({ uid, password }) => {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(password, keyFor, { ...verify, subject: uid }));
    } catch {
      return INVALID;
    }
    const channels = channelPatterns(payload.channels);
    return channels ? { allow: channels } : INVALID;
  };
}

/** The JWS algorithm of a PEM public key; throws naming the file for any other key. */
function algorithmOf(pem: string, file: string): "RS256" | "ES256" {
  let type: string | undefined;
  let curve: string | undefined;
  try {
    const key = createPublicKey(pem);
    type = key.asymmetricKeyType;
    curve = key.asymmetricKeyDetails?.namedCurve;
  } catch (error) {
    throw new Error(`--auth_token_key_file=${file}: ${(error as Error).message}`);
  }
  if (type === "rsa") return "RS256";
  if (type === "ec" && curve === "prime256v1") return "ES256";
  throw new Error(
    `--auth_token_key_file=${file}: a ${type} ${curve ?? ""} key; expected RSA or EC P-256`,
  );
}

/** No `channels` claim: no channel at all. Shared by every such session. */
const NO_CHANNELS: ChannelAccess = { check: () => "forbidden" };

/** The channel access a `channels` claim gives; null if the claim is malformed. */
function channelPatterns(claim: unknown): ChannelAccess | null {
  if (claim === undefined) return NO_CHANNELS;
  if (!Array.isArray(claim) || !claim.every(isPattern)) return null;
  return new ClaimedChannels(claim);
}

/** A channel name, or a prefix of one followed by `*`. */
function isPattern(entry: unknown): boolean {
  if (typeof entry !== "string") return false;
  if (!entry.endsWith("*")) return isValidName(entry);
  return entry === "*" || isValidName(entry.slice(0, -1));
}

/** The channels a token's claim allows; kept with the session, so nothing but the claim. */
class ClaimedChannels implements ChannelAccess {
  #patterns: readonly string[];

  constructor(patterns: readonly string[]) {
    this.#patterns = patterns;
  }

  check(_uid: string, channel: string): AccessAnswer {
    for (const pattern of this.#patterns) {
      const prefix = pattern.endsWith("*");
      if (prefix ? channel.startsWith(pattern.slice(0, -1)) : channel === pattern) return "allow";
    }
    return "forbidden";
  }
}
