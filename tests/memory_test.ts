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
    // The first round grows the heap to what such a burst needs; three more rounds of as
    // many new channels each must not grow it again. Kept, a channel cost ~700 bytes a shard:
    // ~420 MB over the three rounds, against the ±60 MB that collection timing moves RSS by.
    await spam(client, "round-1", 100_000);
    const first = memory(daemon.pid);
    for (let round = 2; round <= 4; round++) await spam(client, `round-${round}`, 100_000);
    const last = memory(daemon.pid);
    const growth = last.rss - first.rss;
    console.log(
      `memory: RSS ${first.rss.toFixed(0)} MB after the first 100,000 channels, ` +
        `${last.rss.toFixed(0)} MB after 400,000 (peak ${last.peak.toFixed(0)} MB)`,
    );
    assert.ok(
      growth < 140,
      `RSS grew ${growth.toFixed(0)} MB more with 300,000 more channels (${
        first.rss.toFixed(0)
      } → ${last.rss.toFixed(0)} MB)`,
    );
  } finally {
    client.close();
    await daemon.stop();
  }
});
