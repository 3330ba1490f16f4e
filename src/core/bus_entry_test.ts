import assert from "node:assert/strict";
import { compareEntryIds, isEntryId, laterEntryId } from "./bus_entry.ts";

Deno.test("bus entry ids compare as two integers, not as strings", () => {
  assert.ok(compareEntryIds("9-0", "10-0") < 0);
  assert.ok(compareEntryIds("10-2", "10-10") < 0);
  assert.ok(compareEntryIds("1700000000001-0", "1700000000000-99") > 0);
  assert.equal(compareEntryIds("5-3", "5-3"), 0);
  assert.equal(laterEntryId("9-9", "10-0"), "10-0");
  assert.equal(laterEntryId("10-0", "9-9"), "10-0");
});

Deno.test("anything but a stream id is refused, not guessed at", () => {
  for (const id of ["", "5", "5-", "-1", "a-b", "5-3-1", " 5-3", "1e3-0"]) {
    assert.equal(isEntryId(id), false, id);
    assert.throws(() => compareEntryIds(id, "0-0"), /not a stream id/);
  }
  assert.equal(isEntryId("0-0"), true);
});
