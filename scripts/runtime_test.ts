import assert from "node:assert/strict";
import { DAEMON_ENV, DAEMON_V8_FLAGS } from "./runtime.ts";

Deno.test("deno task start runs the daemon with DAEMON_V8_FLAGS and DAEMON_ENV", async () => {
  const config = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
  const start: string = config.tasks.start;
  const env = Object.entries(DAEMON_ENV).map(([name, value]) => `${name}=${value} `).join("");
  assert.ok(start.startsWith(env), `the start task sets ${env.trim()}`);
  assert.ok(start.split(" ").includes(DAEMON_V8_FLAGS), `the start task passes ${DAEMON_V8_FLAGS}`);
});
