/**
 * The Cassandra store against a real Cassandra 5.0 (scripts/cassandra.ts): the shared
 * conformance suite, then what is particular to Cassandra. One node serves the whole file;
 * each store under test gets a keyspace of its own, which is cheaper than truncating tables.
 */

import assert from "node:assert/strict";
import cassandra from "cassandra-driver";
import { startCassandra } from "../scripts/cassandra.ts";
import { CassandraStore, type CassandraStoreOptions } from "../src/storage/cassandra.ts";
import { applySchema } from "../src/storage/cassandra_schema.ts";
import { conformance } from "../src/storage/conformance.ts";
import { StorageUnavailableError, type Store } from "../src/storage/store.ts";
import type { StoredMessage } from "../src/core/messages.ts";

// At module level, so that the JVM and its watchdog are not resources of any one test.
const node = await startCassandra();

const DRIVER_TEST = { sanitizeResources: false, sanitizeOps: false };

let keyspaces = 0;

/** Runs `body` with a client not bound to any keyspace. */
async function withClient<T>(body: (client: cassandra.Client) => Promise<T>): Promise<T> {
  const client = new cassandra.Client({
    contactPoints: [node.contactPoint],
    localDataCenter: node.localDataCenter,
  });
  try {
    return await body(client);
  } finally {
    await client.shutdown();
  }
}

/** A new keyspace with the schema applied. */
async function freshKeyspace(): Promise<string> {
  const keyspace = `test_${++keyspaces}`;
  await withClient((client) => applySchema(client, { keyspace }));
  return keyspace;
}

function options(keyspace: string): CassandraStoreOptions {
  return {
    contactPoints: [node.contactPoint],
    localDataCenter: node.localDataCenter,
    keyspace,
    consistency: "LOCAL_QUORUM",
    shard: "test/0",
  };
}

const keyspaceOf = new WeakMap<Store, string>();

async function openIn(keyspace: string): Promise<CassandraStore> {
  const store = await CassandraStore.open(options(keyspace));
  keyspaceOf.set(store, keyspace);
  return store;
}

conformance("CassandraStore", {
  open: async () => openIn(await freshKeyspace()),
  reopen: async (store) => {
    await store.close();
    return openIn(keyspaceOf.get(store)!);
  },
});

function message(uid: string, seq: number, fields: Partial<StoredMessage> = {}): StoredMessage {
  return { uid, seq, type: 3, from: "op", body: `"${uid}#${seq}"`, expiresAt: 0, ...fields };
}

Deno.test(
  "applySchema is idempotent and applies the replication asked for",
  DRIVER_TEST,
  async () => {
    const replication = "{'class': 'SimpleStrategy', 'replication_factor': 2}";
    await withClient(async (client) => {
      await applySchema(client, { keyspace: "schema_twice", replication });
      await applySchema(client, { keyspace: "schema_twice", replication });
      const { rows } = await client.execute(
        "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = 'schema_twice'",
      );
      assert.equal(rows[0].replication.replication_factor, "2");
    });
  },
);

Deno.test("CassandraStore specifics", DRIVER_TEST, async (t) => {
  const store = await openIn(await freshKeyspace());
  const keyspace = keyspaceOf.get(store)!;
  try {
    await t.step("an expiring message gets a TTL to its expiry plus a margin", async () => {
      const now = Date.now();
      await store.append([
        message("ttl", 1, { expiresAt: now + 120_000 }),
        message("ttl", 2),
      ]);
      const { rows } = await withClient((client) =>
        client.execute(`SELECT seq, ttl(body) AS ttl FROM ${keyspace}.messages WHERE uid = 'ttl'`)
      );
      assert.ok(rows[0].ttl > 170 && rows[0].ttl <= 180, `ttl ${rows[0].ttl}`);
      assert.equal(rows[1].ttl, null);
    });

    await t.step("a uid's batch over the batch size limit lands whole, in order", async () => {
      const body = JSON.stringify("x".repeat(1_000));
      const batch = Array.from({ length: 1_200 }, (_, i) => message("big", i + 1, { body }));
      await store.append(batch);
      const found = await store.readAfter("big", 0, 2_000, Date.now());
      assert.equal(found.length, 1_200);
      assert.ok(found.every((m, i) => m.seq === i + 1 && m.body === body));
      assert.deepEqual(await store.userState("big"), { lastSeq: 1_200, devices: new Map() });
    });

    await t.step("lastSeq never goes backwards", async () => {
      await store.append([message("back", 10)]);
      await store.append([message("back", 4)]);
      assert.equal((await store.userState("back")).lastSeq, 10);
    });

    await t.step("readAfter pages past expired rows to fill its limit", async () => {
      const now = Date.now();
      const batch = Array.from(
        { length: 1_500 },
        (_, i) => message("pages", i + 1, { expiresAt: i < 1_200 ? now - 1 : 0 }),
      );
      await store.append(batch);
      const found = await store.readAfter("pages", 0, 200, now);
      assert.deepEqual(found.map((m) => m.seq), Array.from({ length: 200 }, (_, i) => 1_201 + i));
    });

    await t.step("an outage rejects with StorageUnavailableError, then heals", async () => {
      await node.pause();
      try {
        await assert.rejects(store.userState("ttl"), StorageUnavailableError);
        await assert.rejects(store.append([message("outage", 1)]), StorageUnavailableError);
      } finally {
        await node.resume();
      }
      // The driver reconnects on its own (backoff of at most 5 s).
      const deadline = Date.now() + 30_000;
      for (;;) {
        try {
          await store.append([message("outage", 1)]);
          break;
        } catch (error) {
          if (!(error instanceof StorageUnavailableError) || Date.now() > deadline) throw error;
          await new Promise((resolve) => setTimeout(resolve, 250));
        }
      }
      assert.deepEqual(await store.userState("outage"), { lastSeq: 1, devices: new Map() });
      // Data written before the outage survived it.
      assert.equal((await store.userState("big")).lastSeq, 1_200);
    });
  } finally {
    await store.close();
  }
});

Deno.test(
  "CassandraStore: every shard's bus mark is read from any shard's store",
  DRIVER_TEST,
  async () => {
    const keyspace = await freshKeyspace();
    const own = await openIn(keyspace);
    const other = await CassandraStore.open({ ...options(keyspace), shard: "other/0" });
    try {
      await own.append([message("alice", 1, { type: 4, channel: "news" })], "1700000000000-4");
      // What a shard taking over test/0's uids reads: up to where test/0 stored copies.
      assert.equal(await other.busMark("test/0"), "1700000000000-4");
      assert.equal(await other.busMark(), null);
      assert.equal(await other.busMark("never/0"), null);
    } finally {
      await other.close();
      await own.close();
    }
  },
);

Deno.test("open rejects a keyspace that does not exist", DRIVER_TEST, async () => {
  await assert.rejects(CassandraStore.open(options("no_such_keyspace")), /no_such_keyspace/);
});

Deno.test("stop Cassandra", DRIVER_TEST, () => node.stop());
