/**
 * The main thread's shards: it starts one Web Worker per shard, routes requests to the
 * worker that owns a uid, restarts a worker that crashes, and drains them all on shutdown.
 *
 * @module
 */

import type { LocalShards } from "../cluster/router.ts";
import type { Topology } from "../cluster/topology.ts";
import type { Config } from "../config/flags.ts";
import type { Log } from "../core/log.ts";
import { type SharedBudget, SocketBudget } from "../transport/budget.ts";
import type { ChannelReceipt, ChannelRequest } from "../core/requests.ts";
import type { MainOp, ShardInit, ShardNote, ShardOp } from "../shard/ops.ts";
import type { ShardReport, StatsBook } from "../stats/report.ts";
import { type ShardAddress, ShardMap } from "../core/shard_map.ts";
import { ServiceError } from "../core/errors.ts";
import { Link } from "../thread/link.ts";

const WORKER_URL = new URL("../../workers/shard.ts", import.meta.url);
/** A worker that crashes is restarted after this pause, so a crash loop cannot spin. */
const RESTART_DELAY_MS = 500;

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
}

/** Where the shards' own requests and notes go on the main thread. */
export interface FromShards {
  /** A shard's request: a client's message for a uid another shard owns. */
  request(op: MainOp): Promise<unknown>;
  /** A shard's note other than its counters and readiness (presence changes). */
  note(note: ShardNote): void;
}

/** This process's shard workers: shards `first` to `first + workers - 1` of the map. */
export class ShardPool implements LocalShards {
  #options: PoolOptions;
  #first: number;
  #slots: Slot[] = [];
  #addresses: ShardAddress[];
  #map: ShardMap;
  #stopping = false;
  #fromShards: FromShards = {
    request: () => Promise.reject(new ServiceError("shards not started", 503)),
    note: () => {},
  };

  constructor(options: PoolOptions) {
    this.#options = options;
    this.#first = options.topology.firstShard;
    this.#addresses = [...options.topology.shards];
    this.#map = new ShardMap(this.#addresses);
  }

  /** The uid → shard map of the whole cluster, with this node's actual ports. */
  get map(): ShardMap {
    return this.#map;
  }

  /** True when the shard at `index` of the map runs in this process. */
  isLocal(index: number): boolean {
    return index >= this.#first && index < this.#first + this.#options.topology.self.workers;
  }

  /** Starts every worker; resolves when all listen. */
  async start(fromShards: FromShards): Promise<void> {
    this.#fromShards = fromShards;
    const workers = this.#options.topology.self.workers;
    for (let k = 0; k < workers; k++) this.#slots.push(this.#spawn(k));
    await Promise.all(this.#slots.map((slot) => slot.ready));
    await this.#publishMap();
  }

  /** Sends `op` to the local shard at `index` of the map. */
  toShard(index: number, op: ShardOp): Promise<unknown> {
    return this.#slots[index - this.#first].link.request(op);
  }

  /** A channel message to every shard of this node; each shard's receipt. */
  async publishChannel(request: ChannelRequest): Promise<ChannelReceipt[]> {
    return await this.toAll({ op: "publish_channel", request }) as ChannelReceipt[];
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
    const index = this.#first + k;
    const worker = new Worker(WORKER_URL, { type: "module", name: `shard-${k}` });
    const { promise: ready, resolve, reject } = Promise.withResolvers<void>();
    const link = new Link(
      worker,
      (body) => this.#fromShards.request(body as MainOp),
      (note) => {
        const n = note as ShardNote;
        if (n.type === "stats") stats.update(k, n);
        else if (n.type === "ready") {
          this.#addresses[index] = { ...this.#addresses[index], port: n.port };
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
    const { budget } = this.#options;
    worker.postMessage(
      { index, slot: 1 + k, config, shards: this.#addresses, budget } satisfies ShardInit,
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

  /** Makes the actual ports known to the map and to every shard (for their 303s). */
  #publishMap(): Promise<unknown> {
    this.#map = new ShardMap([...this.#addresses]);
    return this.toAll({ op: "map", shards: this.#map.shards.slice() });
  }
}
