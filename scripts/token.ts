/**
 * Mints a client token for `--auth=token`, for trying it out (a real deployment mints them
 * in the application's own back end, with any JWT library):
 *
 * ```sh
 * deno task token -- --uid=alice --channels='team-*,news' --ttl=3600 \
 *   --auth_token_secret='the daemon's secret, 32 bytes or more'     # HS256
 * deno task token -- --uid=alice --private_key_file=key.pem         # RS256 / ES256, by the key
 * deno task token -- --uid='load_{n}' --count=10000 --auth_token_secret=...   # uid token lines
 * ```
 *
 * The token is printed alone on stdout; with `--count`, one `uid token` line for each of
 * `{n}` = 0 .. count-1 (a users file's form, which `deno task load -- --password_file=` reads).
 *
 * @module
 */

import { createPrivateKey } from "node:crypto";
import { parseArgs } from "node:util";
import { importPKCS8, type JWTPayload, SignJWT } from "jose";
import { MIN_SECRET_BYTES } from "../src/auth/token.ts";
import { isValidName } from "../src/core/names.ts";

const USAGE = "usage: deno task token -- --uid=U [--channels=a,b,prefix-*] [--ttl=SECONDS] " +
  "(--auth_token_secret=S | --private_key_file=PEM) [--count=N, with {n} in --uid]";

/** Signs tokens for uids, as the flags say. */
async function signer(values: Record<string, string | undefined>) {
  const ttl = Number(values.ttl ?? "3600");
  if (!Number.isSafeInteger(ttl) || ttl < 1) {
    throw new Error("--ttl must be a whole number of seconds");
  }
  const channels = values.channels?.split(",").map((c) => c.trim()).filter(Boolean);
  let key: CryptoKey | Uint8Array;
  let alg: string;
  if (values.private_key_file !== undefined) {
    const pem = Deno.readTextFileSync(values.private_key_file);
    const type = createPrivateKey(pem).asymmetricKeyType;
    alg = type === "rsa" ? "RS256" : type === "ec" ? "ES256" : "";
    if (alg === "") {
      throw new Error(`${values.private_key_file}: a ${type} key; expected RSA or EC P-256`);
    }
    key = await importPKCS8(pem, alg);
  } else if (values.auth_token_secret !== undefined) {
    alg = "HS256";
    key = new TextEncoder().encode(values.auth_token_secret);
    if (key.length < MIN_SECRET_BYTES) {
      throw new Error(
        `--auth_token_secret must be at least ${MIN_SECRET_BYTES} bytes, as ipush asks`,
      );
    }
  } else throw new Error("give --auth_token_secret or --private_key_file");
  return (uid: string) => {
    const claims: JWTPayload = channels ? { channels } : {};
    return new SignJWT(claims).setProtectedHeader({ alg, typ: "JWT" }).setSubject(uid)
      .setIssuedAt().setExpirationTime(Math.floor(Date.now() / 1000) + ttl).sign(key);
  };
}

function checkedUid(uid: string): string {
  if (!isValidName(uid)) throw new Error(`'${uid}' is not a uid (1 to 64 of A-Z a-z 0-9 _ - . @)`);
  return uid;
}

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    // `deno task token -- ...` passes the `--` on.
    args: args[0] === "--" ? args.slice(1) : args,
    options: {
      uid: { type: "string" },
      channels: { type: "string" },
      ttl: { type: "string" },
      auth_token_secret: { type: "string" },
      private_key_file: { type: "string" },
      count: { type: "string" },
    },
  });
  if (values.uid === undefined) throw new Error(USAGE);
  const sign = await signer(values);
  if (values.count === undefined) {
    console.log(await sign(checkedUid(values.uid)));
    return 0;
  }
  const count = Number(values.count);
  if (!Number.isSafeInteger(count) || count < 1) throw new Error("--count must be at least 1");
  if (!values.uid.includes("{n}")) throw new Error("--count needs {n} in --uid");
  const lines: string[] = [];
  for (let n = 0; n < count; n++) {
    const uid = checkedUid(values.uid.replaceAll("{n}", String(n)));
    lines.push(`${uid} ${await sign(uid)}`);
  }
  console.log(lines.join("\n"));
  return 0;
}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (error) {
    console.error(`token: ${(error as Error).message}`);
    Deno.exit(2);
  }
}
