/**
 * The counters, declared once: each one's name, kind (a `counter` only grows, a `gauge` is a
 * level), help, which threads keep it, and the Prometheus series it is in `/metrics`. A shard
 * keeps them as plain numbers that are cheap to bump and to post to the main thread, which
 * sums them over shards; `/stats` renders them in PROTOCOL.md's shape (`report.ts`), and
 * `/metrics` renders the same numbers shard by shard (`metrics.ts`). Histograms are declared
 * here too, as fixed bucket arrays, so an observation is a short scan and two additions.
 *
 * Labels: a Prometheus family with labels (messages received by type, connections by
 * transport) is several counters here, one per label value, each naming the family and its
 * labels; a bump stays a field increment. `/metrics` adds the `shard` label itself.
 *
 * @module
 */

/** How a counter's values behave. */
export type CounterKind = "counter" | "gauge";

/**
 * Which threads keep a counter: `shard` the shard workers; `port` every client port (the
 * shards' and the front door's, on the main thread); `node` the main thread alone (the
 * node's own: cluster, Redis, admin API).
 */
export type CounterScope = "shard" | "port" | "node";

/** A Prometheus metric family: its name after `ipush_`, and its help. */
export interface Family {
  name: string;
  /** Null for a family of one counter: its help is the counter's. */
  help: string | null;
}

/** One series of a family: the family, and this counter's label values. */
export interface Series {
  family: Family;
  labels: Readonly<Record<string, string>>;
}

interface CounterSpec {
  kind: CounterKind;
  help: string;
  scope: CounterScope;
  /** Its series in `/metrics`; absent for a counter only `/stats` shows. */
  metric?: Series;
}

/** A family of one series: a counter's own metric. */
const metric = (name: string): Series => ({ family: { name, help: null }, labels: {} });

/** A family of several series told apart by labels; call it with each one's labels. */
function family(name: string, help: string): (labels: Record<string, string>) => Series {
  const shared = { name, help };
  return (labels) => ({ family: shared, labels });
}

const spec =
  (kind: CounterKind, scope: CounterScope) => (help: string, series?: Series): CounterSpec => ({
    kind,
    help,
    scope,
    metric: series,
  });
const counter = spec("counter", "shard");
const gauge = spec("gauge", "shard");
const portCounter = spec("counter", "port");
const nodeCounter = spec("counter", "node");
const nodeGauge = spec("gauge", "node");

const received = family(
  "client_messages_received_total",
  "valid messages received from clients, by type (y)",
);
const connections = family("connections", "open client sessions, by transport");
const transportReceived = family(
  "transport_messages_received_total",
  "messages received from clients, by what carried them (a transport, or /send)",
);
const transportSent = family(
  "transport_messages_sent_total",
  "messages written to clients, by transport",
);
const accepted = family(
  "messages_accepted_total",
  "messages a shard took for one of its uids, by type: to a user (y=3), or one member's " +
    "copy of a channel message (y=4)",
);
const sent = family(
  "messages_sent_total",
  "messages written to client connections (live and replayed), by type",
);
const limited = family(
  "limit_refusals_total",
  "connects, subscribes and messages refused past a per-uid or per-address limit, by limit",
);
const forwards = family(
  "cluster_forwards_total",
  "work sent to other nodes: ops for their uids over HTTP, channel messages over the Redis bus",
);
const forwardErrors = family(
  "cluster_forward_errors_total",
  "work that did not reach another node (the work fails with 503)",
);

/** Every counter a shard (and the front door) keeps. */
export const COUNTERS = {
  connect_request_number: portCounter(
    "complete request heads read on client ports",
    metric("client_requests_total"),
  ),
  bad_request_number: portCounter(
    "connects refused: malformed, not found or not allowed",
    metric("client_bad_requests_total"),
  ),
  auth_fail_number: portCounter(
    "connects refused for a wrong password or token",
    metric("auth_failures_total"),
  ),
  // Access control: auth backends, channel permissions, limits (docs/protocol-notes.md).
  auth_unavailable_number: portCounter(
    "connects refused as the auth backend did not answer (503)",
    metric("auth_unavailable_total"),
  ),
  forbidden_number: counter(
    "subscribes and channel messages refused without permission",
    metric("forbidden_total"),
  ),
  limit_connections_number: counter(
    "connects refused past --max_connections_per_uid",
    limited({ limit: "connections_per_uid" }),
  ),
  limit_channels_number: counter(
    "subscribes refused past --max_channels_per_uid",
    limited({ limit: "channels_per_uid" }),
  ),
  limit_messages_number: counter(
    "client messages refused past --client_msg_rate",
    limited({ limit: "client_msg_rate" }),
  ),
  limit_handshakes_number: portCounter(
    "sockets refused past --max_handshakes_per_address",
    limited({ limit: "handshakes_per_address" }),
  ),
  limit_heads_number: portCounter(
    "request heads refused past --max_heads_per_sec_per_address",
    limited({ limit: "heads_per_sec_per_address" }),
  ),
  redirect_number: portCounter(
    "connects redirected (303) to the owning shard",
    metric("redirects_total"),
  ),
  connect: counter("sessions opened", metric("sessions_opened_total")),
  disconnect: counter("sessions closed", metric("sessions_closed_total")),
  reconnect: counter(
    "sessions opened within 60 s of the same uid's last close on the shard",
    metric("reconnects_total"),
  ),
  user_number: gauge("uids with at least one open session", metric("users")),
  connection_number: gauge("open sessions"),
  error_number: portCounter(
    "errors answered to clients, and connections closed for them",
    metric("client_errors_total"),
  ),
  total_recv_bytes: counter(
    "bytes read from clients after their handshake",
    metric("client_received_bytes_total"),
  ),
  total_recv_number: counter(
    "messages received from clients",
    metric("client_received_frames_total"),
  ),
  total_send_bytes: counter(
    "bytes written to clients, framing included",
    metric("client_sent_bytes_total"),
  ),
  total_send_number: counter(
    "messages written to clients",
    metric("client_sent_frames_total"),
  ),
  recv_hb: counter("heartbeats received (y=0)", received({ type: "hb" })),
  recv_sub: counter("subscribes received (y=1)", received({ type: "sub" })),
  recv_unsub: counter("unsubscribes received (y=2)", received({ type: "unsub" })),
  recv_msg: counter("messages to a user received (y=3)", received({ type: "msg" })),
  recv_cmsg: counter("channel messages received (y=4)", received({ type: "cmsg" })),
  recv_ack: counter("acks received (y=5)", received({ type: "ack" })),
  // Operations: metrics, health, dashboard.
  accepted_msg: counter("messages to a user taken (y=3)", accepted({ type: "msg" })),
  accepted_cmsg: counter("channel message copies taken (y=4)", accepted({ type: "cmsg" })),
  sent_msg: counter("messages to a user written to clients (y=3)", sent({ type: "msg" })),
  sent_cmsg: counter("channel messages written to clients (y=4)", sent({ type: "cmsg" })),
  slow_consumer_closes: counter(
    "connections closed for queueing more than --max_output_bytes unsent",
    metric("slow_consumer_closes_total"),
  ),
  journal_queue: gauge(
    "messages waiting for the store or being written (not yet durable)",
    metric("journal_queue_messages"),
  ),
  store_up: gauge(
    "1 while the shard's last store call succeeded, 0 after one failed",
    metric("store_up"),
  ),
  store_errors: counter("store calls that failed", metric("store_errors_total")),
  cluster_forwarded_ops: nodeCounter("ops sent to other nodes", forwards({ via: "http" })),
  cluster_forward_errors: nodeCounter(
    "ops that did not reach their node",
    forwardErrors({ via: "http" }),
  ),
  bus_published: nodeCounter("channel messages sent on the bus", forwards({ via: "bus" })),
  bus_errors: nodeCounter(
    "channel messages the bus did not take, or this node did not store in time",
    forwardErrors({ via: "bus" }),
  ),
  redis_errors: nodeCounter(
    "errors of the node's Redis connections (each failed attempt while it is unreachable)",
    metric("redis_errors_total"),
  ),
  redis_up: nodeGauge(
    "1 while the Redis this node needs answers (also without --redis_url: none is needed)",
    metric("redis_up"),
  ),
  shards_up: nodeGauge("shard workers of this node that are running", metric("shards_up")),
  shards: nodeGauge("shard workers this node runs when all are up", metric("shards")),
  admin_inflight: nodeGauge(
    "messages the admin API is working on (admission control's count)",
    metric("admin_inflight_messages"),
  ),
  // Browsers: per transport (a long-poll client counts while its session waits between polls).
  tcp_connection_number: gauge(
    "open sessions on the raw chunk stream",
    connections({ transport: "tcp" }),
  ),
  tcp_recv_number: counter(
    "messages received on the raw chunk stream",
    transportReceived({ transport: "tcp" }),
  ),
  tcp_send_number: counter(
    "messages written to the raw chunk stream",
    transportSent({ transport: "tcp" }),
  ),
  ws_connection_number: gauge("open sessions on a WebSocket", connections({ transport: "ws" })),
  ws_recv_number: counter(
    "messages received on WebSockets",
    transportReceived({ transport: "ws" }),
  ),
  ws_send_number: counter("messages written to WebSockets", transportSent({ transport: "ws" })),
  sse_connection_number: gauge(
    "open sessions on server-sent events",
    connections({ transport: "sse" }),
  ),
  sse_send_number: counter(
    "messages written as server-sent events",
    transportSent({ transport: "sse" }),
  ),
  poll_connection_number: gauge(
    "long-poll sessions, polling or between two polls",
    connections({ transport: "poll" }),
  ),
  poll_send_number: counter(
    "messages answered to long-polls",
    transportSent({ transport: "poll" }),
  ),
  send_request_number: counter(
    "/send requests answered by the owner",
    metric("send_requests_total"),
  ),
  send_recv_number: counter(
    "messages received by /send (the upstream of SSE and long-poll)",
    transportReceived({ transport: "send" }),
  ),
  // Cluster without restarts: membership, map changes, fencing (docs/cluster.md).
  moved_sessions: counter(
    'sessions closed with {"error":"moved"}: the map gave their uid to another shard',
    metric("moved_sessions_total"),
  ),
  handed_off_uids: counter(
    "uids whose state this shard handed to their new owner in a map change (embedded stores)",
    metric("cluster_handed_off_uids_total"),
  ),
  imported_uids: counter(
    "uids whose state this shard took from their old owner in a map change (embedded stores)",
    metric("cluster_imported_uids_total"),
  ),
  map_changes: nodeCounter(
    "cluster map versions this node applied",
    metric("cluster_map_changes_total"),
  ),
  map_version: nodeGauge(
    "the cluster map version this node serves by (0: a static cluster)",
    metric("cluster_map_version"),
  ),
  fenced: nodeCounter(
    "times this node found its lease lost and re-joined as a new member",
    metric("cluster_fenced_total"),
  ),
} as const;

/** A counter's name. */
export type CounterName = keyof typeof COUNTERS;

/** One shard's counters, a number each. */
export type ShardCounters = Record<CounterName, number>;

const NAMES = Object.keys(COUNTERS) as CounterName[];

/** The received-message counter of each `y`. */
export const RECV_COUNTER = [
  "recv_hb",
  "recv_sub",
  "recv_unsub",
  "recv_msg",
  "recv_cmsg",
  "recv_ack",
] as const satisfies readonly CounterName[];

/**
 * Each transport's counters: its open sessions, messages out and, where the client writes on
 * the connection, messages in (server-sent events and long-poll clients write by `/send`).
 */
export const TRANSPORT_COUNTERS: Record<
  "tcp" | "ws" | "sse" | "poll",
  { connections: CounterName; send: CounterName; recv?: CounterName }
> = {
  tcp: { connections: "tcp_connection_number", send: "tcp_send_number", recv: "tcp_recv_number" },
  ws: { connections: "ws_connection_number", send: "ws_send_number", recv: "ws_recv_number" },
  sse: { connections: "sse_connection_number", send: "sse_send_number" },
  poll: { connections: "poll_connection_number", send: "poll_send_number" },
};

/** Fresh zeroed counters. */
export function newShardCounters(): ShardCounters {
  const counters = {} as ShardCounters;
  for (const name of NAMES) counters[name] = 0;
  return counters;
}

/** Adds `from` into `into`, counter by counter (gauges too: a node's level is its shards'). */
export function addCounters(into: ShardCounters, from: ShardCounters): void {
  for (const name of NAMES) into[name] += from[name];
}

/** `counters` with every gauge at zero: what a shard that is gone still contributes. */
export function withoutGauges(counters: ShardCounters): ShardCounters {
  const left = { ...counters };
  for (const name of NAMES) if (COUNTERS[name].kind === "gauge") left[name] = 0;
  return left;
}

/**
 * Bucket bounds for latencies, in seconds: from half a millisecond (a commit to memory, a
 * delivery with no store) to ten seconds (past `--storage_timeout_ms`).
 */
const LATENCY_BOUNDS = [
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
] as const;

interface HistogramSpec {
  help: string;
  /** Upper bounds of the buckets, rising; a last bucket takes what is above them all. */
  bounds: readonly number[];
  /** Its family name in `/metrics`, after `ipush_`. */
  metric: string;
}

/** Every histogram a shard keeps. */
export const HISTOGRAMS = {
  delivery: {
    help: "seconds from the owning shard taking a message to its frame queued on a live " +
      "connection (store commit included), once per connection",
    bounds: LATENCY_BOUNDS,
    metric: "delivery_latency_seconds",
  },
  store_commit: {
    help: "seconds the store took to make one journal batch of messages durable",
    bounds: LATENCY_BOUNDS,
    metric: "store_commit_seconds",
  },
} as const satisfies Record<string, HistogramSpec>;

/** A histogram's name. */
export type HistogramName = keyof typeof HISTOGRAMS;

/**
 * Observations in fixed buckets. Plain fields, so that posting it to another thread gives
 * the same data as a plain object ({@linkcode HistogramData}).
 */
export class Histogram implements HistogramData {
  readonly bounds: readonly number[];
  readonly counts: number[];
  sum = 0;

  constructor(bounds: readonly number[]) {
    this.bounds = bounds;
    this.counts = new Array(bounds.length + 1).fill(0);
  }

  /** Records `times` observations of `value`. */
  observe(value: number, times = 1): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]) i++;
    this.counts[i] += times;
    this.sum += value * times;
  }
}

/** A histogram's numbers: observations per bucket (not cumulative), and their sum. */
export interface HistogramData {
  /** `counts[i]`: values above `bounds[i - 1]` and at most `bounds[i]`; the last, above all. */
  readonly counts: readonly number[];
  readonly sum: number;
}

/** One shard's histograms. */
export type ShardHistograms = Record<HistogramName, Histogram>;

/** One shard's histograms as another thread receives them. */
export type ShardHistogramData = Readonly<Record<HistogramName, HistogramData>>;

/** Fresh empty histograms. */
export function newShardHistograms(): ShardHistograms {
  const histograms = {} as ShardHistograms;
  for (const name of Object.keys(HISTOGRAMS) as HistogramName[]) {
    histograms[name] = new Histogram(HISTOGRAMS[name].bounds);
  }
  return histograms;
}

/** Adds `from` into `into`, histogram by histogram and bucket by bucket. */
export function addHistograms(into: ShardHistograms, from: ShardHistogramData): void {
  for (const name of Object.keys(HISTOGRAMS) as HistogramName[]) {
    const target = into[name];
    from[name].counts.forEach((count, i) => target.counts[i] += count);
    target.sum += from[name].sum;
  }
}
