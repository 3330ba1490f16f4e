/**
 * A real single-node Cassandra 5.0 on loopback, for tests and local runs.
 *
 * The server comes from Maven Central: `scripts/cassandra/pom.xml` resolves `cassandra-all`
 * and its runtime dependencies with the machine's `mvn` into `.cache/cassandra/<version>/lib`
 * (once per version; later starts do not touch Maven). The node runs
 * `org.apache.cassandra.service.CassandraDaemon` on the machine's Java 17 with a small heap,
 * on free ports, with its config, data and log (`cassandra.log`) in a fresh temp directory.
 *
 * ```ts
 * const node = await startCassandra();
 * const client = new cassandra.Client({
 *   contactPoints: [node.contactPoint],
 *   localDataCenter: node.localDataCenter,
 * });
 * // ... an outage: the same node goes away and comes back on the same ports and data
 * await node.pause();
 * await node.resume();
 * // ...
 * await node.stop(); // kills the JVM and deletes the data
 * ```
 *
 * The JVM does not outlive the process that started it: it runs under a small shell that
 * holds a pipe from this process and kills the JVM when the pipe closes, which the kernel
 * does also when this process dies of SIGKILL.
 *
 * CLI, for running the daemon by hand against a node that outlives the command:
 *
 * ```sh
 * deno run -A scripts/cassandra.ts start    # prints the contact point; idempotent
 * deno run -A scripts/cassandra.ts status   # exit code 0 when the node answers CQL
 * deno run -A scripts/cassandra.ts stop     # kills it and deletes its data
 * ```
 *
 * @module
 */

import cassandra from "cassandra-driver";
import {
  exists,
  freePorts,
  readState,
  runCli,
  spawnWatched,
  tail,
  type WatchedProcess,
} from "./local_server.ts";

/** A running (or paused) test node. */
export interface CassandraHandle {
  host: string;
  /** CQL native transport port. */
  port: number;
  /** `host:port`, as `cassandra-driver` takes it in `contactPoints`. */
  contactPoint: string;
  /** The data center to give the driver (`SimpleSnitch` puts the node in `datacenter1`). */
  localDataCenter: string;
  /** Kills the JVM, waits for it and deletes the node's directory. Idempotent. */
  stop(): Promise<void>;
  /**
   * Shuts the JVM down gracefully (SIGTERM: Cassandra drains), keeping its data and ports, so
   * that {@linkcode CassandraHandle.resume} brings the same node back. Clients see an outage.
   */
  pause(): Promise<void>;
  /** Starts the paused node again on the same ports and data; resolves once CQL answers. */
  resume(): Promise<void>;
}

/** Options of {@linkcode startCassandra}. */
export interface StartOptions {
  /** Receives progress lines (Maven resolution, start times); silent by default. */
  log?: (line: string) => void;
}

const VERSION = "5.0.9";
const HOST = "127.0.0.1";
const LOCAL_DATA_CENTER = "datacenter1";
const NODE_DIR_PREFIX = "ipush-cassandra-";
const START_TIMEOUT_MS = 180_000;
const STOP_TIMEOUT_MS = 60_000;

const SCRIPTS = decodeURIComponent(new URL(".", import.meta.url).pathname);
const SUPPORT = `${SCRIPTS}cassandra`;
const CACHE = decodeURIComponent(new URL("../.cache/cassandra", import.meta.url).pathname);
const CLI_STATE = `${CACHE}/cli-node.json`;

/** Starts a fresh node; resolves once it answers CQL. */
export async function startCassandra(options: StartOptions = {}): Promise<CassandraHandle> {
  const log = options.log ?? (() => {});
  const node = await prepareNode(log);
  const jvm = new NodeProcess(node);
  try {
    await jvm.start(log);
  } catch (error) {
    await jvm.kill();
    await Deno.remove(node.dir, { recursive: true });
    throw error;
  }
  return {
    host: HOST,
    port: node.nativePort,
    contactPoint: `${HOST}:${node.nativePort}`,
    localDataCenter: LOCAL_DATA_CENTER,
    async stop() {
      await jvm.kill();
      await Deno.remove(node.dir, { recursive: true }).catch((error) => {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      });
    },
    pause: () => jvm.shutDown(),
    resume: () => jvm.start(log),
  };
}

/** Where a node lives and how its JVM is launched. */
interface Node {
  dir: string;
  nativePort: number;
  storagePort: number;
  /** The `java` command line. */
  command: string[];
}

/**
 * Resolves Cassandra, picks ports and writes the node's config into a new temp dir, whose
 * `owner` file holds the pid of the process the node lives and dies with.
 */
async function prepareNode(log: (line: string) => void): Promise<Node> {
  const lib = await resolveCassandra(log);
  await removeOrphans();
  const [nativePort, storagePort] = freePorts(2);
  const dir = await Deno.makeTempDir({ prefix: NODE_DIR_PREFIX });
  await Deno.writeTextFile(`${dir}/owner`, String(Deno.pid));
  const template = await Deno.readTextFile(`${SUPPORT}/cassandra.yaml`);
  const config = template
    .replaceAll("__DIR__", dir)
    .replaceAll("__CLUSTER_NAME__", `ipush-test-${nativePort}`)
    .replaceAll("__STORAGE_PORT__", String(storagePort))
    .replaceAll("__NATIVE_PORT__", String(nativePort));
  await Deno.writeTextFile(`${dir}/cassandra.yaml`, config);
  return { dir, nativePort, storagePort, command: await javaCommand(lib, dir) };
}

/**
 * Deletes the directories of nodes whose owner died without stopping them (SIGKILL, ^C): their
 * JVMs are gone with the owner, their data is of no use to anyone.
 */
async function removeOrphans(): Promise<void> {
  const temp = Deno.env.get("TMPDIR") ?? "/tmp";
  for await (const entry of Deno.readDir(temp)) {
    if (!entry.isDirectory || !entry.name.startsWith(NODE_DIR_PREFIX)) continue;
    const dir = `${temp}/${entry.name}`;
    const owner = await Deno.readTextFile(`${dir}/owner`).catch(() => "");
    // No owner file yet: a node being prepared right now by someone else.
    if (owner && !(await exists(`/proc/${owner.trim()}`))) {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  }
}

/**
 * The jar directory of {@linkcode VERSION}, resolved with Maven on first use. Maven writes
 * into a private directory that is renamed into place at the end, so an interrupted or
 * concurrent resolution never leaves a half-filled cache behind.
 */
async function resolveCassandra(log: (line: string) => void): Promise<string> {
  const home = `${CACHE}/${VERSION}`;
  if (await exists(`${home}/lib/cassandra-all-${VERSION}.jar`)) return `${home}/lib`;
  log(`resolving Cassandra ${VERSION} with Maven into ${home}`);
  const began = performance.now();
  await Deno.mkdir(CACHE, { recursive: true });
  const partial = await Deno.makeTempDir({ dir: CACHE, prefix: `${VERSION}.partial-` });
  const maven = await new Deno.Command("mvn", {
    args: [
      "--batch-mode",
      "--quiet",
      "--file",
      `${SUPPORT}/pom.xml`,
      `-Dcassandra.version=${VERSION}`,
      `-Dlib.dir=${partial}/lib`,
      "dependency:copy-dependencies",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!maven.success) {
    await Deno.remove(partial, { recursive: true });
    const output = new TextDecoder().decode(maven.stdout) + new TextDecoder().decode(maven.stderr);
    throw new Error(`mvn could not resolve Cassandra ${VERSION}:\n${tail(output, 40)}`);
  }
  try {
    await Deno.rename(partial, home);
  } catch (error) {
    // Another process finished first; its copy is as good as ours.
    await Deno.remove(partial, { recursive: true });
    if (!(await exists(`${home}/lib/cassandra-all-${VERSION}.jar`))) throw error;
  }
  log(`resolved Cassandra ${VERSION} in ${seconds(began)}`);
  return `${home}/lib`;
}

/** The JVM command line; the options follow Cassandra 5.0's jvm17-server.options. */
async function javaCommand(lib: string, dir: string): Promise<string[]> {
  let jamm: string | undefined;
  for await (const entry of Deno.readDir(lib)) {
    if (/^jamm-.*\.jar$/.test(entry.name)) jamm = `${lib}/${entry.name}`;
  }
  if (!jamm) throw new Error(`no jamm jar in ${lib}`);
  return [
    "java",
    // A small initial heap: Cassandra mlockall()s the committed heap at start (as root), which
    // costs about a second per 512 MB.
    "-Xms64m",
    "-Xmx512m",
    "-Xss256k",
    "-XX:+UseG1GC",
    "-XX:+ExitOnOutOfMemoryError",
    // Cassandra measures object sizes with jamm, which must be an agent.
    `-javaagent:${jamm}`,
    "-Djava.net.preferIPv4Stack=true",
    "-Djdk.attach.allowAttachSelf=true",
    ...[
      "java.base/jdk.internal.misc",
      "java.management.rmi/com.sun.jmx.remote.internal.rmi",
      "java.rmi/sun.rmi.registry",
      "java.rmi/sun.rmi.server",
      "java.sql/java.sql",
      "java.base/java.lang.ref",
      "jdk.unsupported/sun.misc",
      "jdk.compiler/com.sun.tools.javac.file",
      "jdk.attach/sun.tools.attach",
    ].map((name) => `--add-exports=${name}=ALL-UNNAMED`),
    ...[
      "java.base/java.lang.module",
      "java.base/jdk.internal.loader",
      "java.base/jdk.internal.ref",
      "java.base/jdk.internal.reflect",
      "java.base/jdk.internal.math",
      "java.base/jdk.internal.module",
      "java.base/jdk.internal.util.jar",
      "jdk.management/com.sun.management.internal",
      "java.base/sun.nio.ch",
      "java.base/java.io",
      "java.base/java.lang.reflect",
      "jdk.compiler/com.sun.tools.javac",
      "java.base/java.lang",
      "java.base/java.util",
    ].map((name) => `--add-opens=${name}=ALL-UNNAMED`),
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dio.netty.allocator.useCacheForAllThreads=true",
    "-Dio.netty.allocator.maxOrder=11",
    "-Dcassandra-foreground=yes",
    `-Dcassandra.config=file://${dir}/cassandra.yaml`,
    `-Dcassandra.storagedir=${dir}`,
    `-Dcassandra.logdir=${dir}`,
    `-Dlogback.configurationFile=${SUPPORT}/logback.xml`,
    `-Djava.io.tmpdir=${dir}`,
    // A single test node: nothing to gossip with, and nothing worth an fsync.
    "-Dcassandra.skip_wait_for_gossip_to_settle=0",
    "-Dcassandra.ring_delay_ms=1000",
    "-Dcassandra.shutdown_announce_in_ms=0",
    "-Dcassandra.skip_sync=true",
    // A rougher estimate of memtable row overhead saves most of a second at start.
    "-Dcassandra.memtable_row_overhead_computation_step=100",
    "-Dcassandra.unsafesystem=true",
    "-Dcassandra.test.flush_local_schema_changes=false",
    "-cp",
    `${lib}/*`,
    "org.apache.cassandra.service.CassandraDaemon",
  ];
}

/** One node's JVM across pauses: at most one process at a time. */
class NodeProcess {
  #node: Node;
  #jvm?: WatchedProcess;
  #exited = false;

  constructor(node: Node) {
    this.#node = node;
  }

  /** Launches the JVM and waits for CQL; throws with the log's tail if it never answers. */
  async start(log: (line: string) => void): Promise<void> {
    if (this.#jvm && !this.#exited) throw new Error("Cassandra is already running");
    // A JVM that died on its own (a crash) is replaced, on the same ports and data.
    await this.kill();
    const began = performance.now();
    const jvm = spawnWatched(this.#node.command, { logFile: `${this.#node.dir}/cassandra.log` });
    this.#jvm = jvm;
    this.#exited = false;
    jvm.status.then(() => {
      if (this.#jvm === jvm) this.#exited = true;
    });
    await waitForCql(this.#node, jvm.status);
    log(
      `Cassandra ${VERSION} answers CQL on ${HOST}:${this.#node.nativePort} after ${
        seconds(began)
      }`,
    );
  }

  /** Graceful shutdown (SIGTERM), escalating to SIGKILL after {@linkcode STOP_TIMEOUT_MS}. */
  async shutDown(): Promise<void> {
    const jvm = this.#jvm;
    if (!jvm) return;
    await jvm.signal("SIGTERM");
    const timer = setTimeout(() => jvm.kill(), STOP_TIMEOUT_MS);
    await jvm.status;
    clearTimeout(timer);
    await this.kill();
  }

  /** SIGKILL, and wait for the JVM to be gone. */
  async kill(): Promise<void> {
    await this.#jvm?.kill();
    this.#jvm = undefined;
  }
}

/** Polls until the node answers `SELECT release_version FROM system.local`. */
async function waitForCql(node: Node, exited: Promise<Deno.CommandStatus>): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  let status: Deno.CommandStatus | undefined;
  exited.then((s) => status = s);
  let lastError: unknown;
  while (Date.now() < deadline) {
    if (status) {
      throw new Error(
        `Cassandra exited with code ${status.code} before answering CQL; ${await logTail(node)}`,
      );
    }
    // The native transport starts last, so a refused connection is the common case: check
    // the port cheaply before paying for a driver connection.
    if (await accepts(node.nativePort)) {
      try {
        await query(node.nativePort, "SELECT release_version FROM system.local");
        return;
      } catch (error) {
        lastError = error;
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(
    `Cassandra did not answer CQL on ${HOST}:${node.nativePort} within ${
      START_TIMEOUT_MS / 1000
    } s (last error: ${lastError}); ${await logTail(node)}`,
  );
}

async function accepts(port: number): Promise<boolean> {
  try {
    (await Deno.connect({ hostname: HOST, port })).close();
    return true;
  } catch {
    return false;
  }
}

async function query(port: number, cql: string): Promise<cassandra.types.ResultSet> {
  const client = new cassandra.Client({
    contactPoints: [`${HOST}:${port}`],
    localDataCenter: LOCAL_DATA_CENTER,
  });
  try {
    return await client.execute(cql);
  } finally {
    await client.shutdown();
  }
}

async function logTail(node: Node): Promise<string> {
  const file = `${node.dir}/cassandra.log`;
  try {
    return `last lines of ${file}:\n${tail(await Deno.readTextFile(file), 40)}`;
  } catch {
    return `no log at ${file}`;
  }
}

function seconds(since: number): string {
  return `${((performance.now() - since) / 1000).toFixed(1)} s`;
}

// ---------------------------------------------------------------------------------------------
// CLI: a node that outlives the command, tracked in .cache/cassandra/cli-node.json.

interface CliState {
  pid: number;
  dir: string;
  contactPoint: string;
}

async function cliStart(): Promise<void> {
  const running = await cliRunning();
  if (running) {
    console.log(running.contactPoint);
    return;
  }
  const log = (line: string) => console.error(line);
  const node = await prepareNode(log);
  const began = performance.now();
  // setsid (which execs, keeping the pid) takes the node out of this terminal's session, so it
  // survives the command and ^C; sh only redirects the log and execs the JVM.
  const child = new Deno.Command("setsid", {
    args: ["sh", "-c", 'exec "$@" >"$0" 2>&1', `${node.dir}/cassandra.log`, ...node.command],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  child.unref();
  const state: CliState = {
    pid: child.pid,
    dir: node.dir,
    contactPoint: `${HOST}:${node.nativePort}`,
  };
  // The node outlives this command, so it owns its directory itself.
  await Deno.writeTextFile(`${node.dir}/owner`, String(child.pid));
  try {
    await waitForCql(node, child.status);
  } catch (error) {
    await cliKill(state);
    await Deno.remove(node.dir, { recursive: true });
    throw error;
  }
  await Deno.writeTextFile(CLI_STATE, JSON.stringify(state));
  log(`Cassandra ${VERSION} answers CQL after ${seconds(began)}; data in ${node.dir}`);
  console.log(state.contactPoint);
}

async function cliStop(): Promise<void> {
  const state = await cliState();
  if (!state) return;
  await cliKill(state);
  await Deno.remove(state.dir, { recursive: true }).catch(() => {});
  await Deno.remove(CLI_STATE);
}

/** The CLI node if its JVM is alive. */
async function cliRunning(): Promise<CliState | undefined> {
  const state = await cliState();
  return state && await alive(state) ? state : undefined;
}

function cliState(): Promise<CliState | undefined> {
  return readState<CliState>(CLI_STATE);
}

async function cliKill(state: CliState): Promise<void> {
  if (!(await alive(state))) return;
  Deno.kill(state.pid, "SIGKILL");
  while (await alive(state)) await new Promise((resolve) => setTimeout(resolve, 50));
}

/** Whether `state.pid` is still our JVM, not a process that inherited the pid. */
async function alive(state: Pick<CliState, "pid" | "dir">): Promise<boolean> {
  try {
    return (await Deno.readTextFile(`/proc/${state.pid}/cmdline`)).includes(state.dir);
  } catch {
    return false;
  }
}

if (import.meta.main) {
  await runCli("scripts/cassandra.ts", {
    start: cliStart,
    stop: cliStop,
    async status() {
      const state = await cliRunning();
      const port = Number(state?.contactPoint.split(":")[1]);
      const answers = state !== undefined &&
        await query(port, "SELECT release_version FROM system.local").then(() => true, () => false);
      return answers ? `${state.contactPoint} (pid ${state.pid})` : null;
    },
  });
}
