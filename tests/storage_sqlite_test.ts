/**
 * End to end: the embedded durable store (the default) survives `kill -9`.
 */

import { killTest } from "./durability.ts";

Deno.test("sqlite: every /pub answered ok survives kill -9 with its s; s keeps rising", async () => {
  await killTest(["--storage=sqlite"]);
});
