/**
 * What the launchers of local test servers (scripts/cassandra.ts, scripts/redis.ts) share:
 * free loopback ports, log tails, the state file of a server that outlives its CLI command,
 * and the `start|stop|status` command line.
 *
 * @module
 */

/** Distinct free loopback ports: all are held open at once so the kernel cannot repeat one. */
export function freePorts(count: number): number[] {
  const listeners = Array.from(
    { length: count },
    () => Deno.listen({ hostname: "127.0.0.1", port: 0 }),
  );
  const ports = listeners.map((listener) => (listener.addr as Deno.NetAddr).port);
  for (const listener of listeners) listener.close();
  return ports;
}

/** The last `lines` lines of `text`. */
export function tail(text: string, lines: number): string {
  return text.trimEnd().split("\n").slice(-lines).join("\n");
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
