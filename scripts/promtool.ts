/**
 * Prometheus' own checker of the text format, for the metrics tests: `promtool` from Debian's
 * `prometheus` package, installed with apt-get when it is not on PATH.
 *
 * ```ts
 * const { ok, output } = await checkMetrics(await (await fetch(".../metrics")).text());
 * ```
 *
 * @module
 */

import { aptInstall, onPath } from "./local_server.ts";

/** Installs Debian's `prometheus` (which has `promtool`) unless `promtool` is on PATH. */
export async function ensurePromtool(): Promise<void> {
  if (!await onPath("promtool")) await aptInstall("prometheus");
}

/**
 * `promtool check metrics` on an exposition: `ok` when it exits 0, `output` what it said (the
 * format errors and lint problems, one a line; empty for a clean exposition).
 */
export async function checkMetrics(text: string): Promise<{ ok: boolean; output: string }> {
  await ensurePromtool();
  const child = new Deno.Command("promtool", {
    args: ["check", "metrics"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const { success, stdout, stderr } = await child.output();
  const decoder = new TextDecoder();
  return { ok: success, output: (decoder.decode(stdout) + decoder.decode(stderr)).trim() };
}
