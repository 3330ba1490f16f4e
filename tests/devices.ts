/**
 * The device scenarios every store runs end to end (PROTOCOL.md §7): a phone and a tablet of
 * one user each get every message from their own cursor, a device gone quiet past
 * `--device_ttl_days` no longer holds compaction back, and each cursor survives `kill -9`.
 *
 * @module
 */

import assert from "node:assert/strict";
import { connected, type RawClient, settle } from "./client.ts";
import { type Daemon, delay, publish, startDaemon } from "./harness.ts";

/** A device TTL short enough to wait out in a test: 4.3 s. */
const TTL_FLAGS = ["--device_ttl_days=0.00005", "--debug_api=true"];
const TTL_MS = 0.00005 * 86_400_000;

/** The `s` of each message `client` has been sent so far (a heartbeat round trip). */
async function seqs(client: RawClient): Promise<number[]> {
  return (await settle(client)).map((message) => message.s as number);
}

async function listed(daemon: Daemon, uid: string, device: string): Promise<number[]> {
  const answer = await daemon.admin(`/msg?uid=${uid}&device=${device}`);
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  return (answer.body.result as string[]).map((text) => JSON.parse(text).s);
}

async function compactNow(daemon: Daemon): Promise<number> {
  const answer = await daemon.admin("/debug/compact", { method: "POST" });
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  return answer.body.result as number;
}

/**
 * The phone acks three messages; the tablet, which was offline meanwhile, connects and still
 * gets s 1 to 3 in order; once it acks, neither device has anything listed. A third device,
 * seen once before the messages and never again, holds them back until its TTL passes.
 */
export async function phoneAndTablet(storageFlags: string[]): Promise<void> {
  const daemon = await startDaemon([...storageFlags, ...TTL_FLAGS]);
  try {
    const laptop = await connected(daemon.clientPort, "ada", "laptop");
    await settle(laptop);
    laptop.close();
    const laptopSeen = Date.now();
    for (let i = 1; i <= 3; i++) await publish(daemon, "to=ada", `m${i}`);

    const phone = await connected(daemon.clientPort, "ada", "phone");
    assert.deepEqual(await seqs(phone), [1, 2, 3]);
    await phone.send({ y: 5, s: 3 });
    assert.deepEqual(await seqs(phone), []);

    const tablet = await connected(daemon.clientPort, "ada", "tablet");
    assert.deepEqual(await seqs(tablet), [1, 2, 3], "the tablet gets what the phone acked");
    await tablet.send({ y: 5, s: 3 });
    await settle(tablet);
    assert.deepEqual(await listed(daemon, "ada", "phone"), []);
    assert.deepEqual(await listed(daemon, "ada", "tablet"), []);

    // The laptop was seen: until its TTL passes, compaction keeps what it has not acked.
    await delay(300); // the acks reach the store with the next commit
    await compactNow(daemon);
    assert.deepEqual(await listed(daemon, "ada", "laptop"), [1, 2, 3]);
    const wait = laptopSeen + TTL_MS + 500 - Date.now();
    if (wait > 0) await delay(wait);
    // Phone and tablet are live (seen just now), the laptop is not: the three go.
    phone.close();
    tablet.close();
    for (const device of ["phone", "tablet"]) {
      const again = await connected(daemon.clientPort, "ada", device);
      assert.deepEqual(await seqs(again), []);
      again.close();
    }
    await delay(300);
    assert.equal(await compactNow(daemon), 3);
    assert.deepEqual(await listed(daemon, "ada", "laptop"), []);
  } finally {
    assert.equal(await daemon.stop(), 0);
  }
}

/** Two devices at different cursors, then `kill -9`: each replays from its own after restart. */
export async function devicesSurviveKill(storageFlags: string[]): Promise<void> {
  const first = await startDaemon(storageFlags);
  const phone = await connected(first.clientPort, "bea", "phone");
  const tablet = await connected(first.clientPort, "bea", "tablet");
  for (let i = 1; i <= 5; i++) {
    assert.deepEqual((await publish(first, "to=bea", `m${i}`)).body, { result: "ok" });
  }
  assert.deepEqual(await seqs(phone), [1, 2, 3, 4, 5]);
  assert.deepEqual(await seqs(tablet), [1, 2, 3, 4, 5]);
  await phone.send({ y: 5, s: 4 });
  await tablet.send({ y: 5, s: 2 });
  await settle(phone);
  await settle(tablet);
  await delay(500); // the acks are in the store once their commit has run
  await first.stop("SIGKILL");
  phone.close();
  tablet.close();

  const second = await startDaemon(storageFlags, { dir: first.dir });
  try {
    const phoneAgain = await connected(second.clientPort, "bea", "phone");
    const tabletAgain = await connected(second.clientPort, "bea", "tablet");
    assert.deepEqual(await seqs(phoneAgain), [5]);
    assert.deepEqual(await seqs(tabletAgain), [3, 4, 5]);
    // Nothing acknowledged is lost, and s goes on past it.
    await publish(second, "to=bea", "m6");
    assert.deepEqual(await seqs(phoneAgain), [6]);
    phoneAgain.close();
    tabletAgain.close();
  } finally {
    assert.equal(await second.stop(), 0);
  }
}
