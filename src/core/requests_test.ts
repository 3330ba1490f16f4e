import assert from "node:assert/strict";
import { ServiceError } from "./errors.ts";
import { checkOwnerOp } from "./requests.ts";

const user = {
  uid: "alice",
  lastSeq: 9,
  devices: [{ device: "", lastAck: 7, seenAt: 1_700_000_000_000 }, {
    device: "phone",
    lastAck: 0,
    seenAt: 0,
  }],
  messages: [
    { uid: "alice", seq: 8, type: 3, from: "op", body: '{"k":1}', expiresAt: 0 },
    { uid: "alice", seq: 9, type: 4, from: "bob", channel: "news", body: "2", expiresAt: 5 },
  ],
  channels: ["news"],
};

const check = (value: unknown) => checkOwnerOp(value, 1024, 100);

/** The 400's reason for an import of `changed` in place of {@linkcode user}. */
function refusal(changed: Record<string, unknown>): string {
  try {
    check({ op: "import", uid: "alice", users: [{ ...user, ...changed }] });
  } catch (error) {
    assert.ok(error instanceof ServiceError && error.status === 400, String(error));
    return error.message;
  }
  throw new Error(`accepted ${JSON.stringify(changed)}`);
}

Deno.test("checkOwnerOp: an import op passes whole, each field as it came", () => {
  assert.deepEqual(check({ op: "import", uid: "alice", users: [user] }), {
    op: "import",
    uid: "alice",
    users: [user],
  });
});

Deno.test("checkOwnerOp: an import op is held to every rule, and the 400 names it", () => {
  const message = user.messages[0];
  assert.equal(refusal({ lastSeq: -1 }), "invalid lastSeq");
  assert.equal(refusal({ lastSeq: 8.5 }), "invalid lastSeq");
  assert.equal(refusal({ devices: {} }), "invalid devices");
  assert.equal(
    refusal({ devices: [{ device: "", lastAck: 10, seenAt: 0 }] }),
    'user alice: device "" acked past lastSeq',
  );
  assert.equal(
    refusal({ devices: [user.devices[0], user.devices[0]] }),
    "user alice: a device twice",
  );
  assert.equal(refusal({ devices: [{ device: "a b", lastAck: 0, seenAt: 0 }] }), "invalid device");
  assert.equal(
    refusal({ messages: [{ ...message, uid: "bob" }] }),
    "user alice: a message of another uid",
  );
  assert.equal(
    refusal({ messages: [message, message] }),
    "user alice: seq not increasing up to lastSeq",
  );
  assert.equal(
    refusal({ messages: [{ ...message, seq: 10 }] }),
    "user alice: seq not increasing up to lastSeq",
  );
  assert.equal(refusal({ messages: [{ ...message, type: 1 }] }), "user alice: invalid type");
  assert.equal(
    refusal({ messages: [{ ...message, channel: "news" }] }),
    "user alice: a channel on a type 3 message",
  );
  assert.equal(refusal({ messages: [{ ...message, type: 4 }] }), "missing channel");
  assert.equal(
    refusal({ messages: [{ ...message, body: "{" }] }),
    "body is not one json value on one line",
  );
  assert.equal(refusal({ channels: ["news", "news"] }), "user alice: a channel twice");
  assert.equal(refusal({ uid: "" }), "invalid uid");
  assert.throws(
    () => check({ op: "import", uid: "alice", users: [] }),
    /invalid users \(1 to 10000\)/,
  );
});
