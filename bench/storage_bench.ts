/**
 * Store throughput on the shard's write pattern: group-committed batches of 1, 100 and 1000
 * messages (one message per uid, as a channel broadcast makes them), a read of 100 messages
 * after a seq (a reconnecting client's backlog), a commit's acks (device cursors of 1,
 * 100 and 1000 uids), and a channel message's copies for 1000 uids with the acks of the one
 * before (fan-out to clients that keep up). Memory is the baseline of each group, so the
 * summaries show what durability costs. sqlite runs twice: on a shared file (each commit
 * written into the tables) and on an exclusive one, as the daemon's shards keep theirs (each
 * commit one log row, folded later: `src/storage/sqlite.ts`).
 *
 * ```sh
 * deno bench -A bench/storage_bench.ts
 * IPUSH_BENCH_CASSANDRA=127.0.0.1:9042 deno bench -A bench/storage_bench.ts   # adds Cassandra
 * ```
 *
 * @module
 */

import cassandra from "cassandra-driver";
import { CassandraStore } from "../src/storage/cassandra.ts";
import { applySchema } from "../src/storage/cassandra_schema.ts";
import { MemoryStore } from "../src/storage/memory.ts";
import { SqliteStore } from "../src/storage/sqlite.ts";
import type { Store } from "../src/storage/store.ts";
import type { StoredMessage } from "../src/core/messages.ts";

/** A store under measurement. */
interface Contender {
  name: string;
  store: Store;
}

const UIDS = 1000;
/** Messages per uid written before the read benchmark. */
const BACKLOG = 200;
const BODY = JSON.stringify("x".repeat(98));
const NOW = Date.now();

const dir = Deno.makeTempDirSync({ prefix: "ipush-storage-bench-" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

const contenders: Contender[] = [
  { name: "memory", store: new MemoryStore() },
  { name: "sqlite", store: new SqliteStore(`${dir}/bench.db`) },
  { name: "sqlite, exclusive", store: new SqliteStore(`${dir}/exclusive.db`, { exclusive: true }) },
];
const cassandraNode = Deno.env.get("IPUSH_BENCH_CASSANDRA");
if (cassandraNode) contenders.push(await openCassandra(cassandraNode));

/**
 * Cassandra joins when `IPUSH_BENCH_CASSANDRA` names a node (`host:port`, for example the
 * one `deno run -A scripts/cassandra.ts start` prints), in a keyspace of its own.
 */
async function openCassandra(address: string): Promise<Contender> {
  const options = { contactPoints: [address], localDataCenter: "datacenter1" };
  const client = new cassandra.Client(options);
  try {
    await applySchema(client, { keyspace: "ipush_bench" });
  } finally {
    await client.shutdown();
  }
  const store = await CassandraStore.open({
    ...options,
    keyspace: "ipush_bench",
    shard: "bench/0",
  });
  return { name: "cassandra", store };
}

/** Hands out the next seq of each uid, cycling through the uids. */
class Batches {
  #seqs = new Array<number>(UIDS).fill(0);
  #next = 0;

  take(size: number): StoredMessage[] {
    const batch: StoredMessage[] = [];
    for (let i = 0; i < size; i++) {
      const user = this.#next++ % UIDS;
      const seq = ++this.#seqs[user];
      batch.push({ uid: `user${user}`, seq, type: 3, from: "op", body: BODY, expiresAt: 0 });
    }
    return batch;
  }
}

for (const { name, store } of contenders) {
  const batches = new Batches();
  // Every uid gets its backlog before any timing, so reads find full pages.
  for (let i = 0; i < BACKLOG; i++) await store.append(batches.take(UIDS));

  for (const size of [1, 100, 1000]) {
    Deno.bench({
      name: `${name}: append ${size}`,
      group: `append, ${size} a batch`,
      baseline: name === "memory",
      async fn(b) {
        const batch = batches.take(size);
        b.start();
        await store.append(batch);
        b.end();
      },
    });
  }

  let reader = 0;
  Deno.bench({
    name: `${name}: read 100 after a seq`,
    group: "read 100 after a seq",
    baseline: name === "memory",
    async fn() {
      const found = await store.readAfter(`user${reader++ % UIDS}`, BACKLOG / 2, 100, NOW);
      if (found.length !== 100) throw new Error(`read ${found.length} messages, not 100`);
    },
  });
}

// Acks: a commit's device updates, one per uid, as the journal hands them over. Each run
// moves every cursor forward, so the store does write them.
for (const { name, store } of contenders) {
  let cursor = 0;
  for (const size of [1, 100, 1000]) {
    Deno.bench({
      name: `${name}: ack ${size}`,
      group: `ack, ${size} devices a commit`,
      baseline: name === "memory",
      async fn(b) {
        cursor++;
        const updates = Array.from({ length: size }, (_, i) => ({
          uid: `user${i % UIDS}`,
          device: "phone",
          lastAck: cursor,
          seenAt: 0,
        }));
        b.start();
        await store.updateDevices(updates);
        b.end();
      },
    });
  }
}

// Fan-out to clients that keep up: each run appends one channel message's copies for every
// uid and the acks of the message before, as two commits.
for (const { name, store } of contenders) {
  let seq = 1_000_000;
  Deno.bench({
    name: `${name}: channel copies and acks`,
    group: `a channel message to ${UIDS} uids, acked`,
    baseline: name === "memory",
    async fn(b) {
      seq++;
      const copies: StoredMessage[] = [];
      const acks = [];
      for (let i = 0; i < UIDS; i++) {
        const uid = `user${i}`;
        copies.push({ uid, seq, type: 4, from: "op", channel: "news", body: BODY, expiresAt: 0 });
        acks.push({ uid, device: "", lastAck: seq - 1, seenAt: 0 });
      }
      b.start();
      await store.append(copies);
      await store.updateDevices(acks);
      b.end();
    },
  });
}
