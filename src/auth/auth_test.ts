import assert from "node:assert/strict";
import { verdictOf } from "../testing/auth.ts";
import { acceptAll, type Authenticator, passwordTable } from "./auth.ts";

/** Whether `authenticator` admits `uid` with `password`. */
async function admits(authenticator: Authenticator, uid: string, password: string) {
  return await verdictOf(authenticator, uid, password) === "allow";
}

Deno.test("acceptAll admits anyone", async () => {
  assert.equal(await admits(acceptAll, "user001", ""), true);
  assert.equal(await admits(acceptAll, "x", "anything"), true);
});

Deno.test("passwordTable: pairs, comments, blank lines", async () => {
  const check = passwordTable(
    [
      "# uid password",
      "user001 pwd001",
      "",
      "   user002\t  pwd002   # trailing comment",
      "\t",
      "#user003 pwd003",
      "user004 pwd004\r", // CRLF file
    ].join("\n"),
  );
  assert.equal(await admits(check, "user001", "pwd001"), true);
  assert.equal(await admits(check, "user002", "pwd002"), true);
  assert.equal(await admits(check, "user004", "pwd004"), true);
  assert.equal(await admits(check, "user001", "pwd002"), false);
  assert.equal(await admits(check, "user001", ""), false);
  assert.equal(await admits(check, "user001", "PWD001"), false);
  assert.equal(
    await admits(check, "user003", "pwd003"),
    false,
    "a commented-out line is not a user",
  );
  assert.equal(await admits(check, "unknown", "pwd001"), false);
  assert.equal(await admits(check, "unknown", ""), false);
  assert.equal(await admits(check, "#user003", "pwd003"), false);
});

Deno.test("passwordTable: the last line for a uid wins", async () => {
  const check = passwordTable("u old\nu new\n");
  assert.equal(await admits(check, "u", "new"), true);
  assert.equal(await admits(check, "u", "old"), false);
});

Deno.test("passwordTable: an empty table admits nobody", async () => {
  assert.equal(await admits(passwordTable(""), "u", ""), false);
  assert.equal(await admits(passwordTable("# nothing\n\n"), "u", "undefined"), false);
});

Deno.test("passwordTable: a line that is not a pair is an error naming its line", () => {
  assert.throws(() => passwordTable("good pair\nlonely\n"), /line 2: expected 'uid password'/);
  assert.throws(() => passwordTable("# c\n\na b c\n"), /line 3/);
  assert.throws(() => passwordTable("a b # c d\nx y z"), /line 2/);
});

Deno.test("passwordTable: a # inside a password is part of it", async () => {
  const check = passwordTable("alice pa#ss # alice's phone\n");
  assert.equal(await admits(check, "alice", "pa#ss"), true);
  assert.equal(await admits(check, "alice", "pa"), false);
});
