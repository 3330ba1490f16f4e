/**
 * End to end: every device of a user gets every message from its own cursor (PROTOCOL.md §7),
 * on the embedded store and the memory store (Cassandra: `storage_cassandra_test.ts`).
 */

import { devicesSurviveKill, phoneAndTablet } from "./devices.ts";

Deno.test("devices, sqlite: the tablet gets what the phone acked; a quiet device stops holding back", async () => {
  await phoneAndTablet(["--storage=sqlite"]);
});

Deno.test("devices, memory: the tablet gets what the phone acked; a quiet device stops holding back", async () => {
  await phoneAndTablet(["--storage=memory"]);
});

Deno.test("devices, sqlite: after kill -9 each device replays from its own cursor", async () => {
  await devicesSurviveKill(["--storage=sqlite"]);
});
