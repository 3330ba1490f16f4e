/**
 * Helpers for the end-to-end tests of a Redis-managed cluster (`--cluster=redis`): nodes on
 * loopback sharing a real Redis (and a real Cassandra keyspace, or each its sqlite files),
 * clients that follow their uid
 * across map changes (reconnecting on `{"error":"moved"}` or a lost connection, and recording
 * how each reconnect went), publishers that keep `/pub` busy and record what was acknowledged,
 * the check that every acknowledged message is stored exactly once, and channel messages with
 * the check that a member has each copy once.
 *
 * @module
 */

import assert from "node:assert/strict";
import { RawClient } from "./client.ts";
import { type Daemon, type DaemonOptions, delay, eventually, startDaemon } from "./harness.ts";

export const LEASE_SEC = 2;
/** Also the grace after a lease's expiry before the others serve its uids. */
export const STORAGE_TIMEOUT_MS = 1000;

/** The flags every node of `cluster` gets, whatever its store. */
export function membershipFlags(cluster: string, redisUrl: string): string[] {
  return [
    "--cluster=redis",
    `--cluster_name=${cluster}`,
    `--redis_url=${redisUrl}`,
    "--advertise_host=127.0.0.1",
    `--presence_ttl_sec=${LEASE_SEC}`,
    `--storage_timeout_ms=${STORAGE_TIMEOUT_MS}`,
    "--client_msg_rate=1000",
  ];
}

/** The flags every node of `cluster` gets, sharing a Cassandra keyspace. */
export function clusterFlags(
  cluster: string,
  redisUrl: string,
  cassandra: { contactPoint: string; localDataCenter: string },
  keyspace: string,
): string[] {
  return [
    ...membershipFlags(cluster, redisUrl),
    "--storage=cassandra",
    `--cassandra_contact_points=${cassandra.contactPoint}`,
    `--cassandra_local_dc=${cassandra.localDataCenter}`,
    `--cassandra_keyspace=${keyspace}`,
    "--cassandra_consistency=ONE",
  ];
}

/**
 * Publishes each body to `channel` through `via`; every one must be acknowledged. Admission's
 * `overloaded` (503 with Retry-After: a node's first slow answers after a start or a pause)
 * is waited out and sent again, as a back end would; nothing else is.
 */
export async function publishToChannel(
  via: Daemon,
  channel: string,
  bodies: string[],
): Promise<void> {
  for (const body of bodies) {
    const send = () => via.admin(`/pub?channel=${channel}&from=op`, { method: "POST", body });
    let answer = await send();
    for (let i = 0; i < 20 && answer.body.error === "overloaded"; i++) {
      await delay(250);
      answer = await send();
    }
    assert.deepEqual(answer.body, { result: "ok" }, `channel message ${body}`);
  }
}

/** The bodies of the copies of `channel`'s messages `/msg` lists for the uid on `via`. */
export async function channelBodies(via: Daemon, uid: string, channel: string): Promise<string[]> {
  const answer = await via.admin(`/msg?uid=${uid}`);
  assert.equal(answer.status, 200, `/msg ${uid}: ${JSON.stringify(answer.body)}`);
  return (answer.body.result as string[]).map((text) => JSON.parse(text))
    .filter((message) => message.c === channel).map((message) => message.b);
}

/**
 * Waits until the uid lists `expected` copies of `channel` (10 s at most), then a moment more
 * (a copy stored twice may come late): then they must be exactly those, in order.
 */
export async function assertChannelCopies(
  via: Daemon,
  uid: string,
  channel: string,
  expected: string[],
): Promise<void> {
  await eventually(
    async () => (await channelBodies(via, uid, channel)).length >= expected.length,
    10_000,
  );
  await delay(500);
  assert.deepEqual(await channelBodies(via, uid, channel), expected, `${uid}'s copies`);
}

/** The nodes of one cluster under test, by id. */
export class TestCluster {
  readonly nodes = new Map<string, Daemon>();
  #flags: string[];

  constructor(flags: string[]) {
    this.#flags = flags;
  }

  /** Starts node `id` with the cluster's flags and `flags` (in `options.dir`: a restart). */
  async start(id: string, flags: string[] = [], options: DaemonOptions = {}): Promise<Daemon> {
    const daemon = await startDaemon([...this.#flags, `--node_id=${id}`, ...flags], options);
    this.nodes.set(id, daemon);
    return daemon;
  }

  /** The nodes still running (not stopped by the test). */
  live(): Daemon[] {
    return [...this.nodes.values()];
  }

  /** Resolves once every live node serves by one settled map of exactly `ids`. */
  async settled(ids: string[], ms = 15_000): Promise<number> {
    let last: unknown;
    let version = 0;
    const ok = await eventually(async () => {
      const views = await Promise.all(this.live().map((node) => node.admin("/cluster")));
      last = views.map((view) => view.body);
      const results = views.map((view) => view.body.result as ClusterView);
      if (!results.every((r) => r && !r.held && r.version === r.latest)) return false;
      if (new Set(results.map((r) => r.version)).size !== 1) return false;
      version = results[0].version;
      return results.every((r) => r.members.map((m) => m.id).join() === [...ids].sort().join());
    }, ms);
    assert.ok(ok, `not settled on ${ids}: ${JSON.stringify(last)}`);
    return version;
  }

  /** The node id that owns `uid`, as `/shard` on `via` says. */
  async ownerOf(uid: string, via: Daemon): Promise<string> {
    const address = String((await via.admin(`/shard?uid=${uid}`)).body.result);
    const port = Number(address.slice(address.lastIndexOf(":") + 1));
    for (const [id, node] of this.nodes) if (node.shardPorts.includes(port)) return id;
    throw new Error(`no node listens on ${address}`);
  }

  async stopAll(): Promise<void> {
    for (const node of this.nodes.values()) {
      try {
        Deno.kill(node.pid, "SIGCONT");
      } catch { /* gone */ }
      await node.stop("SIGKILL");
    }
  }
}

/** `/cluster` as a Redis-managed node answers it. */
export interface ClusterView {
  mode: string;
  version: number;
  latest: number;
  held: boolean;
  members: {
    id: string;
    lease_age_ms: number | null;
    /** The highest version it said it applied. */
    applied: number;
    shards: { id: string }[];
  }[];
  /** Members lost with their uids' state (their uids refused). */
  lost: { node: string; since: string | null; shards: number; map_shards: number }[];
  /** Losses an operator accepted. */
  accepted: { node: string; floor: number; version: number; at: string }[];
}

/** How one reconnect went. */
export interface Reconnect {
  /** The answer after following at most one 303. */
  status: number;
  redirected: boolean;
  /** Milliseconds from the loss of the connection to this answer. */
  afterMs: number;
}

/** A client of one uid that follows it wherever the map puts it. */
export class Follower {
  readonly uid: string;
  /** Messages received, by s (replays and live). */
  readonly received = new Map<number, string>();
  /** Those received on the current connection. */
  current = new Map<number, string>();
  readonly reconnects: Reconnect[] = [];
  moved = 0;
  /** Failed attempts (refused, 503, two 303s) while reconnecting. */
  failures: string[] = [];
  #entry: () => Daemon;
  #client: RawClient | undefined;
  #stopped = false;
  #done: Promise<void> | undefined;

  constructor(uid: string, entry: () => Daemon) {
    this.uid = uid;
    this.#entry = entry;
  }

  /** Connects (asserting the first connect works) and starts following. */
  async start(): Promise<void> {
    const { client, answer } = await RawClient.connect(this.#entry().clientPort, this.uid);
    assert.equal(answer.status, 200, `${this.uid}: ${answer.head}`);
    this.#client = client;
    this.#done = this.#follow();
  }

  /** Where the counts of {@linkcode sinceMark} start (0 until marked). */
  #mark = { moved: 0, reconnects: 0 };

  /** Starts counting moves and reconnects afresh, for the next map change. */
  mark(): void {
    this.#mark = { moved: this.moved, reconnects: this.reconnects.length };
  }

  /** The `moved` errors and the reconnects since the last {@linkcode mark}. */
  sinceMark(): { moved: number; reconnects: Reconnect[] } {
    return {
      moved: this.moved - this.#mark.moved,
      reconnects: this.reconnects.slice(this.#mark.reconnects),
    };
  }

  /** Resolves once it has connected again `times` times since the mark (false after `ms`). */
  async reconnected(times = 1, ms = 30_000): Promise<boolean> {
    return await eventually(() => this.sinceMark().reconnects.length >= times, ms);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#client?.close();
    await this.#done;
  }

  async #follow(): Promise<void> {
    while (!this.#stopped) {
      const message = await this.#client!.next(3_600_000).catch(() => null);
      if (this.#stopped) return;
      if (message && "error" in message) {
        if (message.error === "moved") this.moved++;
        else this.failures.push(`error ${message.error}`);
        continue;
      }
      if (message) {
        if (typeof message.s === "number") {
          this.received.set(message.s, String(message.b));
          this.current.set(message.s, String(message.b));
        }
        continue;
      }
      this.#client!.close();
      const lostAt = Date.now();
      // As a mobile client would: a moment, then the front door again.
      for (let attempt = 0; !this.#stopped; attempt++) {
        await delay(attempt === 0 ? 300 : 200);
        try {
          const { client, answer, redirected } = await RawClient.connect(
            this.#entry().clientPort,
            this.uid,
          );
          if (answer.status === 200) {
            this.reconnects.push({ status: 200, redirected, afterMs: Date.now() - lostAt });
            this.#client = client;
            this.current = new Map();
            break;
          }
          client.close();
          this.failures.push(`${answer.status} ${answer.rest}`);
        } catch (error) {
          this.failures.push((error as Error).message);
        }
      }
    }
  }
}

/** One acknowledged `/pub`. */
export interface Acked {
  uid: string;
  s: number;
  body: string;
}

/** A few publishers sending to random uids through random live nodes. */
export class Publishers {
  readonly acked: Acked[] = [];
  refused = 0;
  #stopped = false;
  #loops: Promise<void>[] = [];
  #count = 0;

  /**
   * `timeoutMs`: how long a `/pub` may take before it counts as refused; `name` starts every
   * body, which is unique to its publisher set.
   */
  constructor(
    uids: string[],
    entries: () => Daemon[],
    publishers = 3,
    pauseMs = 20,
    timeoutMs = 15_000,
    name = "p",
  ) {
    for (let p = 0; p < publishers; p++) {
      this.#loops.push((async () => {
        while (!this.#stopped) {
          const uid = uids[Math.floor(Math.random() * uids.length)];
          const nodes = entries();
          const node = nodes[Math.floor(Math.random() * nodes.length)];
          const body = `${name}${p}-${this.#count++}`;
          try {
            const answer = await node.admin(
              `/pub?to=${uid}&from=op&receipt=1`,
              { method: "POST", body, signal: AbortSignal.timeout(timeoutMs) },
            );
            if (answer.status === 200) {
              const s = (answer.body.result as { s: number }).s;
              this.acked.push({ uid, s, body });
            } else this.refused++;
          } catch {
            this.refused++;
          }
          await delay(pauseMs);
        }
      })());
    }
  }

  /** Acknowledged messages of `uid`. */
  of(uid: string): Acked[] {
    return this.acked.filter((a) => a.uid === uid);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await Promise.all(this.#loops);
  }
}

/**
 * Every acknowledged message is stored exactly once, under the `s` it was acknowledged with,
 * and each uid's stored `s` strictly increase (as `/msg` on `via` lists them).
 */
export async function assertAllStoredOnce(
  via: Daemon,
  uids: string[],
  acked: Acked[],
): Promise<void> {
  for (const uid of uids) {
    // A node that was just paused, or held requests in a failover, may shed load for a moment.
    let answer = await via.admin(`/msg?uid=${uid}`);
    await eventually(
      async () => (answer = await via.admin(`/msg?uid=${uid}`)).status !== 503,
      10_000,
    );
    assert.equal(answer.status, 200, `/msg ${uid}: ${JSON.stringify(answer.body)}`);
    const stored = (answer.body.result as string[]).map((text) => JSON.parse(text));
    const seqs = stored.map((m) => m.s as number);
    for (let i = 1; i < seqs.length; i++) {
      assert.ok(seqs[i] > seqs[i - 1], `${uid}: s not strictly increasing: ${seqs}`);
    }
    const bySeq = new Map(stored.map((m) => [m.s as number, m.b as string]));
    const bodies = stored.map((m) => m.b as string);
    assert.equal(new Set(bodies).size, bodies.length, `${uid}: a body stored twice`);
    for (const a of acked.filter((a) => a.uid === uid)) {
      assert.equal(
        bySeq.get(a.s),
        a.body,
        `${uid}: acknowledged s=${a.s} (${a.body}) is stored as ${bySeq.get(a.s)}`,
      );
    }
  }
}

/**
 * Each moved uid's client was told `moved` once and came back with one 303 (since its last
 * mark); the others were left alone.
 */
export async function assertMovedOnce(followers: Follower[], moved: string[]): Promise<void> {
  for (const follower of followers) {
    if (moved.includes(follower.uid)) assert.ok(await follower.reconnected(), follower.uid);
  }
  for (const follower of followers) {
    const moves = moved.includes(follower.uid);
    const since = follower.sinceMark();
    assert.equal(since.moved, moves ? 1 : 0, `${follower.uid} told moved`);
    assert.deepEqual(
      since.reconnects.map((r) => [r.status, r.redirected]),
      moves ? [[200, true]] : [],
      `${follower.uid}: ${JSON.stringify(follower.failures)}`,
    );
    assert.deepEqual(follower.failures, []);
  }
}
