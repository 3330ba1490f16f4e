/**
 * Load generator for ipush: raw-protocol clients spread over several processes and source
 * addresses, a back end publishing over the admin API, and per-scenario measurements.
 *
 *     deno task load -- <idle|unicast|chat|fanout|storm> [--name=value ...]
 *     deno task load -- --help
 *
 * `--target=nchan` measures the peer instead, the same way (idle, storm, unicast, fanout): with
 * `--url` a running nchan, else one started with `scripts/nchan.ts` for the run and stopped
 * after it.
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
import { type NchanHandle, startNchan } from "../scripts/nchan.ts";

/** Starts the nchan a run without `--url` measures, and points the options at it. */
async function startPeer(o: LoadOptions): Promise<NchanHandle> {
  const nchan = await startNchan();
  o.url = nchan.url;
  o.host = o.adminHost = "127.0.0.1";
  o.clientPorts = [nchan.port];
  o.adminPort = nchan.port;
  // The worker serves the subscribers and holds their memory; the master only watches it.
  o.serverPid ??= await nchan.workerPid();
  return nchan;
}

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
  let peer: NchanHandle | null = null;
  if (o.target === "nchan" && o.url === null) {
    try {
      peer = await startPeer(o);
    } catch (e) {
      console.error(`load: nchan did not start: ${(e as Error).message}`);
      return 1;
    }
  }
  const run = new Run(o);
  const out = o.out ??
    defaultOutPath(`${o.target === "ipush" ? "" : `${o.target}-`}${o.scenario}`, run.startedAt);
  let stopping = false;
  // The hard limit and Ctrl-C both end the run where it stands, keeping what was measured.
  const stop = async (status: string, code: number) => {
    if (stopping) return;
    stopping = true;
    console.error(`load: ${status}`);
    run.swarm?.kill();
    await conclude(run, status, out).catch(() => {});
    await peer?.stop();
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
  try {
    return await conclude(run, status, out);
  } finally {
    await peer?.stop();
  }
}

if (import.meta.main) {
  // `deno task load -- x` hands the `--` on to the script.
  const args = Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args;
  Deno.exit(await main(args));
}
