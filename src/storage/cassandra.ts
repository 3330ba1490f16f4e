/**
 * The Cassandra store (`--storage=cassandra`), through `cassandra-driver`. The schema is
 * `scripts/create_schema.cql`; `cassandra_schema.ts` applies it with any keyspace name and
 * replication.
 *
 * Writes: `append` groups a batch by uid and writes each uid's messages and its `last_seq` in
 * one unlogged batch: one partition key in one keyspace, so Cassandra applies it as a single
 * mutation, atomically on each replica. The uids' batches run concurrently and `append`
 * resolves when all are acknowledged at the configured consistency. A uid with more than
 * {@linkcode BATCH_BYTES} of messages is split into several such batches. A batch that
 * carries a bus mark writes it (a row of `bus_marks`, keyed by the shard's map id) once all
 * of those are acknowledged: never ahead of the copies, but not in one transaction with them.
 *
 * `last_seq`, and each device's `last_ack` and `seen_at`, are max-registers: every write
 * carries `USING TIMESTAMP` equal to the value, so a smaller value never overwrites a larger
 * one, whatever order concurrent writes land in (see the schema's notes on `user_state`).
 *
 * Expiry: a message that expires is written with a TTL (seconds to `expiresAt` plus
 * {@linkcode TTL_MARGIN_S}), so Cassandra removes it on its own; until then `readAfter`
 * filters on `expires_at` with the caller's clock. The margin covers clock skew between the
 * daemon and Cassandra: a message is never gone before a reader would consider it expired.
 *
 * Compaction: Cassandra cannot find acknowledged messages without scanning every partition,
 * so the store remembers the uids it appended to or updated a device of since the last
 * `compact`, and `compact` visits only those: per uid it works out the floor
 * (`compactionFloor`) from the device cursors, counts the rows at or below it and
 * range-deletes them, and, if the uid was given expiring messages, reads the rows above and
 * deletes the expired ones (otherwise TTL alone removes them). A uid that a live device held
 * back is visited again once that device may have gone quiet. A uid left uncompacted when the
 * daemon stops is compacted the next time it is touched; until then its acknowledged
 * messages are invisible to the devices that acked them and expiring ones still go by TTL.
 *
 * Errors: driver errors that mean "Cassandra cannot serve this now" (no host, timeouts,
 * unavailable or overloaded replicas) reject with {@linkcode StorageUnavailableError};
 * anything else (a schema mistake, say) rejects as the driver's error.
 *
 * @module
 */

import type cassandra from "cassandra-driver";
import { type FlagValues, oneOf, text } from "../core/flag_spec.ts";
import {
  compactionFloor,
  type DeviceState,
  type DeviceUpdate,
  StorageUnavailableError,
  type Store,
  type StoreBackend,
  type UserState,
} from "./store.ts";
import type { HandedUser, StoredMessage, StoredType } from "../core/messages.ts";

/** Consistency levels by their CQL names. */
const CONSISTENCIES = ["ONE", "LOCAL_ONE", "QUORUM", "LOCAL_QUORUM", "ALL", "EACH_QUORUM"] as const;
export type ConsistencyName = typeof CONSISTENCIES[number];

/** How a {@linkcode CassandraStore} reaches its cluster. */
export interface CassandraStoreOptions {
  /** `host:port` (or `host`, for 9042) of some nodes; the driver discovers the rest. */
  contactPoints: string[];
  /** The data center whose nodes serve requests (`datacenter1` on a default install). */
  localDataCenter: string;
  /** Keyspace holding the schema (default `ipush`). */
  keyspace?: string;
  /** Consistency of every read and write (default `LOCAL_QUORUM`). */
  consistency?: ConsistencyName;
  /** A request unanswered this long fails as unavailable, in milliseconds (default 3000). */
  requestTimeoutMs?: number;
  /**
   * The map id of the shard this store serves (`node/k`): the key of its bus mark, since
   * every shard of every node shares the keyspace.
   */
  shard: string;
}

/** The keyspace a store uses when none is named. */
export const DEFAULT_KEYSPACE = "ipush";

/** Largest payload, in estimated bytes, of one uid's batch; more goes into further batches. */
const BATCH_BYTES = 256 * 1024;
/** Seconds a message outlives its `expiresAt` in Cassandra, against clock skew. */
const TTL_MARGIN_S = 60;
/** Cassandra's largest TTL (20 years). */
const MAX_TTL_S = 630_720_000;
/** Rows per read request. */
const PAGE = 1_000;
/** Partitions `compact` works on at once. */
const COMPACT_CONCURRENCY = 16;

const CQL = {
  insert: "INSERT INTO messages (uid, seq, type, sender, channel, body, expires_at) " +
    "VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?",
  lastSeq: "UPDATE user_state USING TIMESTAMP ? SET last_seq = ? WHERE uid = ?",
  deviceAck:
    "UPDATE device_cursors USING TIMESTAMP ? SET last_ack = ? WHERE uid = ? AND device = ?",
  deviceSeen:
    "UPDATE device_cursors USING TIMESTAMP ? SET seen_at = ? WHERE uid = ? AND device = ?",
  devices: "SELECT device, last_ack, seen_at FROM device_cursors WHERE uid = ?",
  readAfter: "SELECT seq, type, sender, channel, body, expires_at FROM messages " +
    "WHERE uid = ? AND seq > ? LIMIT ?",
  countUpTo: "SELECT COUNT(*) AS count FROM messages WHERE uid = ? AND seq <= ?",
  expiries: "SELECT seq, expires_at FROM messages WHERE uid = ? AND seq > ?",
  userState: "SELECT last_seq, last_ack FROM user_state WHERE uid = ?",
  deleteUpTo: "DELETE FROM messages WHERE uid = ? AND seq <= ?",
  deleteOne: "DELETE FROM messages WHERE uid = ? AND seq = ?",
  addMember: "INSERT INTO channel_members (channel, uid) VALUES (?, ?)",
  addChannel: "INSERT INTO user_channels (uid, channel) VALUES (?, ?)",
  removeMember: "DELETE FROM channel_members WHERE channel = ? AND uid = ?",
  removeChannel: "DELETE FROM user_channels WHERE uid = ? AND channel = ?",
  members: "SELECT uid FROM channel_members WHERE channel = ?",
  channels: "SELECT channel FROM user_channels WHERE uid = ?",
  // Every partition of each table a uid keys: a scan of the whole keyspace.
  uids: ["messages", "user_state", "device_cursors", "user_channels"].map((table) =>
    `SELECT DISTINCT uid FROM ${table}`
  ),
  deleteMessages: "DELETE FROM messages WHERE uid = ?",
  deleteUserState: "DELETE FROM user_state USING TIMESTAMP ? WHERE uid = ?",
  deleteDeviceAck:
    "DELETE last_ack FROM device_cursors USING TIMESTAMP ? WHERE uid = ? AND device = ?",
  deleteDeviceSeen:
    "DELETE seen_at FROM device_cursors USING TIMESTAMP ? WHERE uid = ? AND device = ?",
  deleteChannels: "DELETE FROM user_channels WHERE uid = ?",
  setBusMark: "INSERT INTO bus_marks (shard, entry) VALUES (?, ?)",
  busMark: "SELECT entry FROM bus_marks WHERE shard = ?",
};

/**
 * The driver, loaded by the first {@linkcode CassandraStore.open}: a node on another store
 * never loads it (measured: 11.5 MB less RSS for an idle daemon of two shards on sqlite).
 */
let driver: typeof cassandra;

/** A {@linkcode Store} in a Cassandra keyspace. */
export class CassandraStore implements Store {
  #client: cassandra.Client;
  /**
   * Uids appended to or acked since the last `compact`, the only ones it visits, and whether
   * an expiring message was appended to them (only then it looks past `last_ack`).
   */
  #touched = new Map<string, boolean>();
  /**
   * Uids whose messages a live device held back at the last `compact`, and the `seenAt` after
   * which that device no longer does (kept in memory: after a restart such a uid is compacted
   * when next touched).
   */
  #heldBack = new Map<string, number>();
  /** The key of this shard's bus mark. */
  #shard: string;

  /** Creates the store with the driver loaded ({@linkcode CassandraStore.open}). */
  private constructor(options: CassandraStoreOptions) {
    const { policies, types } = driver;
    this.#shard = options.shard;
    this.#client = new driver.Client({
      contactPoints: options.contactPoints,
      localDataCenter: options.localDataCenter,
      keyspace: options.keyspace ?? DEFAULT_KEYSPACE,
      socketOptions: { readTimeout: options.requestTimeoutMs ?? 3000 },
      // Come back quickly after an outage: the daemon answers 503 until then.
      policies: {
        reconnection: new policies.reconnection.ExponentialReconnectionPolicy(500, 5000),
      },
      queryOptions: {
        consistency: types.consistencies[consistencyKey(options.consistency ?? "LOCAL_QUORUM")],
        prepare: true,
        // Every statement here may be retried: inserts and deletes of fixed rows, and
        // max-register updates.
        isIdempotent: true,
      },
    });
  }

  /** Creates the store and connects, so that a wrong address or keyspace fails now. */
  static async open(options: CassandraStoreOptions): Promise<CassandraStore> {
    driver ??= (await import("cassandra-driver")).default;
    const store = new CassandraStore(options);
    try {
      await store.#client.connect();
    } catch (error) {
      await store.close();
      throw mapError(error);
    }
    return store;
  }

  async append(messages: readonly StoredMessage[], busMark?: string): Promise<void> {
    const byUid = new Map<string, StoredMessage[]>();
    for (const message of messages) {
      let list = byUid.get(message.uid);
      if (!list) byUid.set(message.uid, list = []);
      list.push(message);
    }
    const now = Date.now();
    const batches: Promise<unknown>[] = [];
    for (const [uid, list] of byUid) {
      this.#touch(uid, list.some((m) => m.expiresAt !== 0));
      for (const chunk of chunks(list)) {
        const lastSeq = Math.max(...chunk.map((m) => m.seq));
        const queries = chunk.map((m) => ({ query: CQL.insert, params: insertParams(m, now) }));
        queries.push({ query: CQL.lastSeq, params: [lastSeq, lastSeq, uid] });
        batches.push(this.#client.batch(queries, { logged: false }));
      }
    }
    // Settle every batch before rejecting, so that no write is still running when the caller
    // hears of the failure.
    const failed = (await Promise.allSettled(batches)).find((r) => r.status === "rejected");
    if (failed) throw mapError(failed.reason);
    // No transaction spans partitions here: the mark goes only once every copy is durable,
    // so that it never vouches for one that is not (a crash in between stores copies twice).
    if (busMark !== undefined) await this.#execute(CQL.setBusMark, [this.#shard, busMark]);
  }

  async busMark(shard = this.#shard): Promise<string | null> {
    const [row] = await this.#all(CQL.busMark, [shard]);
    return row?.entry ?? null;
  }

  async readAfter(
    uid: string,
    afterSeq: number,
    limit: number,
    now: number,
  ): Promise<StoredMessage[]> {
    const found: StoredMessage[] = [];
    let after = afterSeq;
    // Expired rows still stored are skipped, so a page may yield fewer than asked: ask again.
    while (found.length < limit) {
      const want = Math.min(limit - found.length, PAGE);
      const { rows } = await this.#execute(CQL.readAfter, [uid, after, want]);
      for (const row of rows) {
        const message = toMessage(uid, row);
        after = message.seq;
        if (message.expiresAt === 0 || message.expiresAt > now) found.push(message);
      }
      if (rows.length < want) break;
    }
    return found;
  }

  async userState(uid: string): Promise<UserState> {
    const [state, cursors] = await Promise.all([
      this.#execute(CQL.userState, [uid]),
      this.#all(CQL.devices, [uid]),
    ]);
    const devices = new Map<string, DeviceState>(cursors.map((row) => [
      row.device,
      { lastAck: toNumber(row.last_ack), seenAt: toNumber(row.seen_at) },
    ]));
    // A keyspace from before devices kept one cursor per uid: it is the default device's
    // (no migration pass needed, nothing lost).
    const legacy = toNumber(state.rows[0]?.last_ack);
    const device = devices.get("");
    if (legacy > (device?.lastAck ?? 0)) {
      devices.set("", { lastAck: legacy, seenAt: device?.seenAt ?? 0 });
    }
    return { lastSeq: toNumber(state.rows[0]?.last_seq), devices };
  }

  async updateDevices(updates: readonly DeviceUpdate[]): Promise<void> {
    // One partition per uid: a batch per (uid, device), not one across partitions.
    await Promise.all(updates.map(({ uid, device, lastAck, seenAt }) => {
      this.#touch(uid, false);
      const queries = [];
      if (lastAck > 0) {
        queries.push({ query: CQL.deviceAck, params: [lastAck, lastAck, uid, device] });
      }
      if (seenAt > 0) {
        queries.push({ query: CQL.deviceSeen, params: [seenAt, seenAt, uid, device] });
      }
      return queries.length === 1
        ? this.#execute(queries[0].query, queries[0].params)
        : this.#batch(queries, false);
    }));
  }

  async subscribe(channel: string, uid: string): Promise<void> {
    await this.#batch([
      { query: CQL.addMember, params: [channel, uid] },
      { query: CQL.addChannel, params: [uid, channel] },
    ]);
  }

  async unsubscribe(channel: string, uid: string): Promise<void> {
    await this.#batch([
      { query: CQL.removeMember, params: [channel, uid] },
      { query: CQL.removeChannel, params: [uid, channel] },
    ]);
  }

  async members(channel: string): Promise<string[]> {
    return (await this.#all(CQL.members, [channel])).map((row) => row.uid);
  }

  async channels(uid: string): Promise<string[]> {
    return (await this.#all(CQL.channels, [uid])).map((row) => row.channel);
  }

  async compact(now: number, liveSince: number): Promise<number> {
    // Uids a device held back are visited again once that device may have gone quiet.
    for (const [uid, at] of this.#heldBack) {
      if (at > liveSince) continue;
      this.#heldBack.delete(uid);
      this.#touch(uid, false);
    }
    const uids = [...this.#touched];
    this.#touched.clear();
    let removed = 0;
    let next = 0;
    const worker = async () => {
      while (next < uids.length) {
        const [uid, expiring] = uids[next++];
        try {
          // Not `removed += await ...`: that reads `removed` before the await and loses the
          // other workers' counts.
          const count = await this.#compactUid(uid, expiring, now, liveSince);
          removed += count;
        } catch (error) {
          this.#touch(uid, expiring); // try again next time
          throw error;
        }
      }
    };
    const workers = Array.from({ length: COMPACT_CONCURRENCY }, worker);
    const failed = (await Promise.allSettled(workers)).find((r) => r.status === "rejected");
    if (failed) throw failed.reason;
    return removed;
  }

  /**
   * Never needed by the daemon (the keyspace is shared: nothing is handed off), and a scan of
   * every partition; here so that the store keeps the whole contract.
   */
  async uids(): Promise<string[]> {
    const found = new Set<string>();
    for (const query of CQL.uids) {
      for (const row of await this.#all(query, [])) found.add(row.uid);
    }
    return [...found];
  }

  /**
   * As the contract says, with Cassandra's registers: `last_seq` and the cursors are
   * max-registers already, and the uid's messages and memberships are deleted before the
   * handed ones are written (later client timestamps, so the writes win).
   */
  async importUsers(users: readonly HandedUser[]): Promise<void> {
    await Promise.all(users.map(async ({ uid, lastSeq, devices, messages, channels }) => {
      await this.#deleteMessagesAndChannels(uid);
      await this.append(messages);
      await this.#execute(CQL.lastSeq, [lastSeq, lastSeq, uid]);
      await this.updateDevices(devices.map((device) => ({ uid, ...device })));
      await Promise.all(channels.map((channel) => this.subscribe(channel, uid)));
    }));
  }

  /**
   * The max-registers are deleted at their own value as timestamp: a later write of a larger
   * value (a seq never goes back) still lands, a smaller one stays shadowed.
   */
  async deleteUsers(uids: readonly string[]): Promise<void> {
    await Promise.all(uids.map(async (uid) => {
      const { lastSeq, devices } = await this.userState(uid);
      await this.#deleteMessagesAndChannels(uid);
      const queries = [{ query: CQL.deleteUserState, params: [lastSeq, uid] }];
      for (const [device, { lastAck, seenAt }] of devices) {
        queries.push({ query: CQL.deleteDeviceAck, params: [lastAck, uid, device] });
        queries.push({ query: CQL.deleteDeviceSeen, params: [seenAt, uid, device] });
      }
      await this.#batch(queries, false);
    }));
  }

  async #deleteMessagesAndChannels(uid: string): Promise<void> {
    const channels = await this.channels(uid);
    await this.#batch([
      { query: CQL.deleteMessages, params: [uid] },
      { query: CQL.deleteChannels, params: [uid] },
      ...channels.map((channel) => ({ query: CQL.removeMember, params: [channel, uid] })),
    ]);
  }

  async close(): Promise<void> {
    await this.#client.shutdown();
  }

  #touch(uid: string, expiring: boolean): void {
    this.#touched.set(uid, expiring || (this.#touched.get(uid) ?? false));
  }

  /**
   * Deletes the uid's acknowledged messages and, if it may hold expiring ones, the expired
   * ones after them; returns how many there were.
   */
  async #compactUid(
    uid: string,
    expiring: boolean,
    now: number,
    liveSince: number,
  ): Promise<number> {
    const { devices } = await this.userState(uid);
    const lastAck = compactionFloor(devices.values(), liveSince);
    // A live device behind the others holds messages back until it acks or goes quiet.
    let quietAt = Infinity;
    for (const device of devices.values()) {
      if (device.seenAt >= liveSince && device.lastAck === lastAck) {
        quietAt = Math.min(quietAt, device.seenAt);
      }
    }
    const ahead = [...devices.values()].some((device) => device.lastAck > lastAck);
    if (ahead && quietAt !== Infinity) this.#heldBack.set(uid, quietAt + 1);
    const deletes: { query: string; params: unknown[] }[] = [];
    const { rows } = await this.#execute(CQL.countUpTo, [uid, lastAck]);
    const acked = toNumber(rows[0].count);
    if (acked > 0) deletes.push({ query: CQL.deleteUpTo, params: [uid, lastAck] });
    let expired = 0;
    if (expiring) {
      for (const row of await this.#all(CQL.expiries, [uid, lastAck])) {
        const expiresAt = toNumber(row.expires_at);
        if (expiresAt === 0 || expiresAt > now) continue;
        deletes.push({ query: CQL.deleteOne, params: [uid, row.seq] });
        expired++;
      }
    }
    if (deletes.length > 0) await this.#batch(deletes, false);
    return acked + expired;
  }

  async #execute(
    query: string,
    params: unknown[],
    options: cassandra.QueryOptions = {},
  ): Promise<cassandra.types.ResultSet> {
    try {
      return await this.#client.execute(query, params, options);
    } catch (error) {
      throw mapError(error);
    }
  }

  /** Every row of a query, page by page. */
  async #all(query: string, params: unknown[]): Promise<cassandra.types.Row[]> {
    const rows: cassandra.types.Row[] = [];
    let pageState: string | undefined;
    do {
      const page = await this.#execute(query, params, { fetchSize: PAGE, pageState });
      rows.push(...page.rows);
      pageState = page.pageState ?? undefined;
    } while (pageState);
    return rows;
  }

  async #batch(queries: { query: string; params: unknown[] }[], logged = true): Promise<void> {
    try {
      await this.#client.batch(queries, { logged });
    } catch (error) {
      throw mapError(error);
    }
  }
}

function consistencyKey(name: ConsistencyName): keyof typeof cassandra.types.consistencies {
  const keys: Record<ConsistencyName, keyof typeof cassandra.types.consistencies> = {
    ONE: "one",
    LOCAL_ONE: "localOne",
    QUORUM: "quorum",
    LOCAL_QUORUM: "localQuorum",
    ALL: "all",
    EACH_QUORUM: "eachQuorum",
  };
  const key = keys[name];
  if (!key) throw new Error(`unknown consistency level: ${name}`);
  return key;
}

/** The uid's messages in batches of at most {@linkcode BATCH_BYTES} (estimated), in order. */
function chunks(messages: StoredMessage[]): StoredMessage[][] {
  const result: StoredMessage[][] = [[]];
  let bytes = 0;
  for (const message of messages) {
    const size = 64 + message.body.length + message.from.length + (message.channel?.length ?? 0);
    if (bytes + size > BATCH_BYTES && result.at(-1)!.length > 0) {
      result.push([]);
      bytes = 0;
    }
    result.at(-1)!.push(message);
    bytes += size;
  }
  return result;
}

function insertParams(message: StoredMessage, now: number): unknown[] {
  let ttl = 0; // no TTL
  if (message.expiresAt !== 0) {
    const remaining = Math.max(0, Math.ceil((message.expiresAt - now) / 1000));
    ttl = Math.min(remaining + TTL_MARGIN_S, MAX_TTL_S);
  }
  return [
    message.uid,
    message.seq,
    message.type,
    message.from,
    // unset, not null: a null would write a tombstone.
    message.channel ?? driver.types.unset,
    message.body,
    message.expiresAt,
    ttl,
  ];
}

function toMessage(uid: string, row: cassandra.types.Row): StoredMessage {
  const message: StoredMessage = {
    uid,
    seq: toNumber(row.seq),
    type: row.type as StoredType,
    from: row.sender,
    body: row.body,
    expiresAt: toNumber(row.expires_at),
  };
  if (row.channel !== null) message.channel = row.channel;
  return message;
}

/** A bigint column's value (a driver `Long`, or null for a missing row or cell) as a number. */
function toNumber(value: cassandra.types.Long | null | undefined): number {
  return value ? value.toNumber() : 0;
}

/** The driver's "cannot serve now" errors as {@linkcode StorageUnavailableError}. */
function mapError(error: unknown): unknown {
  const { errors, types } = driver;
  const unavailableCodes = new Set<number>([
    types.responseErrorCodes.unavailableException,
    types.responseErrorCodes.overloaded,
    types.responseErrorCodes.isBootstrapping,
    types.responseErrorCodes.writeTimeout,
    types.responseErrorCodes.readTimeout,
    types.responseErrorCodes.writeFailure,
    types.responseErrorCodes.readFailure,
  ]);
  const unavailable = error instanceof errors.NoHostAvailableError ||
    error instanceof errors.OperationTimedOutError ||
    error instanceof errors.BusyConnectionError ||
    (error instanceof errors.ResponseError && unavailableCodes.has(error.code));
  if (!unavailable) return error;
  return new StorageUnavailableError(`cassandra: ${(error as Error).message}`, { cause: error });
}

/** The flags of `--storage=cassandra`. */
const CASSANDRA_FLAGS = {
  cassandra_contact_points: text("127.0.0.1:9042", "cassandra: comma-separated host:port list"),
  cassandra_local_dc: text("datacenter1", "cassandra: the local datacenter"),
  cassandra_keyspace: text("ipush", "cassandra: keyspace"),
  cassandra_consistency: oneOf(
    CONSISTENCIES,
    "LOCAL_QUORUM",
    "cassandra: consistency level of reads and writes",
  ),
};

/** What the Cassandra backend reads of the settings. */
type CassandraConfig = FlagValues<typeof CASSANDRA_FLAGS> & {
  storage_timeout_ms: number;
  node_id: string;
};

/** `--storage=cassandra`: a client per shard to one keyspace shared by every node. */
export const cassandraBackend: StoreBackend<typeof CASSANDRA_FLAGS, CassandraConfig> = {
  name: "cassandra",
  shared: true,
  flags: CASSANDRA_FLAGS,
  open: (config, shard) =>
    CassandraStore.open({
      contactPoints: config.cassandra_contact_points.split(",").map((p) => p.trim()),
      localDataCenter: config.cassandra_local_dc,
      keyspace: config.cassandra_keyspace,
      consistency: config.cassandra_consistency,
      requestTimeoutMs: config.storage_timeout_ms,
      shard: `${config.node_id}/${shard}`,
    }),
};
