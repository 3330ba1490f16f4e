import assert from "node:assert/strict";
import { parseFlags } from "../config/flags.ts";
import { rejection } from "../testing/support.ts";
import { verdictOf } from "../testing/auth.ts";
import { acceptAll } from "./auth.ts";
import { type AuthOptions, createAuthenticator } from "./registry.ts";

/** The daemon's defaults, `flags` overriding. */
function options(...flags: string[]): AuthOptions {
  const parsed = parseFlags(flags);
  assert.ok(!parsed.help);
  return parsed.config;
}

Deno.test("createAuthenticator: none accepts all", async () => {
  assert.equal(await createAuthenticator(options("--auth=none")), acceptAll);
  assert.equal(
    await createAuthenticator(options("--auth=none", "--users_file=/does/not/exist")),
    acceptAll,
  );
});

Deno.test("createAuthenticator: file needs users_file", async () => {
  const error = await rejection(createAuthenticator(options("--auth=file")));
  assert.match((error as Error).message, /--auth=file needs --users_file/);
});

Deno.test("createAuthenticator: file reads the users file", async () => {
  const path = Deno.makeTempFileSync({ suffix: ".users" });
  try {
    Deno.writeTextFileSync(path, "# users\nalice s3cret\nbob hunter2\n");
    const check = await createAuthenticator(options("--auth=file", `--users_file=${path}`));
    assert.equal(await verdictOf(check, "alice", "s3cret"), "allow");
    assert.equal(await verdictOf(check, "bob", "hunter2"), "allow");
    assert.equal(await verdictOf(check, "alice", "hunter2"), "deny");
    assert.equal(await verdictOf(check, "carol", "x"), "deny");
  } finally {
    Deno.removeSync(path);
  }
});

Deno.test("createAuthenticator: a missing or bad users file throws", async () => {
  assert.ok(
    await rejection(
      createAuthenticator(options("--auth=file", "--users_file=/nonexistent/ipush-users")),
    ) instanceof Deno.errors.NotFound,
  );
  const path = Deno.makeTempFileSync();
  try {
    Deno.writeTextFileSync(path, "alice\n");
    const error = await rejection(
      createAuthenticator(options("--auth=file", `--users_file=${path}`)),
    );
    assert.match((error as Error).message, /line 1/);
  } finally {
    Deno.removeSync(path);
  }
});

Deno.test("createAuthenticator: http needs an http(s) URL", async () => {
  for (const url of ["", "not a url", "ftp://example.com/auth"]) {
    const error = await rejection(
      createAuthenticator(options("--auth=http", `--auth_http_url=${url}`)),
    );
    assert.match((error as Error).message, /--auth_http_url/, url);
  }
  await createAuthenticator(options("--auth=http", "--auth_http_url=http://127.0.0.1:1/auth"));
});

Deno.test("createAuthenticator: token needs a secret of 32 bytes or a key file", async () => {
  const none = await rejection(createAuthenticator(options("--auth=token")));
  assert.match((none as Error).message, /--auth_token_secret or --auth_token_key_file/);
  const short = await rejection(
    createAuthenticator(options("--auth=token", "--auth_token_secret=secret")),
  );
  assert.match((short as Error).message, /at least 32 bytes/);
  const missing = await rejection(
    createAuthenticator(options("--auth=token", "--auth_token_key_file=/nonexistent/key.pem")),
  );
  assert.ok(missing instanceof Deno.errors.NotFound);
  const path = Deno.makeTempFileSync({ suffix: ".pem" });
  try {
    Deno.writeTextFileSync(path, "not a key\n");
    const bad = await rejection(
      createAuthenticator(options("--auth=token", `--auth_token_key_file=${path}`)),
    );
    assert.match((bad as Error).message, new RegExp(`--auth_token_key_file=${path}`));
  } finally {
    Deno.removeSync(path);
  }
});
