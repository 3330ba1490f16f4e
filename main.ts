/**
 * ipush: parses the flags, claims the pid file, starts a node and drains it on SIGTERM or
 * SIGINT (src/node/node.ts says in which order, and why).
 *
 * Run: `deno task start --flagfile=conf/default.conf`. Stop: `kill $(cat ipush_server.pid)`.
 *
 * @module
 */

import { topology } from "./src/cluster/topology.ts";
import { type Config, helpText, parseFlags } from "./src/config/flags.ts";
import { FlagError } from "./src/core/flag_spec.ts";
import { createLog } from "./src/core/log.ts";
import { createAuthenticator } from "./src/auth/registry.ts";
import { startNode } from "./src/node/node.ts";

async function main(args: string[]): Promise<number> {
  let config: Config;
  try {
    const parsed = parseFlags(args);
    if (parsed.help) {
      console.log(helpText());
      return 0;
    }
    config = parsed.config;
  } catch (error) {
    if (!(error instanceof FlagError)) throw error;
    console.error(`ipush: ${error.message} (see --help)`);
    return 2;
  }
  const log = createLog({
    component: "main",
    node: config.node_id,
    threshold: config.log_level,
    format: config.log_format,
  });
  // Listen for signals first: a stop that arrives during start-up still drains.
  const { promise: stop, resolve } = Promise.withResolvers<string>();
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    Deno.addSignalListener(signal, () => resolve(signal));
  }
  let shape;
  try {
    shape = topology(config);
    claimPidFile(config.pid_file);
  } catch (error) {
    log("error", (error as Error).message);
    return 1;
  }
  try {
    // Fail now, not in every worker, on a bad users file, backend URL or key.
    await createAuthenticator(config);
    const node = await startNode(config, shape, log);
    log(
      "info",
      `pid ${Deno.pid}: clients on ${config.host}:${node.clientPort}, admin on ` +
        `${config.admin_host}:${node.adminPort}, shards on ports ${node.shardPorts.join(",")}`,
    );
    log("info", `${await stop}: draining`);
    // Whatever hangs (a store or peer that never answers), the process ends in bounded time.
    const deadline = setTimeout(() => {
      log("error", `not drained after --drain_timeout_sec=${config.drain_timeout_sec}: exiting`);
      removePidFile(config.pid_file);
      Deno.exit(1);
    }, config.drain_timeout_sec * 1000);
    await node.drain();
    clearTimeout(deadline);
    log("info", "stopped");
    return 0;
  } catch (error) {
    log("error", (error as Error).message);
    return 1;
  } finally {
    removePidFile(config.pid_file);
  }
}

/** Writes the pid file, refusing while a live process holds it. */
function claimPidFile(path: string): void {
  let held: string | null = null;
  try {
    held = Deno.readTextFileSync(path).trim();
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  if (held && /^\d+$/.test(held) && isAlive(Number(held))) {
    throw new Error(`${path} names pid ${held}, which is running: another ipush is up`);
  }
  Deno.writeTextFileSync(path, `${Deno.pid}\n`);
}

function isAlive(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

function removePidFile(path: string): void {
  try {
    if (Deno.readTextFileSync(path).trim() === String(Deno.pid)) Deno.removeSync(path);
  } catch {
    // Already gone: nothing to undo.
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
