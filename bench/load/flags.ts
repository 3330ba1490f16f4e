/**
 * Command line of the load generator: `--name=value` flags parsed with `node:util`
 * `parseArgs`, defaults that depend on the scenario, and `--help` generated from the same
 * table.
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  type AckMode,
  type ClientCodec,
  type ClientTransport,
  type Rate,
  type TargetName,
  TARGETS,
} from "./ipc.ts";
import { isLoopback } from "./loopback.ts";
import { NCHAN_ID } from "./target.ts";

/** The scenarios, with what each measures (for `--help`). */
export const SCENARIOS = {
  idle: "hold N idle connections: connect rate (303 hop included), server RSS per connection",
  unicast: "back end /pub to random online users: delivered msgs/s, latency p50/p99/p999",
  chat: "clients send y=3 to each other: delivered msgs/s, latency",
  fanout: "one channel, N subscribers: time until all have a message, then deliveries/s",
  storm: "N clients connect at once: connects/s (303 hop included), failures",
} as const;

/** A scenario name. */
export type Scenario = keyof typeof SCENARIOS;

/** Everything a run is configured by. */
export interface LoadOptions {
  scenario: Scenario;
  target: TargetName;
  /** nchan: the running one measured; null: the run starts its own. */
  url: string | null;
  host: string;
  /** Front doors of `host`; uid n's first hop is to the (n mod count)th. */
  clientPorts: number[];
  adminHost: string;
  adminPort: number;
  connections: number;
  processes: number;
  maxPerProcess: number;
  sourceAddrs: number;
  transport: ClientTransport;
  codec: ClientCodec;
  uidPrefix: string;
  password: string;
  passwordFile: string;
  durationSec: number;
  holdSec: number;
  drainSec: number;
  recoverSec: number;
  settleSec: number;
  rate: Rate;
  concurrency: number;
  batch: number;
  connectConcurrency: number;
  connectTimeoutSec: number;
  maxRedirects: number;
  heartbeatSec: number;
  ack: AckMode;
  msgTimeoutSec: number;
  channel: string;
  serverPid: number | null;
  pidFile: string;
  out: string | null;
  timeoutSec: number;
}

type Default = string | ((s: Scenario, v: Record<string, string>) => string);

/** Flag name, default (may depend on the scenario and earlier flags), help text. */
const FLAGS: [string, Default, string][] = [
  [
    "target",
    "ipush",
    "ipush | nchan (the peer: http-chunked subscribers, one POST /pub/<id> a message; " +
    "idle, storm, unicast, fanout)",
  ],
  [
    "url",
    "",
    "nchan: a running nchan to measure, http://127.0.0.1:PORT (default: start one with " +
    "scripts/nchan.ts and stop it after)",
  ],
  ["host", "127.0.0.1", "client front door host (loopback only)"],
  [
    "client_port",
    "9000",
    "client front door port, or a cluster's front doors P1,P2,... (uid n's first hop to the " +
    "(n mod count)th, as DNS or a load balancer would spread them)",
  ],
  ["admin_host", (_, v) => v.host, "admin API host (loopback only; default: --host)"],
  ["admin_port", "9001", "admin API port"],
  [
    "connections",
    (s) => ({ idle: "19000", storm: "10000" } as Record<string, string>)[s] ?? "1000",
    "client connections (idle 19000, storm 10000, others 1000)",
  ],
  ["max_per_process", "10000", "connections per client process at most (20k fds/process)"],
  [
    "processes",
    (_, v) => String(Math.max(1, Math.ceil(Number(v.connections) / Number(v.max_per_process)))),
    "client processes (default: connections / max_per_process, rounded up)",
  ],
  [
    "source_addrs",
    // A socket bound to an address before it connects takes a port of its own there, and
    // Linux gives bind() one parity of the ~28k ephemeral ports before the other: past ~14k
    // sockets an address, each bind scans a full half (237,000 connections over 16 addresses
    // here: the box at 68 % system time, connects down from 570 to 20 a second).
    (_, v) => String(Math.max(16, Math.ceil(Number(v.connections) / 10_000))),
    "source addresses 127.0.0.2.. to bind client sockets to, at most 250 " +
    "(default: one a 10,000 connections, 16 at least; 0: none)",
  ],
  [
    "transport",
    "tcp",
    "tcp (the raw chunk stream) | ws (WebSocket) | poll (long-poll: idle, unicast, fanout)",
  ],
  ["codec", "json", "json | msgpack (codec=msgpack: MessagePack bodies; tcp and ws only)"],
  ["uid_prefix", "load_", "uids are <uid_prefix><n>, n = 0 .. connections-1"],
  ["password", "pwd{n}", "password template; {uid} and {n} are substituted"],
  [
    "password_file",
    "",
    "'uid password' lines (deno task token -- --count=N), overriding --password for their uids",
  ],
  ["duration_sec", "10", "length of the measured load phase (unicast, chat, fanout)"],
  ["hold_sec", (s) => s === "idle" ? "10" : "0", "hold the connections this long (idle: 10)"],
  ["drain_sec", "5", "after the load phase, wait at most this long for deliveries"],
  [
    "recover_sec",
    "10",
    "after the load phase, probe /pub at most this long until the server is back to normal",
  ],
  ["settle_sec", "2", "idle: wait this long after connecting before reading the RSS"],
  [
    "rate",
    (s) => s === "fanout" ? "10" : "1000",
    "target sends/s (unicast: /pub, chat: y=3, fanout: channel /pub), or 'max'",
  ],
  [
    "concurrency",
    (s) => ({ chat: "256", fanout: "4" } as Record<string, string>)[s] ?? "64",
    "in-flight limit: /pub requests (unicast 64, fanout 4) or undelivered chat msgs (256); " +
    "open loop: --rate=N with a limit never reached",
  ],
  ["batch", "1", "unicast: messages per request; above 1, POST /pub/batch instead of /pub"],
  [
    "connect_concurrency",
    (s, v) => s === "storm" ? v.connections : "500",
    "handshakes in flight at once, all processes together (storm: all)",
  ],
  ["connect_timeout_sec", "15", "give up a connection (303 hop included) after this long"],
  ["max_redirects", "3", "303 hops to follow at most"],
  [
    "heartbeat_sec",
    (_, v) => v.target === "nchan" ? "0" : "30",
    'each client sends {"y":0} this often (0: never; ipush 30, nchan 0)',
  ],
  [
    "ack",
    (_, v) => v.target === "nchan" ? "none" : "read",
    "ack received messages: each | read (the highest s of a read, as ipush.js acks a burst) | " +
    "none (ipush read, nchan none)",
  ],
  ["msg_timeout_sec", "10", "a message not delivered within this long counts as lost"],
  ["channel", (_, v) => `${v.uid_prefix}fanout${v.connections}`, "fanout channel id"],
  ["server_pid", "", "server pid for RSS readings (default: from --pid_file)"],
  [
    "pid_file",
    (_, v) => v.target === "nchan" ? "" : "ipush_server.pid",
    "the server's pid file (ipush_server.pid; nchan: none, --server_pid for a running one)",
  ],
  ["out", "", "result JSON path (default: bench/results/<scenario>-<timestamp>.json)"],
  ["timeout_sec", "", "hard limit for the whole run (default: phases' bounds + 120)"],
];

/** The `--help` text. */
export function helpText(): string {
  const lines = [
    "Usage: deno task load -- <scenario> [--name=value ...]",
    "",
    "Scenarios:",
    ...Object.entries(SCENARIOS).map(([name, what]) => `  ${name.padEnd(9)} ${what}`),
    "",
    "Flags:",
  ];
  for (const [name, def, help] of FLAGS) {
    const shown = typeof def === "string" && def !== "" ? ` (default ${def})` : "";
    lines.push(`  --${name.padEnd(20)} ${help}${shown}`);
  }
  lines.push("  --help                 this text");
  return lines.join("\n");
}

/** Parses argv; throws an Error with a message fit for the user on any bad input. */
export function parseOptions(args: string[]): LoadOptions | "help" {
  const options: Record<string, { type: "string" | "boolean" }> = { help: { type: "boolean" } };
  for (const [name] of FLAGS) options[name] = { type: "string" };
  const { values, positionals } = parseArgs({ args, options, allowPositionals: true });
  if (values.help) return "help";
  if (positionals.length !== 1 || !(positionals[0] in SCENARIOS)) {
    throw new Error(`give exactly one scenario: ${Object.keys(SCENARIOS).join(", ")}`);
  }
  const scenario = positionals[0] as Scenario;
  const v: Record<string, string> = {};
  for (const [name, def] of FLAGS) {
    const given = values[name];
    v[name] = typeof given === "string" ? given : typeof def === "string" ? def : def(scenario, v);
  }
  const int = (name: string, min: number): number => {
    const n = Number(v[name]);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer ≥ ${min}`);
    return n;
  };
  const ports = (name: string): number[] =>
    v[name].split(",").map((text) => {
      const n = Number(text);
      if (!Number.isInteger(n) || n < 1 || n > 65535) {
        throw new Error(`--${name} must be a port or ports P1,P2,... (1–65535): ${text}`);
      }
      return n;
    });
  const num = (name: string, min: number): number => {
    const n = Number(v[name]);
    if (!Number.isFinite(n) || n < min) throw new Error(`--${name} must be a number ≥ ${min}`);
    return n;
  };
  for (const name of ["host", "admin_host"]) {
    if (!isLoopback(v[name])) {
      throw new Error(`--${name}=${v[name]} refused: only loopback targets (127.0.0.0/8, ::1)`);
    }
  }
  if (!["each", "read", "none"].includes(v.ack)) throw new Error("--ack must be each|read|none");
  if (!(TARGETS as readonly string[]).includes(v.target)) {
    throw new Error(`--target must be ${TARGETS.join("|")}`);
  }
  const target = v.target as TargetName;
  let url: URL | null = null;
  if (target === "nchan") {
    url = nchanChecks(scenario, v, (name) => typeof values[name] === "string");
  } else if (v.url !== "") {
    throw new Error("--url names a running nchan: give it with --target=nchan");
  }
  if (!["tcp", "ws", "poll"].includes(v.transport)) {
    throw new Error("--transport must be tcp|ws|poll");
  }
  if (!["json", "msgpack"].includes(v.codec)) throw new Error("--codec must be json|msgpack");
  if (v.codec === "msgpack" && v.transport === "poll") {
    throw new Error("--codec=msgpack: long-poll carries JSON only (--transport=tcp or ws)");
  }
  if (v.codec === "msgpack" && scenario === "chat") {
    throw new Error("--codec=msgpack: chat's clients write JSON (unicast, fanout, idle, storm)");
  }
  if (v.transport === "poll" && scenario === "chat") {
    throw new Error(
      "chat sends on the stream: --transport=tcp or ws (a poll client sends by /send)",
    );
  }
  const connections = int("connections", 1);
  const maxPerProcess = int("max_per_process", 1);
  if (maxPerProcess > 19000) throw new Error("--max_per_process above 19000 will run out of fds");
  const processes = Math.max(int("processes", 1), Math.ceil(connections / maxPerProcess));
  if (scenario === "chat" && connections < 2 * processes) {
    throw new Error("chat needs at least two connections per process");
  }
  const opts: LoadOptions = {
    scenario,
    target,
    url: url === null ? null : url.origin,
    // nchan serves subscribers and publishers on one port.
    host: url?.hostname ?? v.host,
    clientPorts: url === null ? ports("client_port") : [Number(url.port || 80)],
    adminHost: url?.hostname ?? v.admin_host,
    adminPort: url === null ? int("admin_port", 1) : Number(url.port || 80),
    connections,
    processes,
    maxPerProcess,
    sourceAddrs: int("source_addrs", 0),
    transport: v.transport as ClientTransport,
    codec: v.codec as ClientCodec,
    uidPrefix: v.uid_prefix,
    password: v.password,
    passwordFile: v.password_file,
    durationSec: num("duration_sec", 0.1),
    holdSec: num("hold_sec", 0),
    drainSec: num("drain_sec", 0),
    recoverSec: num("recover_sec", 0),
    settleSec: num("settle_sec", 0),
    rate: v.rate === "max" ? "max" : num("rate", 0.001),
    concurrency: int("concurrency", 1),
    batch: int("batch", 1),
    connectConcurrency: int("connect_concurrency", 1),
    connectTimeoutSec: num("connect_timeout_sec", 0.1),
    maxRedirects: int("max_redirects", 0),
    heartbeatSec: num("heartbeat_sec", 0),
    ack: v.ack as AckMode,
    msgTimeoutSec: num("msg_timeout_sec", 0.1),
    channel: v.channel,
    serverPid: v.server_pid === "" ? null : int("server_pid", 1),
    pidFile: v.pid_file,
    out: v.out === "" ? null : v.out,
    timeoutSec: 0,
  };
  opts.timeoutSec = v.timeout_sec === "" ? defaultTimeout(opts) : num("timeout_sec", 1);
  return opts;
}

/**
 * What nchan can be measured with: its own flags, none that would be silently ignored;
 * returns the parsed `--url` (null: the run starts an nchan).
 */
function nchanChecks(
  scenario: Scenario,
  v: Record<string, string>,
  given: (name: string) => boolean,
): URL | null {
  if (scenario === "chat") throw new Error("chat: nchan's subscribers cannot send");
  if (v.transport !== "tcp") {
    throw new Error("--target=nchan: its subscribers are http-chunked, --transport=tcp");
  }
  if (v.codec !== "json") throw new Error("--target=nchan: its messages are text, --codec=json");
  if (v.batch !== "1") throw new Error("--target=nchan publishes one message a request: --batch=1");
  if (v.ack !== "none") throw new Error("--target=nchan takes no acks: --ack=none");
  if (Number(v.heartbeat_sec) !== 0) {
    throw new Error("--target=nchan: its streams are read-only, --heartbeat_sec=0");
  }
  for (const name of ["host", "client_port", "admin_host", "admin_port"]) {
    if (given(name)) throw new Error(`--target=nchan: give --url instead of --${name}`);
  }
  if (!NCHAN_ID.test(`${v.uid_prefix}0`) || !NCHAN_ID.test(v.channel)) {
    throw new Error("--target=nchan: --uid_prefix and --channel must be word characters (\w)");
  }
  if (v.url === "") return null;
  let url: URL;
  try {
    url = new URL(v.url);
  } catch {
    throw new Error(`--url=${v.url} is not a URL (http://127.0.0.1:PORT)`);
  }
  if (url.protocol !== "http:") throw new Error(`--url=${v.url}: http only`);
  if (!isLoopback(url.hostname)) {
    throw new Error(`--url=${v.url} refused: only loopback targets (127.0.0.0/8, ::1)`);
  }
  return url;
}

/** Sum of every phase's own bound, plus slack for process start-up and closing. */
function defaultTimeout(o: LoadOptions): number {
  // The drain and the recovery probes run at the same time.
  const load = ["unicast", "chat", "fanout"].includes(o.scenario)
    ? o.durationSec + Math.max(o.drainSec, o.recoverSec) + (o.scenario === "fanout" ? 30 : 0)
    : 0;
  const connectRounds = Math.ceil(o.connections / o.connectConcurrency);
  const connect = Math.min(connectRounds * o.connectTimeoutSec, 600);
  return Math.ceil(connect + o.settleSec + o.holdSec + load + 120);
}
