/**
 * The main thread's shards: it starts one Web Worker per shard, routes requests to the
 * worker that owns a uid, restarts a worker that crashes, and drains them all on shutdown.
 *
 * @module
 */

import type { Config } from "../config/flags.ts";
import type { Log } from "../log.ts";
import type { MainOp, ShardInit, ShardNote, ShardOp } from "../shard/ops.ts";
import type { StatsBook } from "../stats/report.ts";
import { type ShardAddress, ShardMap } from "./hash.ts";
import { Link, ServiceError } from "./link.ts";

const WORKER_URL = new URL("../../workers/shard.ts", import.meta.url);
/** A worker that crashes is restarted after this pause, so a crash loop cannot spin. */
const RESTART_DELAY_MS = 500;

interface Slot {
  worker: Worker;
  link: Link;
  ready: Promise<void>;
}

/** This process's shard workers. */
export class ShardPool {
  #config: Config;
  #log: Log;
  #stats: StatsBook;
  #slots: Slot[] = [];
  #addresses: ShardAddress[];
  #map: ShardMap;
  #stopping = false;

  constructor(config: Config, nodeId: string, stats: StatsBook, log: Log) {
    this.#config = config;
    this.#stats = stats;
    this.#log = log;
    this.#addresses = Array.from({ length: config.workers }, (_, k) => ({
      id: `${nodeId}/${k}`,
      host: config.advertise_host,
      port: config.shard_port_base === 0 ? 0 : config.shard_port_base + k,
    }));
    this.#map = new ShardMap(this.#addresses);
  }

  /** The uid → shard map with the shards' actual ports. */
  get map(): ShardMap {
    return this.#map;
  }

  /** Starts every worker; resolves when all listen. */
  async start(): Promise<void> {
    for (let k = 0; k < this.#config.workers; k++) this.#slots.push(this.#spawn(k));
    await Promise.all(this.#slots.map((slot) => slot.ready));
    await this.#publishMap();
  }

  /** Sends `op` to the shard that owns `uid`. */
  toOwner(uid: string, op: ShardOp): Promise<unknown> {
    return this.#slots[this.#map.indexOf(uid)].link.request(op);
  }

  /** Sends `op` to every shard. */
  toAll(op: ShardOp): Promise<unknown[]> {
    return Promise.all(this.#slots.map((slot) => slot.link.request(op)));
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
      if (result.status === "rejected") this.#log("warn", `shard-${k} drain: ${result.reason}`);
    });
    for (const slot of this.#slots) slot.worker.terminate();
  }

  #spawn(index: number): Slot {
    const worker = new Worker(WORKER_URL, { type: "module", name: `shard-${index}` });
    const { promise: ready, resolve } = Promise.withResolvers<void>();
    const link = new Link(
      worker,
      (body) => this.#handle(body as MainOp),
      (note) => {
        const n = note as ShardNote;
        if (n.type === "stats") this.#stats.update(index, n.counters);
        else if (n.type === "ready") {
          this.#addresses[index] = { ...this.#addresses[index], port: n.port };
          resolve();
        }
      },
    );
    worker.onerror = (event) => {
      event.preventDefault();
      this.#log("error", `shard-${index} crashed: ${event.message}`);
      this.#restart(index);
    };
    worker.postMessage(
      {
        index,
        config: this.#config,
        shards: this.#addresses,
      } satisfies ShardInit,
    );
    return { worker, link, ready };
  }

  #restart(index: number): void {
    const old = this.#slots[index];
    old.link.close(new ServiceError("shard restarting", 503));
    old.worker.terminate();
    this.#stats.retire(index);
    if (this.#stopping) return;
    setTimeout(() => {
      if (this.#stopping) return;
      const slot = this.#spawn(index);
      this.#slots[index] = slot;
      slot.ready.then(() => {
        this.#log("info", `shard-${index} restarted`);
        return this.#publishMap();
      }).catch((error) => this.#log("error", `shard-${index} map update: ${error}`));
    }, RESTART_DELAY_MS);
  }

  /** Makes the actual ports known to the map and to every shard (for their 303s). */
  #publishMap(): Promise<unknown> {
    this.#map = new ShardMap([...this.#addresses]);
    return this.toAll({ op: "map", shards: this.#map.shards.slice() });
  }

  /** A shard's request: a client's message for a uid that another shard owns. */
  #handle(op: MainOp): Promise<unknown> {
    switch (op.op) {
      case "pub":
        return this.toOwner(op.request.to, { op: "pub", request: op.request });
    }
  }
}
