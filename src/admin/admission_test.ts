import assert from "node:assert/strict";
import { Admission, INTERVAL_MS, MIN_QUEUE } from "./admission.ts";

const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Refusing: this interval's one probe goes through, the request after it does not. */
const refusing = (admission: Admission) => admission.admit() && !admission.admit();

Deno.test("Admission: past the in-flight limit, new work waits for old work to finish", () => {
  const admission = new Admission({ targetMs: 10_000, maxInFlight: 100 });
  assert.ok(admission.admit());
  const big = admission.start();
  big.add(60);
  assert.ok(admission.admit());
  const more = admission.start();
  more.add(40);
  assert.equal(admission.inFlight, 100);
  assert.equal(admission.admit(), false);
  big.done();
  assert.equal(admission.inFlight, 40);
  assert.ok(admission.admit());
  more.done();
  assert.equal(admission.inFlight, 0);
});

Deno.test("Admission: refuses while even the fastest answers take longer than the target", async () => {
  const admission = new Admission({ targetMs: 20, maxInFlight: 1_000_000 });
  // An interval whose every answer is slow: a standing queue.
  const slow = [admission.start(), admission.start()];
  await wait(40);
  for (const request of slow) request.done();
  await wait(INTERVAL_MS);
  assert.ok(refusing(admission), "refused after an interval of slow answers");
  // One fast answer in the next interval is enough to let work in again.
  const fast = admission.start();
  fast.done();
  await wait(INTERVAL_MS);
  assert.ok(admission.admit(), "admitted after an interval with a fast answer");
});

Deno.test("Admission: an interval with work under way and nothing answered is a stall", async () => {
  const admission = new Admission({ targetMs: 20, maxInFlight: 1_000_000 });
  const stuck = admission.start();
  stuck.add(1);
  await wait(INTERVAL_MS + 30);
  assert.ok(refusing(admission));
  stuck.done();
  // Its interval's one answer was slow: still refused. The interval after, idle, lets work in.
  await wait(INTERVAL_MS);
  assert.ok(refusing(admission));
  await wait(INTERVAL_MS);
  assert.ok(admission.admit(), "admitted once the queue has drained");
});

Deno.test("Admission: an overload stands for a whole target, answered or not", async () => {
  // A target above the 100 ms interval: the verdict holds at least that long, so an interval
  // that ends before the slow work is answered does not let a burst in.
  const admission = new Admission({ targetMs: 250, maxInFlight: 1_000_000 });
  const slow = admission.start();
  slow.add(1);
  const slower = admission.start();
  slower.add(1);
  await wait(300);
  slow.done();
  assert.ok(refusing(admission), "the fastest answer took 300 ms");
  await wait(INTERVAL_MS + 20);
  assert.equal(admission.admit(), false, "100 ms later, with nothing answered since");
  await wait(250);
  assert.ok(refusing(admission), "a target with work in flight and no answer: a stall");
  slower.done();
  await wait(250);
  assert.ok(refusing(admission), "its one answer was slow");
  await wait(250);
  assert.ok(admission.admit(), "admitted once nothing is in flight");
});

Deno.test("Admission: work stuck for good does not refuse for good: a probe's fast answer ends it", async () => {
  const admission = new Admission({ targetMs: 20, maxInFlight: 1_000_000 });
  admission.start().add(1); // never answered
  await wait(INTERVAL_MS + 30);
  assert.ok(admission.admit(), "the interval's probe");
  const probe = admission.start();
  assert.equal(admission.admit(), false, "only one");
  probe.done();
  await wait(INTERVAL_MS);
  assert.ok(
    admission.admit() && admission.admit(),
    "admitted again, the stuck work still in flight",
  );
});

Deno.test("Admission: work past twice the target at the last interval's answer rate waits", async () => {
  const admission = new Admission({ targetMs: 20, maxInFlight: 1_000_000 });
  // 100,000 messages answered fast in an interval of at least 100 ms: at most 1,000 a ms, so
  // the queue that drains in 2 x 20 ms is at most 40,000 messages.
  const answered = admission.start();
  answered.add(100_000);
  answered.done();
  await wait(INTERVAL_MS);
  assert.ok(admission.admit());
  admission.start().add(12_000);
  assert.ok(admission.admit(), "12,000 in flight drain within the bound");
  admission.start().add(40_000);
  assert.ok(refusing(admission), "52,000 do not: one probe, then refused");
});

Deno.test("Admission: after a trickle the queue bound is never below MIN_QUEUE", async () => {
  const admission = new Admission({ targetMs: 20, maxInFlight: 1_000_000 });
  const one = admission.start();
  one.add(1);
  one.done();
  await wait(INTERVAL_MS);
  assert.ok(admission.admit());
  admission.start().add(MIN_QUEUE - 1);
  assert.ok(admission.admit(), "a burst after quiet is let in");
  admission.start().add(1);
  assert.ok(refusing(admission), "up to MIN_QUEUE");
});
