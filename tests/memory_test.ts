/**
 * End to end: what one client sends cannot grow the daemon without bound. Channel messages
 * to channels nobody joined leave no state behind beyond the bounded member cache, and a
 * burst of them is read no faster than the shard handles it.
 */

import assert from "node:assert/strict";
import { connected, frame, type RawClient, settle } from "./client.ts";
import { delay, startDaemon } from "./harness.ts";

/** The daemon's resident and peak resident memory, in MB. */
function memory(pid: number): { rss: number; peak: number } {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)![1]);
  return { rss: kb("VmRSS") / 1024, peak: kb("VmHWM") / 1024 };
}

/** Writes `count` channel messages to channels named `prefix-N` nobody joined, in bursts. */
async function spam(client: RawClient, prefix: string, count: number): Promise<void> {
  for (let i = 0; i < count; i += 1000) {
    let burst = "";
    for (let k = i; k < i + 1000; k++) burst += frame(`{"y":4,"c":"${prefix}-${k}","b":${k}}`);
    await client.writeRaw(burst);
  }
  // Every frame was handled once the heartbeat that follows them is answered.
  assert.deepEqual(await settle(client), []);
  await delay(3000); // the memory reducer runs a second after the burst
}

Deno.test("memory: channel messages to channels nobody joined leave nothing behind", async () => {
  const daemon = await startDaemon([
    "--storage=memory",
    "--channel_cache_size=1000",
    // What is measured is the memory 200,000 frames leave, not the rate limit they would meet.
    "--client_msg_rate=1000000",
    "--client_msg_burst=1000000",
  ]);
  const client = await connected(daemon.clientPort, "spammer");
  try {
    await delay(1500); // past start-up's own peak
    // The first round grows the heap to what such a burst needs; a second round of as many
    // new channels must not grow it again (kept, each channel cost ~700 bytes a shard).
    await spam(client, "first", 100_000);
    const first = memory(daemon.pid);
    await spam(client, "second", 100_000);
    const second = memory(daemon.pid);
    const growth = second.rss - first.rss;
    assert.ok(
      growth < 80,
      `RSS grew ${growth.toFixed(0)} MB more with 100,000 more channels (${
        first.rss.toFixed(0)
      } → ${second.rss.toFixed(0)} MB)`,
    );
  } finally {
    client.close();
    await daemon.stop();
  }
});
