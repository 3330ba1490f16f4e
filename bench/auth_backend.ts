/**
 * A stand-in auth backend for `--auth=http` load runs: answers `allow` to every `/user` and
 * `/channel` question, and counts them (printed every second while they come).
 *
 * ```sh
 * deno run -A bench/auth_backend.ts --port=29090   # then the daemon: --auth=http
 *                                                  #   --auth_http_url=http://127.0.0.1:29090/auth
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";

const { values } = parseArgs({ args: Deno.args, options: { port: { type: "string" } } });
let asked = 0;
let reported = 0;
Deno.serve({ hostname: "127.0.0.1", port: Number(values.port ?? "29090") }, () => {
  asked++;
  return new Response("allow");
});
setInterval(() => {
  if (asked === reported) return;
  reported = asked;
  console.error(`auth backend: ${asked} questions`);
}, 1000);
