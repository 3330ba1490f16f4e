/**
 * What the load generator's parent and its client processes say to each other: one JSON
 * object per line, commands on the child's stdin, events on its stdout.
 *
 * @module
 */

import type { HistogramData } from "./histogram.ts";

/** How a client acknowledges received messages. */
export type AckMode = "each" | "read" | "none";

/** How a client connects: the raw chunk stream, a WebSocket, or long-poll. */
export type ClientTransport = "tcp" | "ws" | "poll";

/** How an ipush client's messages are written (`codec=`, PROTOCOL.md §7). */
export type ClientCodec = "json" | "msgpack";

/** The servers the generator can measure (`target.ts`). */
export const TARGETS = ["ipush", "nchan"] as const;

/** A target's name. */
export type TargetName = typeof TARGETS[number];

/** A target rate in operations per second, or as fast as the in-flight limit allows. */
export type Rate = number | "max";

/** Everything one client process needs to know, sent once with `init`. */
export interface WorkerConfig {
  /** This child's number, 0-based. */
  index: number;
  /** The server measured: its clients' streams and its publish requests. */
  target: TargetName;
  /** nchan: the channel id every client subscribes to itself (fanout); null: its own uid's. */
  subscribeTo: string | null;
  host: string;
  /** Front doors: uid `n`'s first hop is to the (n mod count)th. */
  clientPorts: number[];
  adminHost: string;
  adminPort: number;
  uidPrefix: string;
  /** Password template: `{uid}` and `{n}` (the uid's number) are substituted. */
  password: string;
  /** A file of `uid password` lines whose passwords win over the template; "" for none. */
  passwordFile: string;
  /** This child owns uids `uidPrefix + n` for n in [first, first + count). */
  first: number;
  count: number;
  /** Local addresses to bind client sockets to, round-robin; empty: let the kernel pick. */
  sources: string[];
  transport: ClientTransport;
  codec: ClientCodec;
  heartbeatSec: number;
  ack: AckMode;
  connectTimeoutMs: number;
  maxRedirects: number;
  /** A sent message not delivered within this long counts as timed out. */
  msgTimeoutMs: number;
  /** Scenario start (epoch ms): messages stamped earlier are backlog from older runs. */
  epochMs: number;
  /** Epoch ms after which the child exits whatever it is doing. */
  deadlineMs: number;
}

/** A workload for the `run` phase. */
export type Load =
  /**
   * The back end `/pub`s to this child's online users; with `batch` > 1, that many messages
   * per `/pub/batch` request.
   */
  | { kind: "unicast"; rate: Rate; maxInFlight: number; batch: number }
  /** This child's online users send y=3 to each other. */
  | { kind: "chat"; rate: Rate; maxInFlight: number }
  /** The back end `/pub`s to a channel. */
  | { kind: "channel"; channel: string; rate: Rate; maxInFlight: number }
  /** Only receive. */
  | { kind: "none" };

/** Parent → child. */
export type Command =
  | { cmd: "init"; config: WorkerConfig }
  /** `/sub` every owned uid to the channel. */
  | { cmd: "subscribe"; channel: string; concurrency: number }
  /** Open every owned uid's connection, at most `concurrency` handshakes at a time. */
  | { cmd: "connect"; concurrency: number; startAt: number }
  /** Publish the single probe message (id 0) to a channel. */
  | { cmd: "probe"; channel: string }
  | { cmd: "run"; load: Load; startAt: number; durationMs: number }
  | { cmd: "close" };

/** Phases a child reports the end of. */
export type Phase = "subscribe" | "connect" | "probe" | "run" | "close";

/** Child → parent. */
export type Event =
  | { ev: "ready" }
  /** Cumulative counters and the histogram samples since the previous tick. */
  | {
    ev: "tick";
    counters: Counters;
    reasons: Record<string, number>;
    connect: HistogramData;
    latency: HistogramData;
    /** A paced request's actual send less its due time: how far the generator fell behind. */
    lag: HistogramData;
    /** A publish request's HTTP 200 answer less its due time. */
    answer: HistogramData;
    /** A publish request's refusal (503 or 429) less its due time. */
    refusal: HistogramData;
  }
  /**
   * A phase ended; `counters` are this child's counters at that moment, `before` (for `run`)
   * those when the phase started at `startMs`.
   */
  | {
    ev: "done";
    phase: Phase;
    counters: Counters;
    before?: Counters;
    atMs: number;
    startMs: number;
  }
  | { ev: "fatal"; message: string };

/** A child's cumulative counters. */
export interface Counters {
  /** Connection attempts started (each uid once; a 303 hop is not a new attempt). */
  attempts: number;
  /** Reached 200. */
  connected: number;
  /** Gave up before 200 (status, socket error, timeout). */
  failed: number;
  /** 303 hops followed. */
  redirects: number;
  /** Closed by the server or broken after 200, while we wanted it open. */
  dropped: number;
  /** Open right now (a gauge, summed across children). */
  open: number;
  /** Publish requests sent and not answered yet (a gauge, summed across children). */
  pubInFlight: number;
  subOk: number;
  subFailed: number;
  /** Messages published: `/pub` answered ok, or their `/pub/batch` line did. */
  pubOk: number;
  /**
   * Messages not published for another reason than a refusal: a line's own error in a
   * `/pub/batch` answer, another HTTP status, a socket error or time-out.
   */
  pubFailed: number;
  /** Messages in publish requests refused whole at the HTTP level (503 or 429). */
  pubRefused: number;
  /** Publish requests answered HTTP 200 (nchan: 201 or 202). */
  requestsOk: number;
  /** Publish requests refused with HTTP 503. */
  refused503: number;
  /** Publish requests refused with HTTP 429. */
  refused429: number;
  /** Refused publish requests (503 or 429) whose answer carried `Retry-After`. */
  refusedRetryAfter: number;
  /** Messages the schedule had due by the end of the load phase but never started. */
  unsent: number;
  /** y=3 frames written by clients (chat). */
  chatSent: number;
  /** y=3/4 frames from this run, with a latency sample each. */
  received: number;
  /** y=3/4 frames stamped before the scenario started (offline backlog of older runs). */
  backlog: number;
  /** y=3/4 frames whose body carries no timestamp (the parent's recovery probes among them). */
  unparsed: number;
  /** y=3 frames with no matching outstanding send (duplicates or after time-out). */
  unmatched: number;
  /** Sends not delivered within the message time-out. */
  timedOut: number;
  hbIn: number;
  hbOut: number;
  acksOut: number;
  /** Frames of other types. */
  otherIn: number;
  /** Framing or JSON errors (each closes its connection). */
  badFrames: number;
  /** Receipts of the fanout probe message. */
  probeReceived: number;
  /** Largest probe latency seen (ms); merged by max, not sum. */
  probeMaxMs: number;
}

/** Fresh zeroed counters. */
export function newCounters(): Counters {
  return {
    attempts: 0,
    connected: 0,
    failed: 0,
    redirects: 0,
    dropped: 0,
    open: 0,
    pubInFlight: 0,
    subOk: 0,
    subFailed: 0,
    pubOk: 0,
    pubFailed: 0,
    pubRefused: 0,
    requestsOk: 0,
    refused503: 0,
    refused429: 0,
    refusedRetryAfter: 0,
    unsent: 0,
    chatSent: 0,
    received: 0,
    backlog: 0,
    unparsed: 0,
    unmatched: 0,
    timedOut: 0,
    hbIn: 0,
    hbOut: 0,
    acksOut: 0,
    otherIn: 0,
    badFrames: 0,
    probeReceived: 0,
    probeMaxMs: 0,
  };
}

/** Adds `from` into `into` (`probeMaxMs` by max). */
export function addCounters(into: Counters, from: Counters): Counters {
  for (const key of Object.keys(into) as (keyof Counters)[]) {
    into[key] = key === "probeMaxMs" ? Math.max(into[key], from[key]) : into[key] + from[key];
  }
  return into;
}

/** Splits a byte stream into lines and parses each as JSON. */
export async function* jsonLines<T>(stream: ReadableStream<Uint8Array>): AsyncGenerator<T> {
  let rest = "";
  for await (const text of stream.pipeThrough(new TextDecoderStream())) {
    rest += text;
    let nl: number;
    while ((nl = rest.indexOf("\n")) >= 0) {
      const line = rest.slice(0, nl).trim();
      rest = rest.slice(nl + 1);
      if (line !== "") yield JSON.parse(line) as T;
    }
  }
}

/** The current time as epoch milliseconds with sub-millisecond precision. */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

/**
 * The `b` payload of every message the load generator sends: the time latency is measured
 * from (epoch ms, see {@linkcode nowMs}; the scheduled send time of a paced message, see
 * `pacer.ts`) and the message id, e.g. `1764000000000.123 42`.
 */
export function stamp(id: number, atMs = nowMs()): string {
  return `${atMs.toFixed(3)} ${id}`;
}

/** Reads a payload written by {@linkcode stamp}; null when `b` is something else. */
export function parseStamp(b: unknown): { ts: number; id: number } | null {
  if (typeof b === "number") return { ts: b, id: -1 };
  if (typeof b !== "string") return null;
  const space = b.indexOf(" ");
  const ts = Number(space < 0 ? b : b.slice(0, space));
  if (!Number.isFinite(ts) || ts <= 0) return null;
  const id = space < 0 ? -1 : Number(b.slice(space + 1));
  return { ts, id: Number.isInteger(id) ? id : -1 };
}
