/**
 * Starts a local cluster for trying it out: a Redis, then one daemon per node that
 * `--cluster_nodes` in the flagfile lists, each with its own pid file and data directory
 * under `data/cluster/<node>`. Ctrl-C stops them all.
 *
 * `deno task cluster` (flagfile `conf/cluster.conf`), or
 * `deno run -A scripts/cluster.ts --flagfile=PATH`.
 *
 * @module
 */

import { parseFlags } from "../src/config/flags.ts";
import { startRedis } from "./redis.ts";
import { DAEMON_ENV, DAEMON_V8_FLAGS } from "./runtime.ts";

const flagfileArg = Deno.args.find((arg) => arg.startsWith("--flagfile=")) ??
  "--flagfile=conf/cluster.conf";
const parsed = parseFlags([flagfileArg]);
if (parsed.help || parsed.config.cluster_nodes === "") {
  console.error(`${flagfileArg} names no --cluster_nodes`);
  Deno.exit(2);
}
const ids = parsed.config.cluster_nodes.split(",").map((entry) => entry.split("=")[0].trim());
const redis = await startRedis();
console.log(`redis at ${redis.url}`);
const nodes = ids.map((id) => {
  const dir = `data/cluster/${id}`;
  Deno.mkdirSync(dir, { recursive: true });
  return new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      DAEMON_V8_FLAGS,
      "--allow-all",
      "main.ts",
      flagfileArg,
      `--node_id=${id}`,
      `--redis_url=${redis.url}`,
      `--pid_file=${dir}/ipush_server.pid`,
      `--data_dir=${dir}`,
    ],
    env: DAEMON_ENV,
    stdin: "null",
  }).spawn();
});
console.log(`started ${ids.join(", ")}; Ctrl-C stops the cluster`);

const stop = async () => {
  for (const node of nodes) {
    try {
      node.kill("SIGTERM");
    } catch { /* already gone */ }
  }
  await Promise.all(nodes.map((node) => node.status));
  await redis.stop();
  Deno.exit(0);
};
Deno.addSignalListener("SIGINT", stop);
Deno.addSignalListener("SIGTERM", stop);
