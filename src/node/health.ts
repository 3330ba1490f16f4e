/**
 * A node's health, for `/readyz`, `/metrics` and the cluster view of the dashboard (`/nodes`).
 * A node is ready when every shard worker runs, every shard's last store call succeeded (an
 * idle shard probes its store each second, so this holds when nothing is sent too) and, in a
 * cluster, its Redis answers. Each reason it is not is a short sentence naming the part.
 *
 * @module
 */

import type { Presence } from "../cluster/presence.ts";
import type { RedisClient } from "../cluster/redis.ts";
import type { NodeInfo, Topology } from "../cluster/topology.ts";
import type { NodeBeat } from "../core/presence.ts";
import type { StatsBook } from "../stats/report.ts";
import type { ShardPool } from "./pool.ts";

/** The longest `/readyz` waits for the shards' reports before it calls them not answering. */
const REPORT_TIMEOUT_MS = 2_000;

/** What the health of a node is read from. */
export interface HealthSources {
  topology: Topology;
  pool: ShardPool;
  stats: StatsBook;
  redis?: RedisClient;
  presence?: Presence;
  /** Messages the admin API holds in flight now. */
  inFlight(): number;
  /** The node is draining (it stops). */
  draining(): boolean;
}

/** One node of the cluster as `/nodes` answers it. */
export interface Member {
  id: string;
  host: string;
  client_port: number;
  admin_port: number;
  workers: number;
  /** The node that answers. */
  self: boolean;
  /** `ready`, `not ready`, `down` (its liveness key expired) or `unknown` (Redis is gone). */
  status: "ready" | "not ready" | "down" | "unknown";
  /** Why it is not ready, or why its status is unknown. */
  reasons: string[];
  connections: number;
  users: number;
  /** How old what is known of it is, in milliseconds (0 for this node). */
  age_ms: number;
}

/** A node's health, read from its parts. */
export class Health {
  #sources: HealthSources;

  constructor(sources: HealthSources) {
    this.#sources = sources;
  }

  /** Brings the shards' reports and the node's own gauges up to date. */
  async refresh(): Promise<void> {
    await this.#sources.pool.refreshStats();
    this.sample();
  }

  /** Sets the node's own gauges in the stats book, and tells the cluster how this node is. */
  sample(): void {
    const { pool, stats, redis, presence, topology } = this.#sources;
    const counters = stats.frontDoor;
    counters.shards = topology.self.workers;
    counters.shards_up = topology.self.workers - pool.down().length;
    counters.redis_up = !redis || redis.isReady ? 1 : 0;
    counters.admin_inflight = this.#sources.inFlight();
    presence?.report({ notReady: this.notReady(), ...this.#load() });
  }

  /**
   * Why this node is not ready, after asking every shard for a fresh report (bounded: a shard
   * that does not answer in time is a reason too); empty when it is ready.
   */
  async check(): Promise<string[]> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((resolve) => {
      timer = setTimeout(resolve, REPORT_TIMEOUT_MS, "late");
    });
    const refreshed = await Promise.race([this.refresh().then(() => "ok" as const), late])
      .catch((error) => `shards' reports failed: ${(error as Error).message}`);
    clearTimeout(timer);
    const reasons = this.notReady();
    if (refreshed === "late") reasons.push(`shards did not report within ${REPORT_TIMEOUT_MS} ms`);
    else if (refreshed !== "ok") reasons.push(refreshed);
    return reasons;
  }

  /** Why this node is not ready, from what is known now; empty when it is ready. */
  notReady(): string[] {
    const { pool, stats, redis, draining } = this.#sources;
    const reasons = draining() ? ["draining"] : [];
    reasons.push(...pool.down().map((k) => `shard-${k} is not running`));
    for (const [k, report] of stats.shards()) {
      if (report.storeError !== null) reasons.push(`shard-${k} store: ${report.storeError}`);
    }
    if (redis && !redis.isReady) reasons.push("redis unreachable");
    return reasons;
  }

  /** Every node of the cluster: this one as it is now, the others as their last beat said. */
  async members(): Promise<Member[]> {
    const { topology, presence, pool } = this.#sources;
    // A Redis-managed cluster's members are those of the map the pool runs by.
    const nodes = topology.dynamic ? pool.members : topology.nodes;
    const isSelf = (node: NodeInfo) => node.id === topology.self.id;
    const others = nodes.filter((node) => !isSelf(node));
    let beats: (NodeBeat | null)[] | undefined;
    let unknown = "";
    if (others.length > 0) {
      try {
        if (!presence) throw new Error("no presence");
        beats = await presence.beats(others.map((node) => node.id));
      } catch (error) {
        unknown = `redis unreachable: ${(error as Error).message}`;
      }
    }
    const now = Date.now();
    const reasons = this.notReady();
    return nodes.map((node) => {
      if (isSelf(node)) {
        const status = reasons.length === 0 ? "ready" : "not ready";
        return member(node, true, status, reasons, this.#load(), 0);
      }
      if (!beats) return member(node, false, "unknown", [unknown], undefined, 0);
      const beat = beats[others.indexOf(node)];
      if (!beat) return member(node, false, "down", ["no liveness beat"], undefined, 0);
      const status = beat.notReady.length === 0 ? "ready" : "not ready";
      return member(node, false, status, beat.notReady, beat, Math.max(0, now - beat.at));
    });
  }

  #load(): { connections: number; users: number } {
    let connections = 0;
    let users = 0;
    for (const report of this.#sources.stats.shards().values()) {
      connections += report.counters.connection_number;
      users += report.counters.user_number;
    }
    return { connections, users };
  }
}

function member(
  node: NodeInfo,
  self: boolean,
  status: Member["status"],
  reasons: string[],
  load: { connections: number; users: number } | undefined,
  age: number,
): Member {
  return {
    id: node.id,
    host: node.host,
    client_port: node.clientPort,
    admin_port: node.adminPort,
    workers: node.workers,
    self,
    status,
    reasons,
    connections: load?.connections ?? 0,
    users: load?.users ?? 0,
    age_ms: age,
  };
}
