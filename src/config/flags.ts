/**
 * Command-line flags, gflags style: `--name=value`, `--flagfile=PATH` (one flag a line, `#`
 * starts a comment), the command line overriding the file. Tokenising is `node:util`'s
 * `parseArgs`; this module adds the flagfile, the types, the defaults and `--help`.
 *
 * @module
 */

import { parseArgs } from "node:util";

/** The daemon's settings, one field per flag. */
export interface Config {
  client_port: number;
  admin_port: number;
  admin_host: string;
  host: string;
  advertise_host: string;
  workers: number;
  shard_port_base: number;
  pid_file: string;
  storage: "memory" | "sqlite" | "cassandra";
  data_dir: string;
  sqlite_synchronous: "normal" | "full";
  cassandra_contact_points: string;
  cassandra_local_dc: string;
  cassandra_keyspace: string;
  cassandra_consistency: string;
  storage_timeout_ms: number;
  heartbeat_timeout_sec: number;
  max_frame_bytes: number;
  max_head_bytes: number;
  handshake_timeout_sec: number;
  max_output_bytes: number;
  max_connections: number;
  malloc_trim_sec: number;
  storage_queue_limit: number;
  msg_limit: number;
  overload_ms: number;
  max_inflight: number;
  channel_cache_size: number;
  auth: "none" | "file";
  users_file: string;
  log_level: "debug" | "info" | "warn" | "error";
  node_id: string;
  cluster_nodes: string;
  redis_url: string;
  presence_ttl_sec: number;
  drain_timeout_sec: number;
  debug_api: boolean;
}

type Kind =
  | { type: "int"; min: number; max: number }
  | { type: "string" }
  | { type: "bool" }
  | { type: "enum"; values: readonly string[] };

interface FlagSpec {
  kind: Kind;
  default: string | (() => string);
  help: string;
}

const port = { type: "int", min: 0, max: 65535 } as const;
const positive = { type: "int", min: 1, max: 2 ** 31 - 1 } as const;

const FLAGS: Record<keyof Config, FlagSpec> = {
  client_port: { kind: port, default: "9000", help: "front door port for clients" },
  admin_port: { kind: port, default: "9001", help: "admin HTTP API port" },
  admin_host: { kind: { type: "string" }, default: "127.0.0.1", help: "admin API bind address" },
  host: { kind: { type: "string" }, default: "0.0.0.0", help: "client-facing bind address" },
  advertise_host: {
    kind: { type: "string" },
    default: "",
    help: "host put in 303 Location headers; empty: the address the client reached",
  },
  workers: {
    kind: { type: "int", min: 1, max: 256 },
    default: () => String(navigator.hardwareConcurrency || 1),
    help: "shard workers in this process (default: the core count)",
  },
  shard_port_base: {
    kind: port,
    default: "9010",
    help: "shard k listens on shard_port_base + k (0: ephemeral ports)",
  },
  pid_file: { kind: { type: "string" }, default: "ipush_server.pid", help: "pid file path" },
  storage: {
    kind: { type: "enum", values: ["memory", "sqlite", "cassandra"] },
    default: "sqlite",
    help: "message store: sqlite (embedded, durable) | cassandra | memory (lost on restart)",
  },
  data_dir: { kind: { type: "string" }, default: "data", help: "directory for stored data" },
  sqlite_synchronous: {
    kind: { type: "enum", values: ["normal", "full"] },
    default: "normal",
    help: "sqlite: normal survives a process crash; full (an fsync a commit) also power loss",
  },
  cassandra_contact_points: {
    kind: { type: "string" },
    default: "127.0.0.1:9042",
    help: "cassandra: comma-separated host:port list",
  },
  cassandra_local_dc: {
    kind: { type: "string" },
    default: "datacenter1",
    help: "cassandra: the local datacenter",
  },
  cassandra_keyspace: { kind: { type: "string" }, default: "ipush", help: "cassandra: keyspace" },
  cassandra_consistency: {
    kind: {
      type: "enum",
      values: ["ONE", "LOCAL_ONE", "QUORUM", "LOCAL_QUORUM", "ALL", "EACH_QUORUM"],
    },
    default: "LOCAL_QUORUM",
    help: "cassandra: consistency level of reads and writes",
  },
  storage_timeout_ms: {
    kind: positive,
    default: "3000",
    help: "a store request slower than this fails (and the send is refused with 503)",
  },
  heartbeat_timeout_sec: {
    kind: positive,
    default: "90",
    help: "close a client connection silent this long",
  },
  max_frame_bytes: { kind: positive, default: "65536", help: "largest chunk body accepted" },
  max_head_bytes: { kind: positive, default: "8192", help: "largest request head accepted" },
  handshake_timeout_sec: {
    kind: positive,
    default: "10",
    help: "time allowed for a complete request head",
  },
  max_output_bytes: {
    kind: positive,
    default: "1048576",
    help: "unsent bytes a connection may queue before it is closed as too slow",
  },
  max_connections: {
    kind: { type: "int", min: 0, max: 2 ** 31 - 1 },
    default: "0",
    help: "client sockets this process holds at most (past it: 503 server full); " +
      "0: its descriptor limit less 512",
  },
  malloc_trim_sec: {
    kind: { type: "int", min: 0, max: 86_400 },
    default: "10",
    help: "return heap memory freed by native code to the kernel this often (glibc; 0: never)",
  },
  storage_queue_limit: {
    kind: positive,
    default: "100000",
    help: "messages waiting for storage before sends are refused with 503",
  },
  msg_limit: { kind: positive, default: "1000", help: "most messages /msg lists at once" },
  overload_ms: {
    kind: positive,
    default: "250",
    help: "admin work is refused (503, Retry-After) while even its fastest requests take longer",
  },
  max_inflight: {
    kind: positive,
    default: "200000",
    help: "messages the admin API holds in flight at most (past it: 503, Retry-After)",
  },
  channel_cache_size: {
    kind: positive,
    default: "10000",
    help: "channels whose members a shard keeps cached (the least recently used go first)",
  },
  auth: {
    kind: { type: "enum", values: ["none", "file"] },
    default: "none",
    help: "client auth: none (any password) | file (--users_file)",
  },
  users_file: {
    kind: { type: "string" },
    default: "",
    help: "for --auth=file: a 'uid password' pair per line",
  },
  log_level: {
    kind: { type: "enum", values: ["debug", "info", "warn", "error"] },
    default: "info",
    help: "debug | info | warn | error",
  },
  node_id: { kind: { type: "string" }, default: "node1", help: "this node's id in the cluster" },
  cluster_nodes: {
    kind: { type: "string" },
    default: "",
    help:
      "every node, comma-separated, as id=host:client_port:admin_port:shard_port_base:workers;" +
      " empty: a single node",
  },
  redis_url: {
    kind: { type: "string" },
    default: "",
    help: "Redis for the cluster bus and presence (redis://host:port); needed by a cluster",
  },
  presence_ttl_sec: {
    kind: positive,
    default: "10",
    help: "a node silent this long (dead) no longer shows its users online",
  },
  drain_timeout_sec: {
    kind: positive,
    default: "15",
    help: "on SIGTERM/SIGINT, exit (code 1) if draining takes longer than this",
  },
  debug_api: {
    kind: { type: "bool" },
    default: "false",
    help: "true: POST /debug/crash?shard=k on the admin port crashes a shard (supervision drills)",
  },
};

/** A flag problem; the message names the flag. */
export class FlagError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FlagError";
  }
}

/** The result of parsing: settings to run with, or a request for help. */
export type ParsedFlags = { help: true } | { help: false; config: Config };

/**
 * Parses `args` (flagfiles expanded in place, later flags winning). `readFile` is injected
 * so tests need no files.
 */
export function parseFlags(
  args: readonly string[],
  readFile: (path: string) => string = Deno.readTextFileSync,
): ParsedFlags {
  // Files first, then the command line: a flag given on the command line overrides the
  // flagfile wherever it stands (inside a file, later lines win, nested files in place).
  const fromFiles: string[] = [];
  const fromCommandLine: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const path = flagfilePath(args, i);
    if (path === null) fromCommandLine.push(args[i]);
    else {
      if (args[i] === "--flagfile") i++;
      fromFiles.push(...expandFlagfiles([`--flagfile=${path}`], readFile, 0));
    }
  }
  const tokens = [...fromFiles, ...fromCommandLine];
  const options: Record<string, { type: "string" | "boolean" }> = Object.fromEntries(
    Object.keys(FLAGS).map((name) => [name, { type: "string" as const }]),
  );
  options.help = { type: "boolean" };
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({ args: tokens, options, strict: true, allowPositionals: false }).values;
  } catch (error) {
    throw new FlagError(describeParseError(error));
  }
  if ("help" in values) return { help: true };
  const config: Record<string, string | number | boolean> = {};
  for (const [name, spec] of Object.entries(FLAGS)) {
    const given = values[name] as string | undefined;
    const raw = given ?? (typeof spec.default === "function" ? spec.default() : spec.default);
    config[name] = convert(name, raw, spec.kind);
  }
  return { help: false, config: config as unknown as Config };
}

function expandFlagfiles(
  args: readonly string[],
  readFile: (path: string) => string,
  depth: number,
): string[] {
  if (depth > 8) throw new FlagError("--flagfile nests too deeply");
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const path = flagfilePath(args, i);
    if (path === null) {
      out.push(args[i]);
      continue;
    }
    if (args[i] === "--flagfile") i++;
    let text: string;
    try {
      text = readFile(path);
    } catch (error) {
      throw new FlagError(`--flagfile=${path}: ${(error as Error).message}`);
    }
    out.push(...expandFlagfiles(flagLines(text), readFile, depth + 1));
  }
  return out;
}

/** The path if `args[i]` is `--flagfile=PATH` or `--flagfile PATH`; null otherwise. */
function flagfilePath(args: readonly string[], i: number): string | null {
  if (args[i].startsWith("--flagfile=")) return args[i].slice("--flagfile=".length);
  if (args[i] !== "--flagfile") return null;
  if (i + 1 >= args.length) throw new FlagError("flag --flagfile needs a value (--name=value)");
  return args[i + 1];
}

/**
 * The flags of a flagfile's text: one a line; `#` starts a comment at the start of a line
 * or after white space, so a `#` inside a value (a password in a URL) is kept.
 */
export function flagLines(text: string): string[] {
  return text.split("\n").map((line) => line.replace(/(^|\s)#.*$/, "").trim()).filter(Boolean);
}

function describeParseError(error: unknown): string {
  const message = (error as Error).message;
  const unknown = /Unknown option '([^']+)'/.exec(message);
  if (unknown) return `unknown flag ${unknown[1]}`;
  const missing = /Option '(--[^ ']+)[^']*' argument missing/.exec(message);
  if (missing) return `flag ${missing[1]} needs a value (--name=value)`;
  if (/Unexpected argument '([^']+)'/.test(message)) {
    return `unexpected argument ${/Unexpected argument '([^']+)'/.exec(message)![1]}`;
  }
  return message;
}

function convert(name: string, raw: string, kind: Kind): string | number | boolean {
  switch (kind.type) {
    case "int": {
      const value = /^-?\d+$/.test(raw) ? Number(raw) : NaN;
      if (!Number.isSafeInteger(value) || value < kind.min || value > kind.max) {
        throw new FlagError(
          `bad value for --${name}: '${raw}' (an integer from ${kind.min} to ${kind.max})`,
        );
      }
      return value;
    }
    case "enum":
      if (!kind.values.includes(raw)) {
        throw new FlagError(`bad value for --${name}: '${raw}' (one of ${kind.values.join(", ")})`);
      }
      return raw;
    case "bool":
      if (raw !== "true" && raw !== "false") {
        throw new FlagError(`bad value for --${name}: '${raw}' (true or false)`);
      }
      return raw === "true";
    case "string":
      return raw;
  }
}

/** The `--help` text: every flag with its default and meaning. */
export function helpText(): string {
  const rows = Object.entries(FLAGS).map(([name, spec]) => {
    const fallback = typeof spec.default === "function" ? spec.default() : spec.default;
    return `  --${name}=${JSON.stringify(fallback)}\n      ${spec.help}`;
  });
  return [
    "usage: deno task start [--flagfile=conf/default.conf] [--name=value ...]",
    "",
    "Flags (default shown; the command line overrides a flagfile):",
    "  --flagfile=PATH\n      read flags from PATH, one --name=value a line, # comments",
    ...rows,
    "",
  ].join("\n");
}
