import assert from "node:assert/strict";
import { isValidName, MAX_NAME_LENGTH } from "./names.ts";

Deno.test("isValidName: 1 to 64 characters", () => {
  assert.equal(MAX_NAME_LENGTH, 64);
  assert.equal(isValidName(""), false);
  assert.equal(isValidName("a"), true);
  assert.equal(isValidName("a".repeat(64)), true);
  assert.equal(isValidName("a".repeat(65)), false);
});

Deno.test("isValidName: every allowed character", () => {
  const allowed = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.@-";
  for (const ch of allowed) assert.equal(isValidName(ch), true, JSON.stringify(ch));
  assert.equal(isValidName("user001"), true);
  assert.equal(isValidName("channel1"), true);
  assert.equal(isValidName("first.last@example.com"), true);
  assert.equal(isValidName("node-1_shard.2"), true);
  assert.equal(isValidName("-"), true);
  assert.equal(isValidName("..."), true);
});

Deno.test("isValidName: every other ASCII character is refused", () => {
  const allowed = /[A-Za-z0-9_.@-]/;
  for (let code = 0; code < 128; code++) {
    const ch = String.fromCharCode(code);
    if (allowed.test(ch)) continue;
    assert.equal(isValidName(`a${ch}b`), false, `code ${code}`);
    assert.equal(isValidName(ch), false, `code ${code}`);
  }
});

Deno.test("isValidName: non-ASCII and line ends are refused", () => {
  for (const name of ["caf\u00e9", "\u0430dmin", "user\u200b", "\u{1f600}", "a\n", "\na", "a\r"]) {
    assert.equal(isValidName(name), false, JSON.stringify(name));
  }
  // 64 characters but more than 64 bytes.
  assert.equal(isValidName("\u00e9".repeat(32)), false);
});

Deno.test("isValidName: non-strings are refused", () => {
  for (const value of [undefined, null, 0, 1, true, ["a"], { a: 1 }, new String("a")]) {
    assert.equal(isValidName(value), false, String(value));
  }
});
