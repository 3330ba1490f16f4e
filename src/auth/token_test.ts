import assert from "node:assert/strict";
import { exportSPKI, generateKeyPair, type JWTPayload, SignJWT, UnsecuredJWT } from "jose";
import type { ChannelAccess } from "../core/access.ts";
import { verdictOf } from "../testing/auth.ts";
import type { Authenticator, Verdict } from "./auth.ts";
import { tokenVerifier } from "./token.ts";

const SECRET = "a secret of at least thirty-two bytes";
const INVALID = { deny: "invalid token" };

/** A token signed with `key` (HS256 with the test's secret unless given). */
function mint(
  claims: JWTPayload,
  { alg = "HS256", key = new TextEncoder().encode(SECRET) as CryptoKey | Uint8Array } = {},
): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg }).sign(key);
}

const inAnHour = () => Math.floor(Date.now() / 1000) + 3600;
const verifier = (options: { keyFile?: string; leewaySec?: number } = {}) =>
  tokenVerifier({ secret: SECRET, keyFile: "", leewaySec: 0, ...options });

/** The channel access an allow carries; fails the test on anything else. */
function accessOf(verdict: Verdict): ChannelAccess {
  assert.ok(typeof verdict === "object" && "allow" in verdict, JSON.stringify(verdict));
  return verdict.allow;
}

async function check(auth: Authenticator, uid: string, token: string): Promise<Verdict> {
  return await verdictOf(auth, uid, token);
}

Deno.test("token: a valid HS256 token admits its sub", async () => {
  const auth = await verifier();
  const token = await mint({ sub: "alice", exp: inAnHour() });
  accessOf(await check(auth, "alice", token));
});

Deno.test("token: expired, wrong signature, sub not the uid, no exp, not a JWT: invalid token", async () => {
  const auth = await verifier();
  const now = Math.floor(Date.now() / 1000);
  const cases: [string, string][] = [
    ["expired", await mint({ sub: "alice", exp: now - 60 })],
    [
      "wrong signature",
      await mint({ sub: "alice", exp: inAnHour() }, {
        key: new TextEncoder().encode("another secret, thirty-two bytes long"),
      }),
    ],
    ["sub is another uid", await mint({ sub: "mallory", exp: inAnHour() })],
    ["no sub", await mint({ exp: inAnHour() })],
    ["no exp", await mint({ sub: "alice" })],
    ["not yet valid", await mint({ sub: "alice", exp: inAnHour(), nbf: now + 600 })],
    ["not a JWT", "pwd001"],
    ["empty", ""],
  ];
  for (const [what, token] of cases) {
    assert.deepEqual(await check(auth, "alice", token), INVALID, what);
  }
});

Deno.test("token: alg none is refused", async () => {
  const auth = await verifier();
  const unsigned = new UnsecuredJWT({ channels: ["*"] }).setSubject("alice")
    .setExpirationTime("1h").encode();
  assert.match(unsigned, /\.$/, "an unsecured JWT: no signature");
  assert.deepEqual(await check(auth, "alice", unsigned), INVALID);
  // Nor a signed token whose header was changed to none.
  const [, payload, signature] = (await mint({ sub: "alice", exp: inAnHour() })).split(".");
  const none = btoa(JSON.stringify({ alg: "none" })).replace(/=+$/, "");
  assert.deepEqual(await check(auth, "alice", `${none}.${payload}.${signature}`), INVALID);
});

Deno.test("token: exp is checked with the leeway", async () => {
  const token = await mint({ sub: "alice", exp: Math.floor(Date.now() / 1000) - 30 });
  assert.deepEqual(await check(await verifier({ leewaySec: 0 }), "alice", token), INVALID);
  accessOf(await check(await verifier({ leewaySec: 60 }), "alice", token));
});

Deno.test("token: the channels claim allows names and prefixes*, and nothing else", async () => {
  const auth = await verifier();
  const access = accessOf(
    await check(
      auth,
      "alice",
      await mint({ sub: "alice", exp: inAnHour(), channels: ["team-*", "news"] }),
    ),
  );
  assert.equal(access.check("alice", "team-1", "subscribe"), "allow");
  assert.equal(access.check("alice", "team-", "publish"), "allow");
  assert.equal(access.check("alice", "news", "publish"), "allow");
  assert.equal(access.check("alice", "other", "subscribe"), "forbidden");
  assert.equal(access.check("alice", "newsroom", "subscribe"), "forbidden");
  assert.equal(access.check("alice", "team", "subscribe"), "forbidden");
  const all = accessOf(
    await check(auth, "alice", await mint({ sub: "alice", exp: inAnHour(), channels: ["*"] })),
  );
  assert.equal(all.check("alice", "anything", "publish"), "allow");
  const none = accessOf(await check(auth, "alice", await mint({ sub: "alice", exp: inAnHour() })));
  assert.equal(none.check("alice", "anything", "subscribe"), "forbidden", "no claim: no channel");
});

Deno.test("token: a channels claim that is not a list of names or prefixes is invalid", async () => {
  const auth = await verifier();
  for (const channels of ["team-*", [1], ["a b"], ["te*am"], ["**"], [""], null, {}]) {
    const token = await mint({ sub: "alice", exp: inAnHour(), channels });
    assert.deepEqual(await check(auth, "alice", token), INVALID, JSON.stringify(channels));
  }
});

/** Writes `key`'s public half as a PEM file; returns its path. */
async function publicKeyFile(key: CryptoKey): Promise<string> {
  const path = await Deno.makeTempFile({ suffix: ".pem" });
  await Deno.writeTextFile(path, await exportSPKI(key));
  return path;
}

for (const alg of ["RS256", "ES256"] as const) {
  Deno.test(`token: ${alg} with the public key in a PEM file`, async () => {
    const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
    const path = await publicKeyFile(publicKey);
    try {
      const auth = await tokenVerifier({ secret: "", keyFile: path, leewaySec: 0 });
      const token = await mint({ sub: "alice", exp: inAnHour(), channels: ["team-*"] }, {
        alg,
        key: privateKey,
      });
      const access = accessOf(await check(auth, "alice", token));
      assert.equal(access.check("alice", "team-7", "subscribe"), "allow");
      // Another key pair's token, and an HS256 token (no secret configured), are refused.
      const other = await generateKeyPair(alg);
      const forged = await mint({ sub: "alice", exp: inAnHour() }, { alg, key: other.privateKey });
      assert.deepEqual(await check(auth, "alice", forged), INVALID);
      assert.deepEqual(
        await check(auth, "alice", await mint({ sub: "alice", exp: inAnHour() })),
        INVALID,
      );
    } finally {
      await Deno.remove(path);
    }
  });
}

Deno.test("token: with a secret and a key file, each alg is checked with its own key", async () => {
  const { publicKey, privateKey } = await generateKeyPair("RS256");
  const path = await publicKeyFile(publicKey);
  try {
    const auth = await verifier({ keyFile: path });
    accessOf(await check(auth, "alice", await mint({ sub: "alice", exp: inAnHour() })));
    const rs = await mint({ sub: "alice", exp: inAnHour() }, { alg: "RS256", key: privateKey });
    accessOf(await check(auth, "alice", rs));
    // An ES256 token is not accepted: no such key.
    const es = await generateKeyPair("ES256");
    const token = await mint({ sub: "alice", exp: inAnHour() }, {
      alg: "ES256",
      key: es.privateKey,
    });
    assert.deepEqual(await check(auth, "alice", token), INVALID);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("token: a key file that is not RSA or EC P-256 is refused at start", async () => {
  const { publicKey } = await generateKeyPair("ES384", { extractable: true });
  const path = await publicKeyFile(publicKey);
  try {
    await assert.rejects(
      tokenVerifier({ secret: "", keyFile: path, leewaySec: 0 }),
      /expected RSA or EC P-256/,
    );
  } finally {
    await Deno.remove(path);
  }
});
