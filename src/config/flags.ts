/**
 * The daemon's flags: the core ones declared here, the storage ones by the store backends
 * (`storage/registry.ts`), and {@linkcode Config}, the settings they give, derived from the
 * declarations. The flag syntax and `--help` are `core/flag_spec.ts`.
 *
 * @module
 */

import {
  bool,
  decimal,
  type FlagValues,
  helpFor,
  int,
  oneOf,
  type Parsed,
  parseFlagsWith,
  port,
  positive,
  text,
} from "../core/flag_spec.ts";
import { LOG_FORMATS } from "../core/log.ts";
import { STORAGE_FLAGS } from "../storage/registry.ts";

const CORE_FLAGS = {
  client_port: port("9000", "front door port for clients"),
  admin_port: port("9001", "admin HTTP API port"),
  admin_host: text("127.0.0.1", "admin API bind address"),
  host: text("0.0.0.0", "client-facing bind address"),
  advertise_host: text(
    "",
    "host put in 303 Location headers; empty: the address the client reached",
  ),
  workers: int(
    1,
    256,
    () => String(navigator.hardwareConcurrency || 1),
    "shard workers in this process (default: the core count)",
  ),
  shard_port_base: port("9010", "shard k listens on shard_port_base + k (0: ephemeral ports)"),
  pid_file: text("ipush_server.pid", "pid file path"),
  heartbeat_timeout_sec: positive("90", "close a client connection silent this long"),
  max_frame_bytes: positive("65536", "largest chunk body accepted"),
  max_head_bytes: positive("8192", "largest request head accepted"),
  handshake_timeout_sec: positive("10", "time allowed for a complete request head"),
  max_output_bytes: positive(
    "1048576",
    "unsent bytes a connection may queue before it is closed as too slow",
  ),
  // Browsers: WebSocket, server-sent events, long-poll and /send on the client ports.
  cors_origins: text(
    "",
    "origins whose web pages may use the client ports, comma-separated, or *; " +
      "empty: no CORS headers",
  ),
  session_wait_sec: positive(
    "30",
    "a long-poll client's session waits this long for its next poll, then is forgotten",
  ),
  max_send_bytes: positive("1048576", "largest /send body accepted (past it: 413)"),
  max_connections: int(
    0,
    2 ** 31 - 1,
    "0",
    "client sockets this process holds at most (past it: 503 server full); " +
      "0: its descriptor limit less 512",
  ),
  malloc_trim_sec: int(
    0,
    86_400,
    "10",
    "return freed memory to the kernel this often: the main thread's heap once quiet " +
      "(with --v8-flags=--expose-gc), then glibc's free pages (0: never)",
  ),
  msg_limit: positive("1000", "most messages /msg lists at once"),
  overload_ms: positive(
    "150",
    "admin work is refused (503, Retry-After) while even its fastest requests take longer, or its queue twice as long to drain",
  ),
  max_inflight: positive(
    "200000",
    "messages the admin API holds in flight at most (past it: 503, Retry-After)",
  ),
  // Devices (PROTOCOL.md §7).
  max_devices: positive(
    "32",
    "devices a uid may have seen within --device_ttl_days (past it: too many devices)",
  ),
  device_ttl_days: decimal(
    0.000_01,
    36_500,
    "30",
    "a device unseen this long no longer counts, nor holds its uid's messages back",
  ),
  channel_cache_size: positive(
    "10000",
    "channels whose members a shard keeps cached (the least recently used go first)",
  ),
  auth: oneOf(
    ["none", "file", "http", "token"],
    "none",
    "client auth: none (any password) | file (--users_file) | http (--auth_http_url) | " +
      "token (a JWT: --auth_token_secret or --auth_token_key_file)",
  ),
  users_file: text("", "for --auth=file: a 'uid password' pair per line"),
  // Access control: auth backends, tokens, the admin token, limits (docs/protocol-notes.md).
  auth_http_url: text(
    "",
    "for --auth=http: the backend's base URL; ipush asks <url>/user and <url>/channel",
  ),
  auth_http_timeout_ms: positive(
    "2000",
    "for --auth=http: a question unanswered this long is 503 auth unavailable",
  ),
  auth_http_max_inflight: positive(
    "64",
    "for --auth=http: requests at the backend at once, at most",
  ),
  auth_cache_sec: int(
    0,
    86_400,
    "60",
    "for --auth=http: how long an allow is cached (a denial at most 5 s); 0: never",
  ),
  auth_token_secret: text("", "for --auth=token: the HS256 secret (at least 32 bytes)"),
  auth_token_key_file: text(
    "",
    "for --auth=token: a PEM public key (RSA: RS256, EC P-256: ES256)",
  ),
  auth_token_leeway_sec: int(
    0,
    3600,
    "10",
    "for --auth=token: clock skew allowed when checking exp and nbf",
  ),
  admin_token: text(
    "",
    "every admin request (and node-to-node /cluster/ops) needs Authorization: Bearer <it>; " +
      "needed with a non-loopback --admin_host",
  ),
  max_connections_per_uid: positive(
    "32",
    "open connections one uid may hold on its shard (past it: 429 too many connections)",
  ),
  max_channels_per_uid: positive(
    "1000",
    "channels one uid may subscribe to with y=1 (past it: too many channels)",
  ),
  client_msg_rate: positive(
    "100",
    "messages a second one connection (or one device's /sends) may send, acks aside (past it: too many messages)",
  ),
  client_msg_burst: int(
    1,
    1_000_000,
    "500",
    "messages one connection may send at once before --client_msg_rate applies",
  ),
  max_handshakes_per_address: positive(
    "1024",
    "unfinished handshakes one client address may hold on a client port (past it: 429)",
  ),
  max_heads_per_sec_per_address: positive(
    "1000",
    "request heads a second one client address may send to the front door (past it: 429)",
  ),
  log_level: oneOf(["debug", "info", "warn", "error"], "info", "debug | info | warn | error"),
  // Operations: log format.
  log_format: oneOf(
    LOG_FORMATS,
    "text",
    "text (a line of words) | json (one JSON object a line: time, level, component, node, message)",
  ),
  node_id: text("node1", "this node's id in the cluster"),
  cluster_nodes: text(
    "",
    "every node, comma-separated, as id=host:client_port:admin_port:shard_port_base:workers;" +
      " empty: a single node",
  ),
  redis_url: text(
    "",
    "Redis for the cluster bus and presence (redis://host:port); needed by a cluster",
  ),
  presence_ttl_sec: positive(
    "10",
    "a node silent this long (dead) no longer shows its users online",
  ),
  // Cluster without restarts: membership in Redis, leases, fencing (docs/cluster.md).
  cluster: oneOf(
    ["static", "redis"],
    "static",
    "static (--cluster_nodes, or a single node) | redis (members register in --redis_url " +
      "under a lease of --presence_ttl_sec; join and leave without restarts)",
  ),
  cluster_name: text(
    "ipush",
    "the cluster's name (its Redis keys: membership, the bus, presence); nodes of one cluster share it",
  ),
  bus_retention_sec: positive(
    "600",
    "channel messages stay this long in the cluster bus's Redis stream: a node cut off from " +
      "Redis (or restarted) for less catches up on what was published meanwhile",
  ),
  drain_timeout_sec: positive(
    "15",
    "on SIGTERM/SIGINT, exit (code 1) if draining takes longer than this",
  ),
  debug_api: bool(
    "false",
    "true: POST /debug/crash?shard=k[&after=bus_commit|pub_commit] on the admin port crashes a " +
      "shard (at once, or right after its next commit of bus entries or of a /pub; drills)",
  ),
};

/** Every flag the daemon takes. */
export const FLAGS = { ...CORE_FLAGS, ...STORAGE_FLAGS };

/** The daemon's settings, one field per flag. */
export type Config = FlagValues<typeof FLAGS>;

/**
 * Parses `args` (flagfiles expanded in place, later flags winning). `readFile` is injected
 * so tests need no files.
 */
export function parseFlags(
  args: readonly string[],
  readFile?: (path: string) => string,
): Parsed<Config> {
  return parseFlagsWith(FLAGS, args, readFile);
}

/** The `--help` text: every flag with its default and meaning. */
export function helpText(): string {
  return helpFor(FLAGS, "usage: deno task start [--flagfile=conf/default.conf] [--name=value ...]");
}
