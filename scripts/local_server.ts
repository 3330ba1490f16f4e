/**
 * What the launchers of local test servers and tools (scripts/cassandra.ts, scripts/redis.ts,
 * scripts/nchan.ts, scripts/chromium.ts) share: free loopback ports, log tails, Debian packages
 * installed on demand, a server process that cannot outlive its launcher, the state file of a
 * server that outlives its CLI command, and the `start|stop|status` command line.
 *
 * @module
 */

/**
 * `count` consecutive free loopback ports, for servers told their port before they bind it.
 * They are drawn from below the kernel's ephemeral range: a port from inside it can be taken by
 * any outgoing connection (a Redis client, a test's own socket) between this check and the
 * server's bind, which CI saw as a shard's EADDRINUSE.
 */
export function freePorts(count: number): number[] {
  const low = 10_000;
  const high = Math.max(ephemeralPortsFrom(), low + 10_000) - count;
  for (let attempt = 0; attempt < 100; attempt++) {
    const base = low + Math.floor(Math.random() * (high - low));
    const listeners: Deno.Listener[] = [];
    try {
      for (let i = 0; i < count; i++) {
        listeners.push(Deno.listen({ hostname: "127.0.0.1", port: base + i }));
      }
      return listeners.map((_, i) => base + i);
    } catch {
      continue;
    } finally {
      for (const listener of listeners) listener.close();
    }
  }
  throw new Error(`no run of ${count} free ports`);
}

/** The first port the kernel hands to outgoing connections (Linux; 32768 where unreadable). */
function ephemeralPortsFrom(): number {
  try {
    const range = Deno.readTextFileSync("/proc/sys/net/ipv4/ip_local_port_range");
    return Number(range.trim().split(/\s+/)[0]) || 32_768;
  } catch {
    return 32_768;
  }
}

/** The last `lines` lines of `text`. */
export function tail(text: string, lines: number): string {
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}

/** Whether a file or directory is at `path`. */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/** Whether `name` is a command on PATH. */
export async function onPath(name: string): Promise<boolean> {
  const which = await new Deno.Command("sh", {
    args: ["-c", 'command -v "$0"', name],
    stdout: "null",
    stderr: "null",
  }).output();
  return which.success;
}

const installs = new Map<string, Promise<void>>();

/**
 * Installs Debian `packages` (without their recommends) with apt-get, at most once per process
 * for the same list: concurrent callers share one run.
 */
export function aptInstall(...packages: string[]): Promise<void> {
  const key = packages.join(" ");
  let install = installs.get(key);
  if (!install) {
    install = runAptGet(packages);
    // A failed run may be retried later (the network or the lock may be back).
    install.catch(() => installs.delete(key));
    installs.set(key, install);
  }
  return install;
}

const APT_LOCK_TIMEOUT_S = 300;

async function runAptGet(packages: string[]): Promise<void> {
  // Wait for the dpkg lock rather than fail when another test process installs too.
  const lock = ["-o", `DPkg::Lock::Timeout=${APT_LOCK_TIMEOUT_S}`];
  const steps = [
    ["update", ...lock],
    ["install", "-y", "--no-install-recommends", ...lock, ...packages],
  ];
  for (const args of steps) await aptGet(args, packages);
}

/**
 * One apt-get step. `DPkg::Lock::Timeout` covers dpkg's lock only, not the package lists' lock
 * that `update` takes (apt 2.6), so a step that finds a lock held is retried until the timeout.
 */
async function aptGet(args: string[], packages: string[]): Promise<void> {
  const deadline = Date.now() + APT_LOCK_TIMEOUT_S * 1000;
  while (true) {
    const apt = await new Deno.Command("apt-get", {
      args: ["-q", ...args],
      env: { DEBIAN_FRONTEND: "noninteractive" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (apt.success) return;
    const output = new TextDecoder().decode(apt.stdout) + new TextDecoder().decode(apt.stderr);
    if (!output.includes("Could not get lock") || Date.now() > deadline) {
      throw new Error(`apt-get ${args[0]} ${packages.join(" ")} failed:\n${tail(output, 20)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

/**
 * Runs the server command in "$@" in the background, sends it each signal name written to the
 * shell's stdin, and $WATCHDOG_EXIT when stdin closes: when the launcher asks for it by
 * closing, and when the launcher dies (the kernel closes the pipe then too, even on SIGKILL).
 */
const WATCHDOG = `
"$@" </dev/null >>"$WATCHDOG_LOG" 2>&1 &
server=$!
exec 3<&0
{ while read -r signal; do kill -s "$signal" "$server"; done; kill -s "$WATCHDOG_EXIT" "$server"; } <&3 2>/dev/null &
reader=$!
wait "$server"
status=$?
kill "$reader" 2>/dev/null
exit "$status"
`;

/** A server process under the watchdog of {@linkcode spawnWatched}. */
export interface WatchedProcess {
  /** The server's exit (the watchdog exits with the server's code). */
  status: Promise<Deno.CommandStatus>;
  /** Sends `signal` to the server; does nothing once it is gone. */
  signal(signal: Deno.Signal): Promise<void>;
  /** Ends the server (SIGKILL unless told otherwise) and waits for it. Idempotent. */
  kill(): Promise<Deno.CommandStatus>;
}

/** Where a watched server's output goes and how it is ended. */
export interface WatchOptions {
  /** Appends the server's stdout and stderr here; discarded by default. */
  logFile?: string;
  /**
   * The signal that ends the server: SIGKILL by default, SIGTERM for a server whose own
   * children must be stopped by it (an nginx master and its workers).
   */
  exitSignal?: Deno.Signal;
}

/**
 * Starts `command` so that it dies with this process: a test that crashes leaves no server
 * behind on a shared machine.
 */
export function spawnWatched(command: string[], options: WatchOptions = {}): WatchedProcess {
  const child = new Deno.Command("sh", {
    args: ["-c", WATCHDOG, `${command[0]}-watchdog`, ...command],
    env: {
      WATCHDOG_LOG: options.logFile ?? "/dev/null",
      WATCHDOG_EXIT: (options.exitSignal ?? "SIGKILL").slice(3),
    },
    stdin: "piped",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const stdin = child.stdin.getWriter();
  let killed: Promise<Deno.CommandStatus> | undefined;
  return {
    status: child.status,
    // A broken pipe means the server (and its watchdog) already died: nothing to signal.
    signal: (signal) =>
      stdin.write(new TextEncoder().encode(`${signal.slice(3)}\n`)).catch(() => {}),
    kill: () => killed ??= stdin.close().catch(() => {}).then(() => child.status),
  };
}

/**
 * Waits for a watched server in its own temp `dir` to be `ready`; resolves with its stop
 * (kill it, then delete `dir`; idempotent). A server that never gets ready is stopped and the
 * error rethrown, so a failed start leaves nothing behind.
 */
export async function whenReady(
  server: WatchedProcess,
  dir: string,
  ready: () => Promise<void>,
): Promise<() => Promise<void>> {
  let stopped: Promise<void> | undefined;
  const stop = () =>
    stopped ??= (async () => {
      await server.kill();
      await Deno.remove(dir, { recursive: true });
    })();
  try {
    await ready();
  } catch (error) {
    await stop();
    throw error;
  }
  return stop;
}

/** The JSON state a CLI command left in `path`, or undefined if there is none. */
export async function readState<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await Deno.readTextFile(path));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

/**
 * Runs `start`, `stop` or `status` from `Deno.args[0]`. `status` resolves with what runs
 * (printed, exit 0) or null (`not running`, exit 1).
 */
export async function runCli(script: string, commands: {
  start(): Promise<void>;
  stop(): Promise<void>;
  status(): Promise<string | null>;
}): Promise<void> {
  const command = Deno.args[0];
  if (command === "start") {
    await commands.start();
  } else if (command === "stop") {
    await commands.stop();
  } else if (command === "status") {
    const running = await commands.status();
    console.log(running ? `running: ${running}` : "not running");
    Deno.exit(running ? 0 : 1);
  } else {
    console.error(`usage: deno run -A ${script} start|stop|status`);
    Deno.exit(2);
  }
}
