/**
 * The counters, declared once: each one's name, kind (a `counter` only grows, a `gauge` is a
 * level) and help. A shard keeps them as plain numbers that are cheap to bump and to post to
 * the main thread, which sums them over shards; `/stats` renders them in PROTOCOL.md's shape
 * (`report.ts`), and every other view (`/metrics`) renders from this same table.
 *
 * @module
 */

/** How a counter's values behave. */
export type CounterKind = "counter" | "gauge";

interface CounterSpec {
  kind: CounterKind;
  help: string;
}

const counter = (help: string): CounterSpec => ({ kind: "counter", help });
const gauge = (help: string): CounterSpec => ({ kind: "gauge", help });

/** Every counter a shard (and the front door) keeps. */
export const COUNTERS = {
  connect_request_number: counter("complete request heads read on client ports"),
  bad_request_number: counter("connects refused: malformed, not found or not allowed"),
  auth_fail_number: counter("connects refused for a wrong password"),
  redirect_number: counter("connects redirected (303) to the owning shard"),
  connect: counter("sessions opened"),
  disconnect: counter("sessions closed"),
  reconnect: counter("sessions opened within 60 s of the same uid's last close on the shard"),
  user_number: gauge("uids with at least one open session"),
  connection_number: gauge("open sessions"),
  // Browsers: per transport (a long-poll client counts while its session waits between polls).
  tcp_connection_number: gauge("open sessions on the raw chunk stream"),
  tcp_recv_number: counter("messages received on the raw chunk stream"),
  tcp_send_number: counter("messages written to the raw chunk stream"),
  ws_connection_number: gauge("open sessions on a WebSocket"),
  ws_recv_number: counter("messages received on WebSockets"),
  ws_send_number: counter("messages written to WebSockets"),
  sse_connection_number: gauge("open sessions on server-sent events"),
  sse_send_number: counter("messages written as server-sent events"),
  poll_connection_number: gauge("long-poll sessions, polling or between two polls"),
  poll_send_number: counter("messages answered to long-polls"),
  send_request_number: counter("/send requests answered by the owner"),
  send_recv_number: counter("messages received by /send (the upstream of SSE and long-poll)"),
  error_number: counter("errors answered to clients, and connections closed for them"),
  total_recv_bytes: counter("bytes read from clients after their handshake"),
  total_recv_number: counter("messages received from clients"),
  total_send_bytes: counter("bytes written to clients, framing included"),
  total_send_number: counter("messages written to clients"),
  recv_hb: counter("heartbeats received (y=0)"),
  recv_sub: counter("subscribes received (y=1)"),
  recv_unsub: counter("unsubscribes received (y=2)"),
  recv_msg: counter("messages to a user received (y=3)"),
  recv_cmsg: counter("channel messages received (y=4)"),
  recv_ack: counter("acks received (y=5)"),
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
