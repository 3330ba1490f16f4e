/**
 * The floor that `node:net` in Deno sets on this machine: what a bare server, with no protocol and
 * no storage, costs. The daemon's idle RSS and fan-out figures (docs/performance.md) are read
 * against it, so that what lies above it is the daemon's own.
 *
 * - `idle`: the server's RSS per connection, (RSS after the hold − RSS before connecting) / N, in
 *   KB of 1,024 bytes; with `--exchange` after one heartbeat and its answer on each socket;
 *   with `--trim` the server also trims its heap every 10 s, as the daemon does.
 * - `fanout`: `--workers` Web Workers, each a server on its own port, write one ~80-byte chunk to
 *   each of their sockets in one synchronous loop; a round's time to all is the last receive
 *   minus the earliest send, with `--ack` while every client acks each message.
 * - {@linkcode startFloor}: nchan's job done by the bare runtime, for `bench/versus.ts`'s `floor`
 *   side: one thread, one `node:net` server speaking nchan's wire (`GET /sub/<id>` with
 *   `TE: chunked` holds an http-chunked subscriber, `POST /pub/<id>` writes the body to each
 *   subscriber of `<id>` as one chunk and answers `201`, or `202` when it had none). No store,
 *   no acks, no sessions: whatever ipush spends above it is ipush's own, and what it costs
 *   against nchan is the runtime's.
 *
 * The server is a child process started as `deno task start` starts the daemon
 * (`scripts/runtime.ts`: V8's memory reducer after 1 s, `MALLOC_ARENA_MAX=2`; with `--trim`,
 * the daemon's heap trim and quiet collection too), so that its RSS compares like for like;
 * clients are other processes, so that they share neither its heap nor its 20,000 descriptors.
 * Loopback only. Children speak JSON lines on stdin/stdout, are killed at the end and exit when
 * the parent's pipe closes. Send and receive times are `performance.timeOrigin +
 * performance.now()` (wall clock at start plus a monotonic clock) in different processes, which
 * agree to about a millisecond: small against the figures measured.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import net from "node:net";
import { parseArgs } from "node:util";
import { DAEMON_ENV, DAEMON_V8_FLAGS } from "../scripts/runtime.ts";
import { openMallocTrim } from "../src/node/malloc_trim.ts";
import { quietCollector } from "../src/node/quiet_gc.ts";
import { jsonLines, nowMs as now } from "./load/ipc.ts";
import { ChunkReader, encodeFrame as chunk } from "./load/wire.ts";

const HOST = "127.0.0.1";
const HEARTBEAT = '7\r\n{"y":0}\r\n'; // also the daemon's answer to a heartbeat
const PER_CLIENT_PROCESS = 15_000; // of the 20,000 descriptors a process may hold here
const SERVER_SOCKETS = 19_500;
const MALLOC_TRIM_MS = 10_000; // the daemon's --malloc_trim_sec default
const DEFAULTS = {
  idle: { connections: 15_000, hold_sec: 20, exchange: false, trim: false },
  fanout: { subscribers: 10_000, workers: 2, client_processes: 2, ack: false, rounds: 5 },
};
const USAGE = "usage:\n" +
  Object.entries(DEFAULTS).map(([mode, options]) =>
    `  deno run -A bench/floor.ts ${mode} ` +
    Object.entries(options).map(([k, v]) => v === false ? `[--${k}]` : `[--${k}=${v}]`).join(" ")
  ).join("\n");

type Msg = Record<string, unknown>;
/** Where a `clients` process connects: socket `i` goes to `ports[(first + i) % ports.length]`. */
type ClientConfig = {
  ports: number[];
  first: number;
  count: number;
  exchange: boolean;
  ack: boolean;
};
/** One client process's view of a round: earliest send, last receive, each socket's latency. */
type RoundReport = { round: number; first: number; last: number; lat: number[] };

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
const say = (msg: unknown) => console.log(JSON.stringify(msg));
const round2 = (x: number) => Math.round(x * 100) / 100;
const quantile = (sorted: number[], p: number) => sorted[Math.floor(p * (sorted.length - 1))];
const median = (xs: number[]) => quantile([...xs].sort((a, b) => a - b), 0.5);
const fail = (message: string): never => {
  console.error(`floor: ${message}`);
  return Deno.exit(1);
};

/** Answers the parent's JSON lines on stdin, and exits once the parent's end of the pipe closes. */
async function serveCommands(handle: (msg: Msg) => unknown): Promise<void> {
  for await (const msg of jsonLines<Msg>(Deno.stdin.readable)) {
    const answer = await handle(msg);
    if (answer !== undefined) say(answer);
  }
  Deno.exit(0);
}

/** A bare server set up as the daemon's (no delay, a 4,096 backlog, `data`/`error` listeners). */
function bareServer(onPort: (port: number) => void, exchange: boolean, sockets?: Set<net.Socket>) {
  const server = net.createServer({ noDelay: true }, (socket) => {
    socket.on("data", exchange ? () => socket.write(HEARTBEAT) : () => {});
    socket.on("error", () => {});
    if (sockets) {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
    }
  });
  server.listen({ port: 0, host: HOST, backlog: 4096 }, () => {
    onPort((server.address() as net.AddressInfo).port);
  });
  return server;
}

/** Gives memory back as the daemon's main thread does: a quiet collection and a heap trim. */
function returnMemory(): void {
  const mallocTrim = openMallocTrim();
  const collect = quietCollector();
  setInterval(() => {
    collect?.();
    mallocTrim?.();
  }, MALLOC_TRIM_MS);
}

/** Role `serve-idle`: the server whose RSS is measured. */
function serveIdle({ exchange, trim }: { exchange: boolean; trim: boolean }): void {
  // The server keeps its own count, so counting adds nothing to a socket's cost.
  const server = bareServer((port) => say({ port }), exchange);
  if (trim) returnMemory();
  serveCommands(() =>
    new Promise((done) => server.getConnections((_, sockets) => done({ sockets })))
  );
}

/** A fan-out worker: its own server; `publish` writes a frame to each socket without yielding. */
function fanoutWorker(): void {
  const scope = globalThis as unknown as Worker; // a worker's global has the same two members
  const sockets = new Set<net.Socket>();
  scope.onmessage = ({ data: msg }) => {
    if (msg.cmd === "listen") bareServer((port) => scope.postMessage({ port }), false, sockets);
    if (msg.cmd === "count") scope.postMessage({ sockets: sockets.size });
    if (msg.cmd === "publish") {
      const t = now();
      const b = "x".repeat(20); // brings the frame to ~80 bytes, a small message
      const frame = chunk(JSON.stringify({ y: 1, f: "floor", t, b, s: msg.round }));
      for (const socket of sockets) socket.write(frame);
      scope.postMessage({ loop_ms: now() - t });
    }
  };
}

/** Role `serve-fanout`: hands each command to every worker and merges their answers. */
async function serveFanout({ workers }: { workers: number }): Promise<void> {
  const pool = Array.from({ length: workers }, () => {
    const worker = new Worker(import.meta.url, { type: "module" });
    worker.onerror = (e) => fail(`server worker: ${e.message}`);
    return worker;
  });
  const ask = (msg: Msg) =>
    Promise.all(pool.map((w) =>
      new Promise<Msg>((resolve) => {
        w.onmessage = (e) => resolve(e.data);
        w.postMessage(msg);
      })
    ));
  say({ ports: (await ask({ cmd: "listen" })).map((a) => a.port) });
  await serveCommands(async (msg) => {
    const answers = await ask(msg);
    return msg.cmd === "count"
      ? { sockets: answers.reduce((n, a) => n + (a.sockets as number), 0) }
      : { loop_ms: answers.map((a) => a.loop_ms) };
  });
}

/** The head of an http-chunked subscriber's stream, as nchan answers it. */
const SUBSCRIBED =
  "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n";
const PUBLISHED = "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
const UNHEARD = "HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok";
const REFUSED = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const HEAD_END = Buffer.from("\r\n\r\n");
const CRLF = Buffer.from("\r\n");

/**
 * Role `serve-nchan`: nchan's wire on one bare `node:net` server, in one thread, giving memory
 * back as the daemon does.
 */
function serveNchan(): void {
  const subscribers = new Map<string, Set<net.Socket>>();
  const server = net.createServer({ noDelay: true }, (socket) => {
    let input: Buffer | null = null;
    socket.on("error", () => {});
    socket.on("data", (data: Buffer) => {
      input = input ? Buffer.concat([input, data]) : data;
      for (let end; (end = input.indexOf(HEAD_END)) >= 0;) {
        const head = input.subarray(0, end).toString("latin1");
        const [method, path] = head.slice(0, head.indexOf("\r\n")).split(" ");
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        if (input.length < end + 4 + length) return;
        const body = input.subarray(end + 4, end + 4 + length);
        input = input.subarray(end + 4 + length);
        if (method === "GET" && path.startsWith("/sub/")) {
          const id = path.slice(5);
          const set = subscribers.get(id) ?? new Set();
          subscribers.set(id, set.add(socket));
          socket.on("close", () => set.delete(socket));
          socket.write(SUBSCRIBED);
        } else if (method === "POST" && path.startsWith("/pub/")) {
          const set = subscribers.get(path.slice(5));
          const frame = Buffer.concat([Buffer.from(`${length.toString(16)}\r\n`), body, CRLF]);
          for (const subscriber of set ?? []) subscriber.write(frame);
          socket.write(set?.size ? PUBLISHED : UNHEARD);
        } else return void socket.end(REFUSED);
      }
      if (input.length === 0) input = null;
    });
  });
  server.listen({ port: 0, host: HOST, backlog: 4096 }, () => {
    say({ port: (server.address() as net.AddressInfo).port });
  });
  returnMemory();
  serveCommands(() => undefined);
}

/** A running {@linkcode serveNchan} server: where it listens, its pid, and how to stop it. */
export interface FloorServer {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

/** Starts nchan's job on the bare runtime, as the daemon is started (`scripts/runtime.ts`). */
export async function startFloor(): Promise<FloorServer> {
  const server = new Child("floor", "serve-nchan", {}, true);
  const { port } = await server.recv<{ port: number }>();
  return { url: `http://${HOST}:${port}`, pid: server.proc.pid, stop: () => server.stop() };
}

/** Role `clients`: connects, then in fan-out reports each round once all its sockets have it. */
async function clients(c: ClientConfig): Promise<void> {
  serveCommands(() => undefined); // to exit with the parent
  const rounds = new Map<number, RoundReport>();
  const onFrame = (socket: net.Socket, body: string) => {
    const at = now(), { t, s } = JSON.parse(body);
    const r: RoundReport = rounds.get(s) ?? { round: s, first: t, last: at, lat: [] };
    rounds.set(s, r);
    [r.first, r.last] = [Math.min(r.first, t), at];
    r.lat.push(round2(at - t));
    if (c.ack) socket.write(chunk(`{"y":5,"s":${s}}`));
    if (r.lat.length === c.count) say(r);
  };
  let ready = 0;
  const { promise: allReady, resolve } = Promise.withResolvers<void>();
  const onReady = () => ++ready === c.count && resolve();
  const start = performance.now();
  for (let i = 0; i < c.count; i++) {
    // Paced, so that the accept queue never overflows: a dropped SYN waits out a 1 s retransmit.
    if (i > 0 && i % 200 === 0) await sleep(5);
    const socket = net.connect({ host: HOST, port: c.ports[(c.first + i) % c.ports.length] });
    socket.setNoDelay(true);
    socket.on("error", (e) => fail(`clients: ${e.message}`));
    let got = 0;
    const reader = new ChunkReader();
    socket.on("connect", () => c.exchange ? socket.write(HEARTBEAT) : onReady());
    socket.on(
      "data",
      c.exchange
        ? (d: Buffer) => (got += d.length) === HEARTBEAT.length && onReady()
        : (d: Buffer) => reader.push(d, (body) => onFrame(socket, body)),
    );
  }
  await allReady;
  say({ connected: c.count, ms: performance.now() - start });
}

/** A child process of this script in another role, spoken to in JSON lines. */
class Child {
  readonly proc: Deno.ChildProcess;
  readonly #out: AsyncGenerator<unknown>;
  readonly #in: WritableStreamDefaultWriter<Uint8Array>;

  constructor(readonly name: string, role: string, config: unknown, asDaemon = false) {
    const flags = asDaemon ? [DAEMON_V8_FLAGS] : [];
    this.proc = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", ...flags, import.meta.url, role, JSON.stringify(config)],
      env: asDaemon ? DAEMON_ENV : {},
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#out = jsonLines(this.proc.stdout);
    this.#in = this.proc.stdin.getWriter();
  }

  /** The child's next message; throws if it exits first or says nothing for `timeoutMs`. */
  async recv<T>(timeoutMs = 60_000): Promise<T> {
    const { promise: timeout, reject } = Promise.withResolvers<never>();
    const silent = new Error(`${this.name}: no message in ${timeoutMs} ms`);
    const timer = setTimeout(() => reject(silent), timeoutMs);
    try {
      const next = await Promise.race([this.#out.next(), timeout]);
      if (next.done) throw new Error(`${this.name} exited (code ${(await this.proc.status).code})`);
      return next.value as T;
    } finally {
      clearTimeout(timer);
    }
  }

  async ask<T>(msg: Msg, timeoutMs?: number): Promise<T> {
    const line = new TextEncoder().encode(JSON.stringify(msg) + "\n");
    await this.#in.write(line).catch(() => {}); // a child that is gone is reported by recv()
    return await this.recv<T>(timeoutMs);
  }

  async stop(): Promise<void> {
    try {
      this.proc.kill("SIGKILL");
    } catch { /* already gone */ }
    await this.proc.status;
  }
}

const children: Child[] = [];
const spawn = (...args: ConstructorParameters<typeof Child>) => {
  children.push(new Child(...args));
  return children.at(-1)!;
};

/** Starts `processes` client processes sharing `total` sockets; resolves once all are connected. */
async function connectClients(total: number, processes: number, c: Omit<ClientConfig, "count">) {
  const list = Array.from({ length: processes }, (_, i) => {
    const [first, end] = [i, i + 1].map((k) => Math.floor((total * k) / processes));
    return spawn(`clients-${i + 1}`, "clients", { ...c, first, count: end - first });
  });
  await Promise.all(list.map((child) => child.recv(120_000)));
  return list;
}

/** Waits for the server to hold `n` sockets: a client's connect completes before the accept. */
async function accepted(server: Child, n: number): Promise<void> {
  for (let i = 0; i < 300; i++, await sleep(100)) {
    if ((await server.ask<{ sockets: number }>({ cmd: "count" })).sockets === n) return;
  }
  throw new Error(`the server does not hold ${n} sockets after 30 s`);
}

/** SYNs the kernel dropped on full accept queues, for the whole box (network namespace). */
function listenOverflows(): number {
  const [names, values] = Deno.readTextFileSync("/proc/net/netstat").split("\n")
    .filter((l) => l.startsWith("TcpExt:")).map((l) => l.split(" "));
  return Number(values[names.indexOf("ListenOverflows")]);
}

/** Mode `idle`: the server's RSS before connecting, once connected, and after the hold. */
async function idle(o: typeof DEFAULTS.idle): Promise<Msg> {
  const n = o.connections;
  if (n > SERVER_SOCKETS) throw new Error(`--connections: at most ${SERVER_SOCKETS}`);
  const server = spawn("server", "serve-idle", { exchange: o.exchange, trim: o.trim }, true);
  const { port } = await server.recv<{ port: number }>();
  const status = `/proc/${server.proc.pid}/status`;
  const rss = () => Number(/VmRSS:\s+(\d+)/.exec(Deno.readTextFileSync(status))![1]);
  await sleep(2000); // the baseline comes after the reducer has returned the start-up's garbage
  const [before, overflows, start] = [rss(), listenOverflows(), performance.now()];
  const processes = Math.ceil(n / PER_CLIENT_PROCESS);
  await connectClients(n, processes, { ports: [port], first: 0, exchange: o.exchange, ack: false });
  await accepted(server, n);
  const [connected, connect_ms] = [rss(), Math.round(performance.now() - start)];
  const listen_overflows = listenOverflows() - overflows;
  await sleep(o.hold_sec * 1000);
  await accepted(server, n); // none dropped during the hold, and the server is still there
  const held = rss();
  const result = { rss_before_kb: before, rss_connected_kb: connected, rss_held_kb: held };
  const kb_per_connection = round2((held - before) / n);
  console.table({ ...result, connect_ms, listen_overflows, kb_per_connection });
  return { ...result, connect_ms, listen_overflows, kb_per_connection };
}

/** Mode `fanout`: `--rounds` publishes 1 s apart; each round's time to all and latencies. */
async function fanout(o: typeof DEFAULTS.fanout): Promise<Msg> {
  const n = o.subscribers;
  if (n > SERVER_SOCKETS) throw new Error(`--subscribers: at most ${SERVER_SOCKETS}`);
  if (n > o.client_processes * PER_CLIENT_PROCESS) {
    throw new Error(`--client_processes: at most ${PER_CLIENT_PROCESS} subscribers each`);
  }
  const server = spawn("server", "serve-fanout", { workers: o.workers }, true);
  const { ports } = await server.recv<{ ports: number[] }>();
  const config = { ports, first: 0, exchange: false, ack: o.ack };
  const list = await connectClients(n, o.client_processes, config);
  await accepted(server, n);
  const rounds = [];
  for (let round = 1; round <= o.rounds; round++) {
    const start = performance.now();
    const [{ loop_ms }, ...reports] = await Promise.all([
      server.ask<{ loop_ms: number[] }>({ cmd: "publish", round }, 10_000),
      ...list.map((child) => child.recv<RoundReport>(10_000)),
    ]);
    const lat = reports.flatMap((r) => r.lat).sort((a, b) => a - b);
    const last = Math.max(...reports.map((r) => r.last));
    rounds.push({
      time_to_all_ms: round2(last - Math.min(...reports.map((r) => r.first))),
      p50_ms: quantile(lat, 0.5),
      p99_ms: quantile(lat, 0.99),
      write_loop_ms: loop_ms.map(round2),
    });
    await sleep(1000 - (performance.now() - start)); // apart, so that no round waits on another
  }
  const time_to_all_median_ms = median(rounds.map((r) => r.time_to_all_ms));
  const p50_median_ms = median(rounds.map((r) => r.p50_ms));
  const medians = { time_to_all_ms: time_to_all_median_ms, p50_ms: p50_median_ms };
  console.table({ ...Object.fromEntries(rounds.map((r, i) => [`round ${i + 1}`, r])), medians });
  return { time_to_all_median_ms, p50_median_ms, per_round: rounds };
}

/** Parses `--name=value` against `defaults`: flags, or positive integers. */
function parseOptions(defaults: Record<string, number | boolean>, args: string[]) {
  const type = (v: unknown) => typeof v === "boolean" ? "boolean" as const : "string" as const;
  const options = Object.fromEntries(
    Object.entries(defaults).map(([k, v]) => [k, { type: type(v) }]),
  );
  const { values } = parseArgs({ args, options, strict: true });
  return Object.fromEntries(
    Object.entries(defaults).map(([k, d]) => {
      const v = values[k];
      if (v === undefined || typeof d === "boolean") return [k, v ?? d];
      if (!/^[1-9]\d*$/.test(String(v))) throw new Error(`--${k}: a positive integer, not "${v}"`);
      return [k, Number(v)];
    }),
  );
}

async function main([mode, ...args]: string[]): Promise<number> {
  let o: Msg;
  try {
    if (mode !== "idle" && mode !== "fanout") throw new Error(`no mode "${mode ?? ""}"`);
    o = parseOptions(DEFAULTS[mode], args);
  } catch (e) {
    console.error(`floor: ${(e as Error).message}\n${USAGE}`);
    return 64;
  }
  const load_average = Deno.loadavg().map((x) => x.toFixed(2)).join(" ");
  console.log(`floor ${mode} ${JSON.stringify(o)}, load average ${load_average}`);
  try {
    const result = mode === "idle"
      ? await idle(o as typeof DEFAULTS.idle)
      : await fanout(o as typeof DEFAULTS.fanout);
    console.log(JSON.stringify({ mode, ...o, load_average, ...result }));
    return 0;
  } catch (e) {
    console.error(`floor: ${(e as Error).message}`);
    return 1;
  } finally {
    // Clients first, so that none sees the server's sockets reset and reports it.
    for (const child of children.reverse()) await child.stop();
  }
}

if ("WorkerGlobalScope" in globalThis) fanoutWorker();
else if (import.meta.main) {
  const [role, config] = Deno.args;
  if (role === "serve-idle") serveIdle(JSON.parse(config));
  else if (role === "serve-nchan") serveNchan();
  else if (role === "serve-fanout") serveFanout(JSON.parse(config));
  else if (role === "clients") clients(JSON.parse(config));
  else Deno.exit(await main(Deno.args));
}
