/**
 * The shard entry: one Web Worker per shard. It owns its client port, its uids' sessions and
 * its store; it takes requests from the main thread over a {@linkcode Link} and exchanges
 * clients' channel messages with the other shards over a `BroadcastChannel`.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { createAuthenticator } from "../src/auth/auth.ts";
import { createLog, type Log } from "../src/core/log.ts";
import { perTurn } from "../src/thread/batch.ts";
import { ShardMap } from "../src/core/shard_map.ts";
import { Link } from "../src/thread/link.ts";
import {
  CHANNEL_BUS,
  type MainOp,
  type ShardInit,
  type ShardNote,
  type ShardOp,
} from "../src/shard/ops.ts";
import type { ChannelRequest } from "../src/core/requests.ts";
import { Shard } from "../src/shard/shard.ts";
import { WorkQueue } from "../src/shard/work_queue.ts";
import { listen } from "../src/transport/client_port.ts";
import { SocketBudget } from "../src/transport/budget.ts";
import { Session } from "../src/session/session.ts";
import { Journal } from "../src/storage/journal.ts";
import { openStore } from "../src/storage/open.ts";
import type { Store } from "../src/storage/store.ts";
import { newShardCounters } from "../src/stats/counters.ts";

/** Stored messages replayed per store read on connect. */
const REPLAY_PAGE = 500;
const STATS_INTERVAL_MS = 1_000;
const SWEEP_INTERVAL_MS = 1_000;
const COMPACT_INTERVAL_MS = 60_000;
/** Other shards' clients' channel messages being stored and delivered here at once. */
const CHANNEL_MESSAGES_IN_FLIGHT = 1024;

self.onmessage = (event: MessageEvent<ShardInit>) => {
  const { index, config } = event.data;
  const log = createLog(`shard-${index}`, config.log_level);
  // The link takes over `onmessage` now, so requests that arrive while the store opens
  // wait for the shard to be running instead of being lost.
  const running = Promise.withResolvers<RunningShard>();
  const link = new Link(
    self,
    async (op) => (await running.promise).handle(op as ShardOp),
    () => {},
  );
  run(event.data, link, log).then(running.resolve, (error) => {
    log("error", `cannot start: ${error.stack ?? error}`);
    // Tell the main thread, which would otherwise wait for "ready" forever; the link posts
    // at the end of this turn, so close after that.
    link.notify({ type: "failed", reason: error.message ?? String(error) } satisfies ShardNote);
    setTimeout(() => self.close(), 100);
  });
};

interface RunningShard {
  handle(op: ShardOp): Promise<unknown>;
}

async function run({ index, slot, config, shards, budget }: ShardInit, link: Link, log: Log) {
  let map = new ShardMap(shards);
  const counters = newShardCounters();
  const store = await openStore(config);
  const journal = new Journal(
    store,
    config.storage_queue_limit,
    (error) => log("warn", `ack not stored, kept for retry: ${error.message}`),
  );
  const bus = new BroadcastChannel(CHANNEL_BUS);
  const shard = new Shard({
    index,
    map,
    store,
    journal,
    counters,
    replayPage: REPLAY_PAGE,
    channelCacheSize: config.channel_cache_size,
    forward: (request) => link.request({ op: "pub", request } satisfies MainOp),
    // A BroadcastChannel does not echo to its sender: the shard delivers its own part.
    broadcast: perTurn<ChannelRequest>((requests) => bus.postMessage(requests)),
    presence: config.redis_url === ""
      ? undefined
      : (change) => link.notify(change satisfies ShardNote),
    log,
  });
  const fromOtherShards = new WorkQueue<ChannelRequest>(
    CHANNEL_MESSAGES_IN_FLIGHT,
    (request) =>
      shard.publishChannel(request).catch((error) =>
        log("warn", `channel message to ${request.channel}: ${error.message}`)
      ),
  );
  bus.onmessage = (event: MessageEvent<ChannelRequest[]>) => {
    for (const request of event.data) fromOtherShards.push(request);
  };

  let draining = false;
  const server = await listen(
    {
      handshake: {
        maxHeadBytes: config.max_head_bytes,
        timeoutMs: config.handshake_timeout_sec * 1000,
        authenticate: createAuthenticator(config),
      },
      context: {
        counters,
        maxFrameBytes: config.max_frame_bytes,
        maxOutputBytes: config.max_output_bytes,
      },
      budget: new SocketBudget(budget, slot),
      draining: () => draining,
      redirectFor: (uid) => shard.owns(uid) ? null : map.shardOf(uid),
      open(conn, uid) {
        const session = new Session(conn, uid, shard);
        // Fed once the uid's state is loaded and its messages can be handled.
        return { receiver: session, ready: shard.attach(session) };
      },
    },
    config.host,
    shards[index].port,
  );
  const port = server.port;
  log("info", `listening on ${config.host}:${port} (${config.storage} store)`);

  const timers = [
    setInterval(() => shard.sweep(config.heartbeat_timeout_sec * 1000), SWEEP_INTERVAL_MS),
    setInterval(
      () => link.notify({ type: "stats", counters } satisfies ShardNote),
      STATS_INTERVAL_MS,
    ),
  ];
  // A node's shards share one sqlite file: its first shard compacts it for all. The memory
  // and Cassandra stores are per shard, so each compacts its own.
  if (config.storage !== "sqlite" || shards[index].id.endsWith("/0")) {
    timers.push(setInterval(() => compact(store, log), COMPACT_INTERVAL_MS));
  }
  link.notify({ type: "ready", port } satisfies ShardNote);

  async function drain(): Promise<void> {
    draining = true;
    server.close();
    for (const timer of timers) clearInterval(timer);
    bus.close();
    for (const session of shard.sessions) session.end();
    await journal.flush();
    await store.close();
    log("info", "drained");
  }

  return {
    handle(op: ShardOp): Promise<unknown> {
      switch (op.op) {
        case "pub":
          return shard.publish(op.request);
        case "pubs":
          return shard.publishMany(op.requests);
        case "cpub":
          return shard.publishChannel(op.request);
        case "sub":
          return shard.subscribe(op.uid, op.channel);
        case "unsub":
          return shard.unsubscribe(op.uid, op.channel);
        case "msg":
          return shard.offline(op.uid, op.limit);
        case "stats":
          return Promise.resolve(counters);
        case "map":
          map = new ShardMap(op.shards);
          return Promise.resolve();
        case "drain":
          return drain();
        case "crash":
          setTimeout(() => {
            throw new Error("crash requested through the debug API");
          });
          return Promise.resolve();
      }
    },
  };
}

async function compact(store: Store, log: Log): Promise<void> {
  try {
    const removed = await store.compact(Date.now());
    if (removed > 0) log("debug", `compacted ${removed} messages`);
  } catch (error) {
    log("warn", `compaction: ${(error as Error).message}`);
  }
}
