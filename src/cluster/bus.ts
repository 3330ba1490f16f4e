/**
 * The cluster bus: every channel message of a cluster, at least once, over one Redis stream
 * per cluster (`ipush:bus:{cluster}`) with a consumer group per node (its id).
 *
 * - Sending is one `XADD` (trimmed to `--bus_retention_sec` with `MINID ~`): once Redis has
 *   it, every node will see it, whether it listens now or later. The sending node's own
 *   members get their copies the same way, from its own group: every copy of a channel
 *   message in a cluster is decided when a shard reads its entry, so the bus mark and a
 *   take-over's replay (docs/cluster.md) speak of one order for all of them. `publish`
 *   resolves once this node's shards have stored theirs (an entry carries a key this
 *   process waits on).
 * - Each node reads its group with `XREADGROUP` and acknowledges an entry (`XACK`) only after
 *   its local shards have stored their members' copies. A node that was cut off from Redis, or
 *   restarted, reads on from its group's position: what was published meanwhile arrives, as
 *   long as it is still within the retention. Entries it had read but not acknowledged (it
 *   crashed, or Redis went away before the `XACK`) are read again first. Two exceptions, where
 *   others stored those copies for its uids while it was away: a node that left a
 *   Redis-managed cluster (handing its uids off) drops its group ({@linkcode ClusterBus.leave}),
 *   so its next start begins at the end like a new node's; and with a shared store a member
 *   that starts again begins at the end (`fromNow`).
 * - Idempotence at the receiver: each entry goes to the shards with its stream id, and each
 *   shard skips those at or below its bus mark, the last entry whose copies it stored (kept
 *   in its store, written with those copies: `Shard.publishBusEntries`). So an entry read
 *   again after a crash between the shards' store and the `XACK`, or after a worker restart,
 *   stores nothing new. Within the process, an entry delivered is also remembered until its
 *   `XACK` is confirmed (one read again after a reconnect is then not even sent to the
 *   shards). The mark is a shard's, not its uids': what it does not cover (ownership that
 *   moves) is in docs/cluster.md.
 *
 * Each entry names the node that sent it (`o`, for an operator reading the stream) and the
 * key its sender waits on (`k`); every request is checked as `/pub` checks a back end's
 * (anything that can write to Redis can write here), and an entry that breaks the rules is
 * logged, acknowledged and dropped.
 *
 * @module
 */

import { badRequest, ServiceError } from "../core/errors.ts";
import { type ChannelReceipt, type ChannelRequest, checkChannel } from "../core/requests.ts";
import type { Log } from "../core/log.ts";
import { type BusEntry, entryIdBefore, laterEntryId } from "../core/bus_entry.ts";
import { perPass } from "../thread/batch.ts";
import { closeRedis, duplicateRedis, type RedisClient } from "./redis.ts";

/** A channel message's body text is held to the frame size when it is sent: this is a backstop. */
const BUS_MAX_BODY = 8 << 20;
/** Entries read at once, and how long a read waits for one. */
const READ_COUNT = 256;
const READ_BLOCK_MS = 1_000;
/** The pause before reading again after a failed read or delivery. */
const RETRY_MS = 250;
/**
 * How long `publish` waits for this node's shards to store their copies once Redis has the
 * entry. Past it the publisher hears 503, although the entry is in the stream and will be
 * stored (a retry stores it twice: at least once, never lost).
 */
const STORED_WAIT_MS = 10_000;
/**
 * Most channel messages one entry carries: those sent in one pass of the event loop (the lines
 * of a `/pub/batch`, many `/pub`s at once) share an entry, one `XADD` and one read back.
 */
const ENTRY_REQUESTS = 256;

/** A channel message on its way, and the receipt its sender waits for. */
interface Outgoing {
  request: ChannelRequest;
  stored: PromiseWithResolvers<ChannelReceipt>;
}

/** An entry this process sent, whose copies here are not stored yet. */
interface Sent {
  /** Its requests' senders, in order. */
  waiters: PromiseWithResolvers<ChannelReceipt>[];
  timer: ReturnType<typeof setTimeout>;
}

/** What a node's bus needs. */
export interface BusOptions {
  cluster: string;
  nodeId: string;
  /** How long entries stay in the stream, in seconds: the longest a node may be away. */
  retentionSec: number;
  /**
   * Start at the stream's end, dropping what this node's group had not read or acknowledged:
   * for a member of a Redis-managed cluster with a shared store, whose uids the others served
   * from that store while it was away (they stored those copies; catching up would store them
   * again). With an embedded store the others refuse a dead member's uids (`state lost`) and
   * store nothing for them, so it catches up instead.
   */
  fromNow: boolean;
  /**
   * Stores the entries' channel messages in the local shards and answers each request's
   * receipt (this node's members), in order, every entry's requests in turn; the entries are
   * acknowledged once it resolves (a rejection leaves
   * them to be read again). `streamTop`:
   * the latest entry id of the stream this bus knew of before it read these (its last entry
   * when the bus joined, or the last one read since). A shard's bus mark for this stream was
   * written for entries read before, so it is never past it; one that is was written for
   * another stream (Redis lost this one), even if these entries' ids are past it too.
   */
  deliver(entries: BusEntry[], streamTop: string): Promise<ChannelReceipt[]>;
  log: Log;
}

/** Channel messages between nodes. */
export class ClusterBus {
  #client: RedisClient;
  #reader: RedisClient;
  #options: BusOptions;
  #stream: string;
  /** Entries delivered here whose `XACK` has not been confirmed. */
  #delivered = new Set<string>();
  /** The latest entry id of the stream known here (`BusOptions.deliver`'s `streamTop`). */
  #top: string;
  /** This process's entries whose copies here are not stored yet, by their key (`k`). */
  #waiting = new Map<string, Sent>();
  /** Keys are this process's: a random prefix and a count. */
  #keyPrefix = crypto.randomUUID();
  #sent = 0;
  #send = perPass<Outgoing>((items) => {
    for (let i = 0; i < items.length; i += ENTRY_REQUESTS) {
      this.#add(items.slice(i, i + ENTRY_REQUESTS));
    }
  });
  #closed = false;
  #reading: Promise<void>;

  /**
   * It reads on from where this node's group was (a restart that catches up), rather than
   * from the stream's end (a new group, or `fromNow`).
   */
  readonly resumed: boolean;

  private constructor(
    client: RedisClient,
    reader: RedisClient,
    options: BusOptions,
    top: string,
    resumed: boolean,
  ) {
    this.resumed = resumed;
    this.#client = client;
    this.#reader = reader;
    this.#options = options;
    this.#top = top;
    this.#stream = `ipush:bus:${options.cluster}`;
    this.#reading = this.#read();
  }

  /**
   * Joins the bus: this node's group is created at the stream's end the first time (a new node
   * owns nothing published before it), and kept across restarts, so a node that comes back
   * reads what it missed.
   */
  static async join(
    client: RedisClient,
    redisUrl: string,
    options: BusOptions,
  ): Promise<ClusterBus> {
    const reader = await duplicateRedis(client, redisUrl, options.log);
    const stream = `ipush:bus:${options.cluster}`;
    const group = options.nodeId;
    try {
      let resumed = false;
      try {
        await client.xGroupCreate(stream, group, "$", { MKSTREAM: true });
      } catch (error) {
        if (!String((error as Error).message).includes("BUSYGROUP")) throw error;
        if (options.fromNow) await skipToEnd(client, stream, group);
        else resumed = true;
      }
      // Entries are never deleted from the stream's end (trimming takes the oldest), so its
      // last entry is the latest id it ever had: no shard's mark for this stream is past it.
      const [last] = await client.xRevRange(stream, "+", "-", { COUNT: 1 });
      return new ClusterBus(client, reader, options, last?.id ?? "0-0", resumed);
    } catch (error) {
      await closeRedis(reader);
      throw error;
    }
  }

  /**
   * Hands a channel message to every node, this one included; resolves with this node's
   * receipt once its shards stored their members' copies. 503 if Redis does not take it
   * (stored nowhere), or if this node has not stored it within {@linkcode STORED_WAIT_MS}
   * (in the stream: it will be).
   */
  publish(request: ChannelRequest): Promise<ChannelReceipt> {
    // Closed, it reads no more: its own entry would never be stored here.
    if (this.#closed) return Promise.reject(new ServiceError("draining", 503));
    const stored = Promise.withResolvers<ChannelReceipt>();
    this.#send({ request, stored });
    return stored.promise;
  }

  /** One entry for `items`: its `XADD`, then its senders wait for this node's copies. */
  async #add(items: Outgoing[]): Promise<void> {
    const key = `${this.#keyPrefix}-${++this.#sent}`;
    const waiters = items.map((item) => item.stored);
    const timer = setTimeout(() =>
      this.#refuse(
        key,
        new ServiceError(
          `cluster bus: in the stream, but not stored by this node within ${STORED_WAIT_MS} ms`,
          503,
        ),
      ), STORED_WAIT_MS);
    // Before the `XADD`: this node may read the entry back before Redis' answer arrives.
    this.#waiting.set(key, { waiters, timer });
    try {
      const threshold = Date.now() - this.#options.retentionSec * 1000;
      await this.#client.xAdd(
        this.#stream,
        "*",
        { o: this.#options.nodeId, k: key, r: JSON.stringify(items.map((item) => item.request)) },
        { TRIM: { strategy: "MINID", strategyModifier: "~", threshold } },
      );
    } catch (error) {
      this.#refuse(
        key,
        new ServiceError(`cluster bus unavailable: ${(error as Error).message}`, 503),
      );
    }
  }

  /** The entry of `key` leaves the waiting (it is answered, or refused); undefined if gone. */
  #take(key: string): Sent | undefined {
    const sent = this.#waiting.get(key);
    if (!sent) return undefined;
    clearTimeout(sent.timer);
    this.#waiting.delete(key);
    return sent;
  }

  /** Every sender of the entry of `key`, if it still waits, hears `error`. */
  #refuse(key: string, error: ServiceError): void {
    for (const waiter of this.#take(key)?.waiters ?? []) waiter.reject(error);
  }

  /**
   * Moves this node's group to the stream's end, dropping what it had not read or
   * acknowledged: for a member with a shared store that was fenced and joins again, whose
   * uids the others took over meanwhile (and whose copies they stored, the missed ones
   * replayed: `Shard.settle`).
   */
  skipToEnd(): Promise<void> {
    return skipToEnd(this.#client, this.#stream, this.#options.nodeId);
  }

  /** The stream's latest entry now ("0-0" if it has none). */
  async last(): Promise<string> {
    const [last] = await this.#client.xRevRange(this.#stream, "+", "-", { COUNT: 1 });
    return last?.id ?? "0-0";
  }

  /**
   * Up to where node `node` had its shards store the copies of what it read, as far as its
   * group says: the entry before its first one read but not acknowledged, else the last one
   * it read (so that every entry after it is one it did not store). Null without a group.
   * For a node none of whose shards ever recorded a bus mark (a shard's mark is the exact
   * figure: `Store.busMark`).
   */
  async storedUpTo(node: string): Promise<string | null> {
    const groups = await this.#client.xInfoGroups(this.#stream) as unknown as GroupInfo[];
    const group = groups.find((info) => String(info.name) === node);
    if (!group) return null;
    const lastRead = String(group["last-delivered-id"]);
    if (Number(group.pending) === 0) return lastRead;
    const { firstId } = await this.#client.xPending(this.#stream, node);
    return firstId ? entryIdBefore(String(firstId)) : lastRead;
  }

  /**
   * Every entry after `after` up to `upTo` (both ids), in stream order: the entries a shard
   * taking over uids stores their copies of, which their old owner never did (docs/cluster.md,
   * "Channel copies when uids move"). What the retention trimmed is not there.
   */
  async range(after: string, upTo: string): Promise<BusEntry[]> {
    const entries: BusEntry[] = [];
    let from = `(${after}`;
    for (;;) {
      const page = await this.#client.xRange(this.#stream, from, upTo, { COUNT: READ_COUNT });
      for (const { id, message } of page) {
        const entry = this.#parse(id, message);
        if (entry) entries.push(entry);
      }
      if (page.length < READ_COUNT) return entries;
      from = `(${page[page.length - 1].id}`;
    }
  }

  /** Stops reading (its group stays, for the next start to read on from). */
  async close(): Promise<void> {
    this.#closed = true;
    const closed = new ServiceError("cluster bus closed (draining)", 503);
    for (const key of [...this.#waiting.keys()]) this.#refuse(key, closed);
    await closeRedis(this.#reader);
    await this.#reading;
  }

  /**
   * Stops reading and drops this node's group: for a node that has left a Redis-managed
   * cluster and handed its uids off. The others store their copies from then on and hand them
   * back when it joins again, so its next start must begin at the stream's end, as a new
   * node's does; catching up from here would store those copies twice.
   */
  async leave(): Promise<void> {
    await this.close();
    await this.#client.xGroupDestroy(this.#stream, this.#options.nodeId);
  }

  /** Reads this node's group: its pending entries first ("0"), then new ones (">"). */
  async #read(): Promise<void> {
    const { nodeId } = this.#options;
    let from = "0";
    while (!this.#closed) {
      try {
        const reply = await this.#reader.xReadGroup(
          nodeId,
          nodeId,
          { key: this.#stream, id: from },
          { COUNT: READ_COUNT, BLOCK: READ_BLOCK_MS },
        ) as { messages: { id: string; message: Record<string, string> }[] }[] | null;
        const entries = reply?.[0]?.messages ?? [];
        if (from !== ">") {
          // Pending entries are read in order from `from`; none left: on to new ones.
          if (entries.length === 0) from = ">";
          else from = entries[entries.length - 1].id;
        }
        if (entries.length > 0) await this.#handle(entries);
      } catch (error) {
        if (this.#closed) return;
        // Redis gone (the connection logs it), or a delivery failed: read the pending again.
        if (!String((error as Error).message).includes("closed")) {
          this.#options.log("debug", `cluster bus: ${(error as Error).message}`);
        }
        from = "0";
        await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
      }
    }
  }

  async #handle(entries: { id: string; message: Record<string, string> }[]): Promise<void> {
    // The latest id before this read: a shard's mark for this stream is never past it, even
    // if this read's entries are (a mark past it is another stream's; see `deliver`).
    const known = this.#top;
    const fresh: BusEntry[] = [];
    const keys: (string | undefined)[] = [];
    for (const { id, message } of entries) {
      this.#top = laterEntryId(this.#top, id);
      if (this.#delivered.has(id)) continue;
      const entry = this.#parse(id, message);
      if (!entry) continue;
      fresh.push(entry);
      keys.push(message.k);
    }
    if (fresh.length > 0) {
      const receipts = await this.#options.deliver(fresh, known);
      // Only this process waits on its keys; another's (a restart's) are nobody's now.
      let next = 0;
      fresh.forEach((entry, i) => {
        const sent = keys[i] === undefined ? undefined : this.#take(keys[i]);
        sent?.waiters.forEach((waiter, j) => waiter.resolve(receipts[next + j]));
        next += entry.requests.length;
      });
    }
    for (const { id } of fresh) this.#delivered.add(id);
    const ids = entries.map((entry) => entry.id);
    await this.#client.xAck(this.#stream, this.#options.nodeId, ids);
    for (const id of ids) this.#delivered.delete(id);
  }

  /** The entry, checked; null (logged) if it breaks the rules. */
  #parse(id: string, message: Record<string, string>): BusEntry | null {
    try {
      return parseEntry(id, message);
    } catch (error) {
      this.#options.log("warn", `a cluster bus entry was dropped: ${(error as Error).message}`);
      return null;
    }
  }
}

async function skipToEnd(client: RedisClient, stream: string, group: string): Promise<void> {
  await client.xGroupSetId(stream, group, "$");
  await client.xGroupDelConsumer(stream, group, group);
}

/** What `XINFO GROUPS` says of one group, as far as it is read here. */
interface GroupInfo {
  name: unknown;
  pending: unknown;
  "last-delivered-id": unknown;
}

/** An entry's channel messages, checked. */
function parseEntry(id: string, message: Record<string, string>): BusEntry {
  const requests = JSON.parse(message.r);
  if (!Array.isArray(requests)) throw badRequest("no requests");
  return { id, requests: requests.map((request) => checkChannel(request, BUS_MAX_BODY)) };
}
