/**
 * Load generator for ipush: raw-protocol clients spread over several processes and source
 * addresses, a back end publishing over the admin API, and per-scenario measurements.
 *
 *     deno task load -- <idle|unicast|chat|fanout|storm> [--name=value ...]
 *     deno task load -- --help
 *
 * Only loopback targets are accepted. Each run ends by itself (phase bounds plus a hard
 * `--timeout_sec`), prints a progress line per second and a final table, and writes its
 * result JSON under `bench/results/` (or `--out`).
 *
 * @module
 */

import { helpText, type LoadOptions, parseOptions } from "./load/flags.ts";
import { defaultOutPath, writeResult } from "./load/report.ts";
import { Run } from "./load/scenarios.ts";

/** Writes the result and the table; returns the exit code. */
async function conclude(run: Run, status: string, out: string): Promise<number> {
  const result = await run.finish(status);
  writeResult(out, result);
  console.log("\n" + run.summaryTable(result));
  const reasons = Object.entries(result.reasons);
  if (reasons.length > 0) {
    console.log("failure / drop reasons:");
    for (const [reason, n] of reasons.slice(0, 10)) console.log(`  ${n}\t${reason}`);
  }
  console.log(`result: ${out}`);
  return status === "ok" ? 0 : status === "timeout" ? 2 : 1;
}

async function main(args: string[]): Promise<number> {
  let o: LoadOptions | "help";
  try {
    o = parseOptions(args);
  } catch (e) {
    console.error(`load: ${(e as Error).message}\n\n${helpText()}`);
    return 64;
  }
  if (o === "help") {
    console.log(helpText());
    return 0;
  }
  const run = new Run(o);
  const out = o.out ?? defaultOutPath(o.scenario, run.startedAt);
  let stopping = false;
  // The hard limit and Ctrl-C both end the run where it stands, keeping what was measured.
  const stop = async (status: string, code: number) => {
    if (stopping) return;
    stopping = true;
    console.error(`load: ${status}`);
    run.swarm?.kill();
    await conclude(run, status, out).catch(() => {});
    Deno.exit(code);
  };
  const hardLimit = setTimeout(() => stop("timeout", 2), o.timeoutSec * 1000);
  Deno.addSignalListener("SIGINT", () => stop("interrupted", 130));
  let status = "ok";
  try {
    await run.execute();
  } catch (e) {
    status = `error: ${(e as Error).message}`;
  }
  // stop() is concluding and will exit the process itself.
  if (stopping) return await new Promise<number>(() => {});
  stopping = true;
  clearTimeout(hardLimit);
  if (status !== "ok") console.error(`load: ${status}`);
  return await conclude(run, status, out);
}

if (import.meta.main) {
  // `deno task load -- x` hands the `--` on to the script.
  const args = Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args;
  Deno.exit(await main(args));
}
