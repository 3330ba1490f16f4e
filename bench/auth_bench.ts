/**
 * What a connect's check costs a shard, per `--auth`: the verifier of a signed token (HS256,
 * RS256), a cached answer of the `http` backend, and the users file, each as the handshake
 * calls it. `deno bench -A bench/auth_bench.ts`
 *
 * @module
 */

import { exportSPKI, generateKeyPair, SignJWT } from "jose";
import { passwordTable } from "../src/auth/auth.ts";
import { HttpBackend } from "../src/auth/http.ts";
import { tokenVerifier } from "../src/auth/token.ts";
import { attempt } from "../src/testing/auth.ts";

const SECRET = "a bench secret of at least thirty-two bytes";
const claims = { channels: ["team-*", "news"] };
const hs256 = await tokenVerifier({ secret: SECRET, keyFile: "", leewaySec: 0 });
const hsToken = await new SignJWT(claims).setProtectedHeader({ alg: "HS256" }).setSubject("alice")
  .setExpirationTime("1h").sign(new TextEncoder().encode(SECRET));
const { publicKey, privateKey } = await generateKeyPair("RS256", { extractable: true });
const keyFile = await Deno.makeTempFile({ suffix: ".pem" });
await Deno.writeTextFile(keyFile, await exportSPKI(publicKey));
const rs256 = await tokenVerifier({ secret: "", keyFile, leewaySec: 0 });
await Deno.remove(keyFile);
const rsToken = await new SignJWT(claims).setProtectedHeader({ alg: "RS256" }).setSubject("alice")
  .setExpirationTime("1h").sign(privateKey);

// A backend that answers once; every connect after that is a cache hit.
const server = Deno.serve(
  { hostname: "127.0.0.1", port: 0, onListen() {} },
  () => new Response("allow"),
);
const http = new HttpBackend({
  url: `http://127.0.0.1:${server.addr.port}/auth`,
  cacheMs: 3_600_000,
  timeoutMs: 1000,
  maxInFlight: 8,
  log: () => {},
});
await http.authenticate(attempt("alice", "pw"));
await server.shutdown();

const file = passwordTable("alice pw\nbob secret\n");

const hsAttempt = attempt("alice", hsToken);
const rsAttempt = attempt("alice", rsToken);
const pwAttempt = attempt("alice", "pw");

Deno.bench("token, HS256 (jose)", { group: "check" }, async () => {
  await hs256(hsAttempt);
});
Deno.bench("token, RS256 (jose)", { group: "check" }, async () => {
  await rs256(rsAttempt);
});
Deno.bench("http, cached answer", { group: "check" }, async () => {
  await http.authenticate(pwAttempt);
});
Deno.bench("file, constant-time", { group: "check", baseline: true }, async () => {
  await file(pwAttempt);
});
