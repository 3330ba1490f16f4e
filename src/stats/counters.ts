/**
 * The counters a shard keeps, as plain numbers that are cheap to bump and to post to the
 * main thread, which sums them over shards for `/stats`.
 *
 * @module
 */

/** Received frames by type, named as `/stats` names them. */
export interface RecvTypeCounters {
  ack: number;
  cmsg: number;
  hb: number;
  msg: number;
  sub: number;
  unsub: number;
}

/** One shard's counters. Totals only ever grow; `user_number` is a gauge. */
export interface ShardCounters {
  recv_type: RecvTypeCounters;
  total_recv_bytes: number;
  total_recv_number: number;
  total_send_bytes: number;
  total_send_number: number;
  error_number: number;
  /** Complete request heads read on client ports (`request.Connect` in `/stats`). */
  connect_request_number: number;
  bad_request_number: number;
  auth_fail_number: number;
  redirect_number: number;
  connect: number;
  disconnect: number;
  reconnect: number;
  /** Distinct uids with at least one open connection. */
  user_number: number;
  /** Open client connections. */
  connection_number: number;
}

/** Fresh zeroed counters. */
export function newShardCounters(): ShardCounters {
  return {
    recv_type: { ack: 0, cmsg: 0, hb: 0, msg: 0, sub: 0, unsub: 0 },
    total_recv_bytes: 0,
    total_recv_number: 0,
    total_send_bytes: 0,
    total_send_number: 0,
    error_number: 0,
    connect_request_number: 0,
    bad_request_number: 0,
    auth_fail_number: 0,
    redirect_number: 0,
    connect: 0,
    disconnect: 0,
    reconnect: 0,
    user_number: 0,
    connection_number: 0,
  };
}

/** Adds `from` into `into`, field by field. */
export function addCounters(into: ShardCounters, from: ShardCounters): void {
  for (const key of Object.keys(from.recv_type) as (keyof RecvTypeCounters)[]) {
    into.recv_type[key] += from.recv_type[key];
  }
  for (const key of Object.keys(from) as (keyof ShardCounters)[]) {
    if (key !== "recv_type") into[key] += from[key];
  }
}
