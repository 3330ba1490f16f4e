/**
 * The `/stats` report (PROTOCOL.md §3): the shards' counters summed, with rates sampled
 * once a second on the main thread. Keys are only ever added, never removed or renamed.
 *
 * @module
 */

import {
  addCounters,
  newShardCounters,
  type ShardCounters,
  type ShardHistogramData,
  withoutGauges,
} from "./counters.ts";

/** Microseconds between 1601-01-01 and 1970-01-01: the original server's timestamp epoch. */
const EPOCH_1601_US = 11_644_473_600_000_000;

/** What a shard reports of itself, each second and when asked. */
export interface ShardReport {
  counters: ShardCounters;
  histograms: ShardHistogramData;
  /** Why the shard's last store call failed; null while its store answers. */
  storeError: string | null;
}

interface Peaks {
  recvBytes: number;
  recvNumber: number;
  sendBytes: number;
  sendNumber: number;
  userGrowth: number;
  userReduce: number;
  users: number;
}

/** Collects counters and produces the report. */
export class StatsBook {
  /** The main thread's own counters: its front door's, and the node's (cluster, Redis). */
  readonly frontDoor: ShardCounters = newShardCounters();
  /** Admin requests by name (`Stats`, `Pub` ...). */
  readonly requests: Record<string, number> = {};
  #started = new Date();
  #shards = new Map<number, ShardReport>();
  /** Counters of shards that were replaced (crashed and restarted): totals never shrink. */
  #retired = newShardCounters();
  #previous: ShardCounters | null = null;
  #peaks: Peaks = {
    recvBytes: 0,
    recvNumber: 0,
    sendBytes: 0,
    sendNumber: 0,
    userGrowth: 0,
    userReduce: 0,
    users: 0,
  };

  /** When the book was started (the process, near enough). */
  get started(): Date {
    return this.#started;
  }

  /** Records a shard's latest report. */
  update(index: number, report: ShardReport): void {
    this.#shards.set(index, report);
  }

  /** A shard is being replaced: keep its totals, drop its gauges. */
  retire(index: number): void {
    const last = this.#shards.get(index);
    if (!last) return;
    this.#shards.delete(index);
    addCounters(this.#retired, withoutGauges(last.counters));
  }

  /** The latest report of each running shard, by its index within the node. */
  shards(): ReadonlyMap<number, ShardReport> {
    return this.#shards;
  }

  /** Counts an admin request. */
  count(request: string): void {
    this.requests[request] = (this.requests[request] ?? 0) + 1;
  }

  /** Takes the once-a-second sample that the peaks come from. */
  sample(): void {
    const now = this.#total();
    const before = this.#previous;
    this.#previous = now;
    const peaks = this.#peaks;
    peaks.users = Math.max(peaks.users, now.user_number);
    if (!before) return;
    peaks.recvBytes = Math.max(peaks.recvBytes, now.total_recv_bytes - before.total_recv_bytes);
    peaks.recvNumber = Math.max(
      peaks.recvNumber,
      now.total_recv_number - before.total_recv_number,
    );
    peaks.sendBytes = Math.max(peaks.sendBytes, now.total_send_bytes - before.total_send_bytes);
    peaks.sendNumber = Math.max(
      peaks.sendNumber,
      now.total_send_number - before.total_send_number,
    );
    const change = now.user_number - before.user_number;
    peaks.userGrowth = Math.max(peaks.userGrowth, change);
    peaks.userReduce = Math.max(peaks.userReduce, -change);
  }

  /** The report, in PROTOCOL.md's shape. */
  report(): Record<string, unknown> {
    const total = this.#total();
    const seconds = Math.max(1, (Date.now() - this.#started.getTime()) / 1000);
    const peaks = this.#peaks;
    return {
      auth_fail_number: total.auth_fail_number,
      auth_unavailable_number: total.auth_unavailable_number,
      bad_request_number: total.bad_request_number,
      error_number: total.error_number,
      forbidden_number: total.forbidden_number,
      limited: {
        handshakes: total.limit_handshakes_number,
        heads: total.limit_heads_number,
        messages: total.limit_messages_number,
        uid_channels: total.limit_channels_number,
        uid_connections: total.limit_connections_number,
      },
      recv_type: {
        ack: total.recv_ack,
        cmsg: total.recv_cmsg,
        hb: total.recv_hb,
        msg: total.recv_msg,
        sub: total.recv_sub,
        unsub: total.recv_unsub,
      },
      redirect_number: total.redirect_number,
      request: { Connect: total.connect_request_number, ...this.requests },
      server_start_datetime: formatLocal(this.#started),
      server_start_timestamp: this.#started.getTime() * 1000 + EPOCH_1601_US,
      throughput: {
        avg_recv_bytes_per_second: Math.round(total.total_recv_bytes / seconds),
        avg_recv_number_per_second: Math.round(total.total_recv_number / seconds),
        avg_send_bytes_per_second: Math.round(total.total_send_bytes / seconds),
        avg_send_number_per_second: Math.round(total.total_send_number / seconds),
        max_recv_bytes_per_second: peaks.recvBytes,
        max_recv_number_per_second: peaks.recvNumber,
        max_send_bytes_per_second: peaks.sendBytes,
        max_send_number_per_second: peaks.sendNumber,
        total_recv_bytes: total.total_recv_bytes,
        total_recv_number: total.total_recv_number,
        total_send_bytes: total.total_send_bytes,
        total_send_number: total.total_send_number,
      },
      transport: {
        poll: {
          connection_number: total.poll_connection_number,
          send_number: total.poll_send_number,
        },
        send: { recv_number: total.send_recv_number, request_number: total.send_request_number },
        sse: { connection_number: total.sse_connection_number, send_number: total.sse_send_number },
        tcp: {
          connection_number: total.tcp_connection_number,
          recv_number: total.tcp_recv_number,
          send_number: total.tcp_send_number,
        },
        ws: {
          connection_number: total.ws_connection_number,
          recv_number: total.ws_recv_number,
          send_number: total.ws_send_number,
        },
      },
      user: {
        connect: total.connect,
        connection_number: total.connection_number,
        disconnect: total.disconnect,
        max_user_growth_per_second: peaks.userGrowth,
        max_user_number: Math.max(peaks.users, total.user_number),
        max_user_reduce_per_second: peaks.userReduce,
        reconnect: total.reconnect,
        user_number: total.user_number,
      },
    };
  }

  #total(): ShardCounters {
    const total = newShardCounters();
    addCounters(total, this.frontDoor);
    addCounters(total, this.#retired);
    for (const report of this.#shards.values()) addCounters(total, report.counters);
    return total;
  }
}

/** `2015/04/16 17:21:57`, in the server's local time, as the original printed it. */
function formatLocal(date: Date): string {
  const two = (n: number) => String(n).padStart(2, "0");
  return `${date.getFullYear()}/${two(date.getMonth() + 1)}/${two(date.getDate())} ${
    two(date.getHours())
  }:${two(date.getMinutes())}:${two(date.getSeconds())}`;
}
