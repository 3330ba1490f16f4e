/**
 * The main thread's shards: it starts one Web Worker per shard, routes requests to the
 * worker that owns a uid, restarts a worker that crashes, and drains them all on shutdown.
 *
 * @module
 */

import type { MapTarget, OldOwner } from "../cluster/map_keeper.ts";
import type { LocalShards } from "../cluster/router.ts";
import { type NodeInfo, shardsOf, type Topology } from "../cluster/topology.ts";
import type { SharedFence } from "../core/fence.ts";
import type { Config } from "../config/flags.ts";
import type { Log } from "../core/log.ts";
import { type SharedBudget, SocketBudget } from "../transport/budget.ts";
import {
  addReceipt,
  type ChannelReceipt,
  type ChannelRequest,
  noReceipt,
} from "../core/requests.ts";
import type { BusEntry, BusPosition } from "../core/bus_entry.ts";
import type {
  MainOp,
  ReplayRange,
  ShardInit,
  ShardNote,
  ShardOp,
  TakenFrom,
  TakeOver,
} from "../shard/ops.ts";
import type { ShardReport, StatsBook } from "../stats/report.ts";
import { type LostNode, type ShardAddress, ShardMap } from "../core/shard_map.ts";
import { ServiceError } from "../core/errors.ts";
import type { HandOffOutcome } from "../core/messages.ts";
import { backendOf } from "../storage/registry.ts";
import { Link } from "../thread/link.ts";

const WORKER_URL = new URL("../../workers/shard.ts", import.meta.url);
/** A worker that crashes is restarted after this pause, so a crash loop cannot spin. */
const RESTART_DELAY_MS = 500;
/**
 * How long a settle keeps trying to read the entries it replays, and how often: Redis away
 * for a moment (the settle itself read it just before) costs a wait, not the copies.
 */
const REPLAY_READ_MS = 30_000;
const REPLAY_RETRY_MS = 500;

interface Slot {
  worker: Worker;
  link: Link;
  ready: Promise<void>;
  /** It listens and answers (false while it starts or restarts). */
  up: boolean;
}

/** What the pool needs besides the configuration. */
export interface PoolOptions {
  config: Config;
  topology: Topology;
  stats: StatsBook;
  log: Log;
  /** The process's client sockets, shared with every worker (slot 1 + k for worker k). */
  budget: SharedBudget;
  /** The node's write fence, shared with every worker. */
  fence: SharedFence;
  /** The node has a cluster bus (`ShardInit.bus`). */
  bus: boolean;
}

/** What a settle that takes over other nodes' uids reads of the cluster bus (`ClusterBus`). */
export interface BusHistory {
  /** The stream's last entry now. */
  last(): Promise<string>;
  /** Up to where a node's group says it stored what it read; null without a group. */
  storedUpTo(node: string): Promise<string | null>;
  /** The entries after `after` up to `upTo`. */
  range(after: string, upTo: string): Promise<BusEntry[]>;
  /** Moves this node's reading to the stream's end (it was fenced; the others took over). */
  skipToEnd(): Promise<void>;
}

/** Where the shards' own requests and notes go on the main thread. */
export interface FromShards {
  /** A shard's request: a client's message for a uid another shard owns. */
  request(op: MainOp): Promise<unknown>;
  /** A shard's note other than its counters and readiness (presence changes). */
  note(note: ShardNote): void;
}

/**
 * This process's shard workers, `node/0` … `node/(workers-1)` of the map. The map is built
 * from the cluster's members in order (static: `--cluster_nodes`; `--cluster=redis`: the
 * membership's sorted list, which {@linkcode setMembers} replaces at run time), with this
 * node's actual ports.
 */
export class ShardPool implements LocalShards, MapTarget {
  #options: PoolOptions;
  #slots: Slot[] = [];
  #bus: BusHistory | undefined;
  /**
   * The node reads on from its group (an embedded store's member back after it died): that
   * covers every copy of its uids since, which the others refused to store; its next settle
   * replays nothing from them.
   */
  #catchingUp = false;
  /** This node's shards, with their actual ports once they listen. */
  #own: ShardAddress[];
  #members: readonly NodeInfo[];
  #map: ShardMap;
  /** Local shard k of each map index that runs here. */
  #local = new Map<number, number>();
  /** A map change is held (new workers start held too). */
  #held: boolean;
  /** The other members lost with their uids' state (new workers get them too). */
  #lost: LostNode[] = [];
  #stopping = false;
  #fromShards: FromShards = {
    request: () => Promise.reject(new ServiceError("shards not started", 503)),
    note: () => {},
  };

  constructor(options: PoolOptions) {
    this.#options = options;
    const { self, nodes, dynamic } = options.topology;
    this.#own = shardsOf(self);
    this.#members = nodes;
    // A member of a Redis-managed cluster serves nothing until its join is settled.
    this.#held = dynamic;
    this.#map = this.#build();
  }

  /** The uid → shard map of the whole cluster, with this node's actual ports. */
  get map(): ShardMap {
    return this.#map;
  }

  /** True when the shard at `index` of the map runs in this process. */
  isLocal(index: number): boolean {
    return this.#local.has(index);
  }

  /** This node's shards' client ports. */
  get ports(): number[] {
    return this.#own.map((shard) => shard.port);
  }

  /** The members the map is built from. */
  get members(): readonly NodeInfo[] {
    return this.#members;
  }

  /**
   * The cluster bus a settle reads when it takes over other nodes' uids, and a reset skips to
   * the end of with a shared store (a Redis-managed cluster's; without one, neither).
   */
  replayFrom(bus: BusHistory & { resumed: boolean }): void {
    this.#bus = bus;
    this.#catchingUp = bus.resumed;
  }

  /**
   * A new member list: every shard lets go of the uids it no longer owns, and flushes. Answers
   * where the node stood on the bus (`BusPosition`, without its version: the caller's).
   */
  async setMembers(
    members: readonly NodeInfo[],
    hold: boolean,
  ): Promise<Omit<BusPosition, "version">> {
    this.#members = members;
    this.#held ||= hold;
    const positions = await this.#publishMap(hold);
    const marks: Record<string, string | null> = {};
    this.#own.forEach((shard, k) => marks[shard.id] = positions[k] ?? null);
    return { marks, shards: this.#map.shards.map((shard) => shard.id) };
  }

  /**
   * The held map change is settled: the shards serve the uids it gave them. With `from` (the
   * nodes that held some of them in the map of `before`: where each stood on the bus when it
   * let go, or null for one that died) and a bus, each shard is also given the copies of the
   * channel messages those nodes never stored for them, replayed from the bus (`Shard.settle`).
   * The uids are served before; a replay that cannot be read within
   * {@linkcode REPLAY_READ_MS} is logged and skipped.
   */
  async settle(before: readonly NodeInfo[] = [], from: readonly OldOwner[] = []): Promise<void> {
    const bus = this.#bus;
    const catchingUp = this.#catchingUp;
    this.#catchingUp = false;
    if (from.length === 0 || !bus || catchingUp) {
      this.#held = false;
      await this.toAll({ op: "settle" });
      return;
    }
    const until = await bus.last();
    const takeOver: TakeOver = {
      before: before.flatMap(shardsOf),
      from: await Promise.all(
        from.map(async ({ node, positions }): Promise<TakenFrom> =>
          positions
            ? { node, positions, storedUpTo: null }
            : { node, storedUpTo: await bus.storedUpTo(node) }
        ),
      ),
      until,
    };
    this.#held = false;
    await Promise.all(this.#slots.map(async (slot, k) => {
      const range = await slot.link.request({ op: "settle", takeOver }) as ReplayRange | null;
      if (!range) return;
      const entries = await this.#readReplay(bus, range).catch((error) => {
        this.#options.log(
          "error",
          `shard-${k}: the channel messages their old owners had not stored for the uids it takes ` +
            `over (bus entries after ${range.after}) could not be read: ${error.message}`,
        );
        return [];
      });
      await slot.link.request({ op: "replay", entries });
    }));
  }

  /** The entries of `range`, tried again for a while if Redis does not answer. */
  async #readReplay(bus: BusHistory, range: ReplayRange): Promise<BusEntry[]> {
    const deadline = Date.now() + REPLAY_READ_MS;
    for (;;) {
      try {
        return await bus.range(range.after, range.upTo);
      } catch (error) {
        if (this.#stopping || Date.now() > deadline) throw error;
        await new Promise((resolve) => setTimeout(resolve, REPLAY_RETRY_MS));
      }
    }
  }

  /**
   * Every shard hands off the uids it no longer owns; how many are left. Nothing to do with a
   * store every node shares (the new owner reads the same data).
   */
  async handOff(): Promise<HandOffOutcome> {
    if (backendOf(this.#options.config).shared) return { left: 0 };
    const outcomes = await this.toAll({ op: "hand_off" }) as HandOffOutcome[];
    return {
      left: outcomes.reduce((sum, outcome) => sum + outcome.left, 0),
      reason: outcomes.find((outcome) => outcome.reason)?.reason,
    };
  }

  /** The members lost with their uids' state, for every shard (this node's own records aside). */
  async setLost(lost: LostNode[]): Promise<void> {
    const selfId = this.#options.topology.self.id;
    this.#lost = lost.filter((entry) => entry.node !== selfId);
    await this.toAll({ op: "lost", lost: this.#lost });
  }

  /**
   * Every shard forgets every uid and holds them all (the node was fenced). With a shared
   * store the others took its uids over and stored their copies meanwhile, also those it
   * missed: its bus reads on from the stream's end.
   */
  async reset(): Promise<void> {
    this.#held = true;
    // First: an entry read again before the shards hold would meet the closed fence, and
    // fail; one read again after they hold would wait for the re-join, and be stored twice.
    // With an embedded store the others refused its uids meanwhile: it catches up instead.
    if (backendOf(this.#options.config).shared) await this.#bus?.skipToEnd();
    else this.#catchingUp = this.#bus !== undefined;
    await this.toAll({ op: "map", shards: this.#map.shards.slice(), reset: true });
  }

  /** Starts every worker; resolves when all listen. */
  async start(fromShards: FromShards): Promise<void> {
    this.#fromShards = fromShards;
    const workers = this.#options.topology.self.workers;
    for (let k = 0; k < workers; k++) this.#slots.push(this.#spawn(k));
    await Promise.all(this.#slots.map((slot) => slot.ready));
    await this.#publishMap(this.#held);
  }

  /** Sends `op` to the local shard at `index` of the map. */
  toShard(index: number, op: ShardOp): Promise<unknown> {
    const k = this.#local.get(index);
    if (k === undefined) return Promise.reject(new ServiceError("not a local shard", 421));
    return this.#slots[k].link.request(op);
  }

  /** A channel message to every shard of this node; each shard's receipt. */
  async publishChannel(request: ChannelRequest): Promise<ChannelReceipt[]> {
    return await this.toAll({ op: "publish_channel", request }) as ChannelReceipt[];
  }

  /**
   * Bus entries to every shard of this node (each skips those it has stored,
   * `Shard.publishBusEntries`); each request's receipt (every entry's in turn), this node's
   * members summed. Rejects if any shard failed, but only once every shard has answered: the
   * bus reads a failed batch again, and a shard still storing it then would not yet know it
   * as stored.
   */
  async publishBusEntries(entries: BusEntry[], streamTop: string): Promise<ChannelReceipt[]> {
    const op: ShardOp = { op: "bus_entries", entries, streamTop };
    const results = await Promise.allSettled(this.#slots.map((slot) => slot.link.request(op)));
    const failed = results.find((result) => result.status === "rejected");
    if (failed) throw failed.reason;
    const total = entries.flatMap((entry) => entry.requests.map(noReceipt));
    for (const result of results) {
      (result as PromiseFulfilledResult<ChannelReceipt[]>).value.forEach((receipt, i) =>
        addReceipt(total[i], receipt)
      );
    }
    return total;
  }

  /** Sends `op` to every shard. */
  toAll(op: ShardOp): Promise<unknown[]> {
    return Promise.all(this.#slots.map((slot) => slot.link.request(op)));
  }

  /** Sends `op` to local shard `k` (0-based within this node). */
  toLocal(k: number, op: ShardOp): Promise<unknown> {
    const slot = this.#slots[k];
    if (!slot) return Promise.reject(new ServiceError(`no local shard ${k}`, 404));
    return slot.link.request(op);
  }

  /** Local shards (0-based within this node) that are not running now. */
  down(): number[] {
    return this.#slots.flatMap((slot, k) => slot.up ? [] : [k]);
  }

  /**
   * Brings the reports of the running shards in the stats book up to date. A shard being
   * restarted has none to give (the book has retired its last one): `/stats` and `/metrics`
   * answer without it rather than fail.
   */
  async refreshStats(): Promise<void> {
    await Promise.all(this.#slots.map(async (slot, k) => {
      if (!slot.up) return;
      try {
        this.#options.stats.update(k, await slot.link.request({ op: "stats" }) as ShardReport);
      } catch (error) {
        // It crashed while asked: it is being restarted, as above.
        if (slot.up) throw error;
      }
    }));
  }

  /** Drains every shard (sessions closed, storage flushed) and stops the workers. */
  async drain(): Promise<void> {
    this.#stopping = true;
    const results = await Promise.allSettled(this.#slots.map((slot) =>
      slot.link.request(
        {
          op: "drain",
        } satisfies ShardOp,
      )
    ));
    results.forEach((result, k) => {
      if (result.status === "rejected") {
        this.#options.log("warn", `shard-${k} drain: ${result.reason}`);
      }
    });
    for (const slot of this.#slots) slot.worker.terminate();
  }

  /** Starts the worker for local shard `k` (shard `first + k` of the map). */
  #spawn(k: number): Slot {
    const { config, stats, log } = this.#options;
    const worker = new Worker(WORKER_URL, { type: "module", name: `shard-${k}` });
    const { promise: ready, resolve, reject } = Promise.withResolvers<void>();
    const link = new Link(
      worker,
      (body) => this.#fromShards.request(body as MainOp),
      (note) => {
        const n = note as ShardNote;
        if (n.type === "stats") stats.update(k, n);
        else if (n.type === "ready") {
          this.#own[k] = { ...this.#own[k], port: n.port };
          slot.up = true;
          resolve();
        } else if (n.type === "failed") {
          reject(new Error(`shard-${k} cannot start: ${n.reason}`));
        } else this.#fromShards.note(n);
      },
    );
    worker.onerror = (event) => {
      event.preventDefault();
      log("error", `shard-${k} crashed: ${event.message}`);
      this.#restart(k);
    };
    const { budget, fence } = this.#options;
    worker.postMessage(
      {
        id: this.#own[k].id,
        port: this.#own[k].port,
        slot: 1 + k,
        config,
        shards: this.#map.shards.slice(),
        hold: this.#held,
        lost: this.#lost,
        budget,
        fence,
        bus: this.#options.bus,
      } satisfies ShardInit,
    );
    const slot: Slot = { worker, link, ready, up: false };
    return slot;
  }

  #restart(k: number): void {
    const { stats, log } = this.#options;
    const old = this.#slots[k];
    old.up = false;
    old.link.close(new ServiceError("shard restarting", 503));
    old.worker.terminate();
    // Its sockets went with it.
    new SocketBudget(this.#options.budget, 0).clear(1 + k);
    stats.retire(k);
    if (this.#stopping) return;
    setTimeout(() => {
      if (this.#stopping) return;
      const slot = this.#spawn(k);
      this.#slots[k] = slot;
      slot.ready.then(() => {
        log("info", `shard-${k} restarted`);
        return this.#publishMap();
      }, (error) => {
        // It cannot start again now (its port still taken, its store down): try once more
        // after the pause rather than leave the shard's uids unserved.
        log("error", error.message);
        this.#restart(k);
      }).catch((error) => log("error", `shard-${k} map update: ${error}`));
    }, RESTART_DELAY_MS);
  }

  /**
   * Makes the map (and the actual ports) known to the router and to every shard; answers each
   * local shard's bus position at the change (`Shard.appliedPosition`).
   */
  async #publishMap(hold = false): Promise<(string | null)[]> {
    this.#map = this.#build();
    return await this.toAll({ op: "map", shards: this.#map.shards.slice(), hold }) as (
      | string
      | null
    )[];
  }

  /** The map of the members, with this node's actual ports; which of its shards run here. */
  #build(): ShardMap {
    const selfId = this.#options.topology.self.id;
    const shards = this.#members.flatMap((node) => node.id === selfId ? this.#own : shardsOf(node));
    this.#local = new Map();
    shards.forEach((shard, index) => {
      if (shard.id.startsWith(`${selfId}/`)) {
        this.#local.set(index, Number(shard.id.slice(selfId.length + 1)));
      }
    });
    return new ShardMap(shards);
  }
}
