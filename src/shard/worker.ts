/**
 * A shard worker's life: {@linkcode startShard} opens the store and its journal, joins the
 * other shards of the process on the `BroadcastChannel` (without a cluster bus), serves the
 * shard's client port and starts its timers; {@linkcode RunningShard.handle} answers the main
 * thread's ops, `drain` among them.
 *
 * @module
 */

import { createAuthenticator } from "../auth/registry.ts";
import type { Log } from "../core/log.ts";
import { isEntryId } from "../core/bus_entry.ts";
import type { ChannelRequest } from "../core/requests.ts";
import { Fence } from "../core/fence.ts";
import { type ShardAddress, ShardMap } from "../core/shard_map.ts";
import { Session, submit } from "../session/session.ts";
import { newShardCounters, newShardHistograms } from "../stats/counters.ts";
import type { ShardReport } from "../stats/report.ts";
import { Journal } from "../storage/journal.ts";
import { backendOf } from "../storage/registry.ts";
import type { Store } from "../storage/store.ts";
import { StoreWatch } from "../storage/watched.ts";
import { perTurn } from "../thread/batch.ts";
import type { Link } from "../thread/link.ts";
import { SocketBudget } from "../transport/budget.ts";
import { listen } from "../transport/client_port.ts";
import {
  CHANNEL_BUS,
  type CrashPoint,
  type MainOp,
  type ShardInit,
  type ShardNote,
  type ShardOp,
} from "./ops.ts";
import { Shard } from "./shard.ts";
import { WorkQueue } from "./work_queue.ts";

/** Stored messages replayed per store read on connect. */
const REPLAY_PAGE = 500;
const STATS_INTERVAL_MS = 1_000;
const SWEEP_INTERVAL_MS = 1_000;
const COMPACT_INTERVAL_MS = 60_000;
const DAY_MS = 86_400_000;
/** Other shards' clients' channel messages being stored and delivered here at once. */
const CHANNEL_MESSAGES_IN_FLIGHT = 1024;
/** A store this long without a call is asked something cheap, to know it still answers. */
const STORE_PROBE_IDLE_MS = 1_000;

/** A shard that serves. */
export interface RunningShard {
  /** Answers one op of the main thread. */
  handle(op: ShardOp): Promise<unknown>;
}

/**
 * Starts the shard `init` describes, talking to the main thread over `link`; resolves once
 * its client port listens (it has then told the main thread `ready`).
 */
export async function startShard(init: ShardInit, link: Link, log: Log): Promise<RunningShard> {
  const { slot, config, budget } = init;
  let map = new ShardMap(init.shards);
  const indexIn = (shards: readonly ShardAddress[]) => shards.findIndex((s) => s.id === init.id);
  const fence = new Fence(init.fence);
  const counters = newShardCounters();
  const histograms = newShardHistograms();
  const backend = backendOf(config);
  const watch = new StoreWatch(await backend.open(config, slot - 1), {
    failed: () => counters.store_errors++,
    committed: (seconds) => histograms.store_commit.observe(seconds),
  });
  const store = watch.store;
  // Unreadable, the shard does not start (rather than start without it and store the copies
  // of redelivered entries twice, or trust a mark it cannot check and skip some).
  const busMark = await store.busMark();
  if (busMark !== null && !isEntryId(busMark)) {
    throw new Error(`the store's bus mark is not a stream id: ${JSON.stringify(busMark)}`);
  }
  const journal = new Journal(
    store,
    config.storage_queue_limit,
    (error) => log("warn", `ack not stored, kept for retry: ${error.message}`),
    () => fence.open(),
  );
  // Alone, clients' channel messages reach this process's other shards over a BroadcastChannel
  // (which does not echo to its sender: this shard stores its own part). With a cluster bus,
  // every shard, this one too, stores them from the bus.
  const siblings = init.bus ? undefined : new BroadcastChannel(CHANNEL_BUS);
  const toSiblings = siblings &&
    perTurn<ChannelRequest>((requests) => siblings.postMessage(requests));
  const shard: Shard = new Shard({
    index: indexIn(init.shards),
    map,
    store,
    journal,
    busMark,
    counters,
    histograms,
    replayPage: REPLAY_PAGE,
    maxDevices: config.max_devices,
    deviceTtlMs: config.device_ttl_days * DAY_MS,
    channelCacheSize: config.channel_cache_size,
    limits: {
      connectionsPerUid: config.max_connections_per_uid,
      channelsPerUid: config.max_channels_per_uid,
      messageRate: { perSec: config.client_msg_rate, burst: config.client_msg_burst },
    },
    sessionWaitMs: config.session_wait_sec * 1000,
    forward: (request) => link.request({ op: "publish", request } satisfies MainOp),
    handOff: async (users) =>
      await link.request({ op: "import", uid: users[0].uid, users } satisfies MainOp) as string[],
    publishChannel: toSiblings
      ? (request): Promise<unknown> => (toSiblings(request), shard.publishChannel(request))
      : (request) => link.request({ op: "publish_channel", request } satisfies MainOp),
    presence: config.redis_url === ""
      ? undefined
      : (change) => link.notify(change satisfies ShardNote),
    log,
  });
  if (siblings) {
    const fromSiblings = new WorkQueue<ChannelRequest>(
      CHANNEL_MESSAGES_IN_FLIGHT,
      (request) =>
        shard.publishChannel(request).catch((error) =>
          log("warn", `channel message to ${request.channel}: ${error.message}`)
        ),
    );
    siblings.onmessage = (event: MessageEvent<ChannelRequest[]>) => {
      for (const request of event.data) fromSiblings.push(request);
    };
  }

  let draining = false;
  const server = await listen(
    {
      handshake: {
        maxHeadBytes: config.max_head_bytes,
        maxBodyBytes: config.max_send_bytes,
        timeoutMs: config.handshake_timeout_sec * 1000,
        authenticate: await createAuthenticator(config, log),
      },
      corsOrigins: config.cors_origins,
      context: {
        counters,
        maxFrameBytes: config.max_frame_bytes,
        maxOutputBytes: config.max_output_bytes,
      },
      budget: new SocketBudget(budget, slot),
      perAddress: { handshakes: config.max_handshakes_per_address, headsPerSec: 0 },
      draining: () => draining,
      redirectFor: (uid) => shard.owns(uid) ? null : map.shardOf(uid),
      shardOf: (uid) => map.shardOf(uid),
      // A long-poll's next poll rejoins the session waiting for it: not one more connection.
      admit: (uid, device, transport) =>
        shard.waiting(uid, device, transport) ? null : shard.admit(uid),
      open(conn, { uid, device, codec, access, since }) {
        // A long-poll's next poll takes over the session waiting for it.
        const waiting = shard.waiting(uid, device, conn.transport);
        if (waiting) return { receiver: waiting, ready: shard.rejoin(waiting, conn, since) };
        const session = new Session(conn, uid, device, shard, { codec, access });
        // Fed once the uid's state is loaded and its messages can be handled.
        return { receiver: session, ready: shard.attach(session, since) };
      },
      submit: (sender, lines) => submit(shard, sender, lines),
    },
    config.host,
    init.port,
  );
  if (init.hold) shard.setMap(map, indexIn(init.shards), { hold: true, reset: true });
  shard.setLost(init.lost);
  log("info", `listening on ${config.host}:${server.port} (${config.storage} store)`, {
    port: server.port,
    store: config.storage,
  });

  /** The counters with the levels sampled now, and the histograms. */
  function report(): ShardReport {
    counters.journal_queue = journal.pending;
    counters.store_up = watch.error === null ? 1 : 0;
    return { counters, histograms, storeError: watch.error };
  }

  const timers = [
    setInterval(() => shard.sweep(config.heartbeat_timeout_sec * 1000), SWEEP_INTERVAL_MS),
    setInterval(() => {
      watch.probe(STORE_PROBE_IDLE_MS);
      link.notify({ type: "stats", ...report() } satisfies ShardNote);
    }, STATS_INTERVAL_MS),
  ];
  const deviceTtlMs = config.device_ttl_days * DAY_MS;
  timers.push(setInterval(() => compact(store, deviceTtlMs, log), COMPACT_INTERVAL_MS));
  link.notify({ type: "ready", port: server.port } satisfies ShardNote);

  /** Armed by `/debug/crash?after=...`: the next commit of this kind crashes the shard. */
  let crashAfter: CrashPoint | null = null;
  function crash(): void {
    setTimeout(() => {
      throw new Error("crash requested through the debug API");
    });
  }
  /**
   * `storing`, unless a crash is armed at `point` and `stored` says this commit counts: then
   * the shard crashes once it is stored, and never answers.
   */
  function crashingAfter<T>(
    point: CrashPoint,
    storing: Promise<T>,
    stored: (value: T) => boolean,
  ): Promise<T> {
    if (crashAfter !== point) return storing;
    return storing.then((value) => {
      if (!stored(value)) return value;
      crash();
      return new Promise<never>(() => {});
    });
  }

  /** Stops taking clients, ends every session, flushes the journal and closes the store. */
  async function drain(): Promise<void> {
    draining = true;
    server.close();
    for (const timer of timers) clearInterval(timer);
    siblings?.close();
    for (const session of shard.sessions) session.end();
    await journal.flush();
    await store.close();
    log("info", "drained");
  }

  return {
    handle(op: ShardOp): Promise<unknown> {
      switch (op.op) {
        case "publish":
          // Crashed after this commit, the /pub is answered 503 by the node: stored all the same.
          return crashingAfter("pub_commit", shard.publish(op.request), () => true);
        case "publish_many":
          return shard.publishMany(op.requests);
        case "publish_channel":
          return shard.publishChannel(op.request);
        case "bus_entries":
          // Never answered: the node reads these entries again once the shard is restarted.
          return crashingAfter(
            "bus_commit",
            shard.publishBusEntries(op.entries, op.streamTop),
            (receipts) => receipts.some((receipt) => receipt.recipients > 0),
          );
        case "subscribe":
          return shard.subscribe(op.uid, op.channel);
        case "unsubscribe":
          return shard.unsubscribe(op.uid, op.channel);
        case "offline":
          return shard.offline(op.uid, op.device, op.limit);
        case "import":
          return shard.importUsers(op.users);
        case "hand_off":
          return shard.handOff();
        case "lost":
          shard.setLost(op.lost);
          return Promise.resolve();
        case "stats":
          return Promise.resolve(report());
        case "map":
          map = new ShardMap(op.shards);
          shard.setMap(map, indexIn(op.shards), { hold: op.hold ?? false, reset: op.reset });
          // What was numbered under the old map is durable before the caller says it let go;
          // the answer is where it stood on the bus (`BusPosition`).
          return journal.flush().then(() => shard.appliedPosition());
        case "settle":
          return shard.settle(op.takeOver);
        case "replay":
          return shard.replay(op.entries);
        case "drain":
          return drain();
        case "compact":
          return store.compact(Date.now(), Date.now() - deviceTtlMs);
        case "crash":
          if (op.after) crashAfter = op.after;
          else crash();
          return Promise.resolve();
      }
    },
  };
}

async function compact(store: Store, deviceTtlMs: number, log: Log): Promise<void> {
  try {
    const now = Date.now();
    const removed = await store.compact(now, now - deviceTtlMs);
    if (removed > 0) log("debug", `compacted ${removed} messages`);
  } catch (error) {
    log("warn", `compaction: ${(error as Error).message}`);
  }
}
