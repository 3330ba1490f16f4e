/**
 * Runs `bench/floor.ts` small, end to end: both modes report their figures, and a bad option is
 * refused with the usage.
 *
 * @module
 */

import assert from "node:assert/strict";

const FLOOR = new URL("./floor.ts", import.meta.url).pathname;

/** Runs the script; returns its exit code and its last stdout line parsed as JSON. */
async function floor(
  ...args: string[]
): Promise<{ code: number; result: Record<string, unknown> }> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", FLOOR, ...args],
  }).output();
  const lines = new TextDecoder().decode(stdout).trim().split("\n");
  if (code !== 0) return { code, result: { stderr: new TextDecoder().decode(stderr) } };
  return { code, result: JSON.parse(lines.at(-1)!) };
}

Deno.test("floor idle: reports the server's RSS per held connection", async () => {
  const { code, result } = await floor(
    "idle",
    "--connections=300",
    "--hold_sec=1",
    "--exchange",
    "--trim",
  );
  assert.equal(code, 0, String(result.stderr));
  assert.equal(result.connections, 300);
  assert.equal(result.exchange, true);
  assert.equal(result.trim, true);
  assert.ok((result.rss_held_kb as number) > (result.rss_before_kb as number) / 2);
  assert.equal(typeof result.kb_per_connection, "number");
});

Deno.test("floor fanout: every round reaches every subscriber, with acks", async () => {
  const { code, result } = await floor("fanout", "--subscribers=300", "--rounds=2", "--ack");
  assert.equal(code, 0, String(result.stderr));
  const rounds = result.per_round as { time_to_all_ms: number; write_loop_ms: number[] }[];
  assert.equal(rounds.length, 2);
  for (const round of rounds) {
    assert.ok(round.time_to_all_ms > 0);
    assert.equal(round.write_loop_ms.length, 2, "one write loop per worker");
  }
});

Deno.test("floor: an unknown mode or a bad value exits 64 with the usage", async () => {
  for (const args of [["sideways"], ["idle", "--connections=-3"], ["fanout", "--nope"]]) {
    const { code, result } = await floor(...args);
    assert.equal(code, 64, args.join(" "));
    assert.match(String(result.stderr), /usage:/);
  }
});
