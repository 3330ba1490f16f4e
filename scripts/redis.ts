/**
 * A real Redis for tests and local clusters: Debian's `redis-server` (installed with apt-get
 * when missing), on a free loopback port, without persistence, in a temp directory.
 *
 * As a module: `const redis = await startRedis(); ... await redis.stop();`.
 * As a command: `deno run -A scripts/redis.ts` starts one and prints its URL until Ctrl-C.
 *
 * @module
 */

/** A running Redis. */
export interface RedisHandle {
  host: string;
  port: number;
  /** `redis://127.0.0.1:PORT` */
  url: string;
  stop(): Promise<void>;
}

/** Starts a Redis on a free loopback port; resolves once it answers PING. */
export async function startRedis(): Promise<RedisHandle> {
  const binary = await ensureRedisServer();
  const dir = await Deno.makeTempDir({ prefix: "ipush-redis-" });
  const port = freePort();
  const child = new Deno.Command(binary, {
    args: [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      "--dir",
      dir,
      "--loglevel",
      "warning",
    ],
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch { /* already gone */ }
    await child.status;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  const deadline = Date.now() + 10_000;
  while (!await pings(port)) {
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`redis-server on port ${port} did not answer PING within 10 s`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { host: "127.0.0.1", port, url: `redis://127.0.0.1:${port}`, stop };
}

/** The path of `redis-server`, installing Debian's package first if it is missing. */
async function ensureRedisServer(): Promise<string> {
  const found = await which("redis-server");
  if (found) return found;
  for (const args of [["update", "-qq"], ["install", "-y", "-qq", "redis-server"]]) {
    const { success, stderr } = await new Deno.Command("apt-get", {
      args,
      env: { DEBIAN_FRONTEND: "noninteractive" },
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!success) {
      throw new Error(`apt-get ${args.join(" ")} failed: ${new TextDecoder().decode(stderr)}`);
    }
  }
  const installed = await which("redis-server");
  if (!installed) throw new Error("redis-server is not on the PATH after apt-get install");
  return installed;
}

async function which(command: string): Promise<string | null> {
  const { success, stdout } = await new Deno.Command("sh", {
    args: ["-c", `command -v ${command}`],
    stdout: "piped",
  }).output();
  return success ? new TextDecoder().decode(stdout).trim() : null;
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

async function pings(port: number): Promise<boolean> {
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await conn.write(new TextEncoder().encode("PING\r\n"));
      const buffer = new Uint8Array(16);
      const read = await conn.read(buffer);
      return read !== null && new TextDecoder().decode(buffer.subarray(0, read)) === "+PONG\r\n";
    } finally {
      conn.close();
    }
  } catch {
    return false;
  }
}

if (import.meta.main) {
  const redis = await startRedis();
  console.log(redis.url);
  Deno.addSignalListener("SIGINT", async () => {
    await redis.stop();
    Deno.exit(0);
  });
}
