/**
 * A shard: everything about the uids it owns — their sessions, sequence numbers, devices'
 * cursors, stored messages and channel memberships. It is the only writer for those uids, so
 * plain counters suffice: no locks, no compare-and-set.
 *
 * Devices (PROTOCOL.md §7): each (uid, device) has its own cursor. A session replays from its
 * device's cursor and its acks move only that cursor, so a tablet that was offline while the
 * phone read and acked still gets every message.
 *
 * Ordering: a message gets its `s` synchronously, is stored through the journal (group
 * commit, batches durable in order), and only then is delivered. A connecting session is
 * registered first and replays from the store second, holding live deliveries back
 * meanwhile; it drops any `s` it has already sent. So replay then live has no gap and no
 * duplicate. A connection may say where it resumes (`since`): that acknowledges every
 * `s ≤ since` before the replay.
 *
 * A session whose connection left it (a long-poll between polls) stays registered, so the uid
 * stays online, and gets nothing until the client's next connection of the same transport and
 * device rejoins it: that one replays from the cursor again, as a new session would. It is
 * forgotten after `sessionWaitMs`. Nothing here depends on which transport that is.
 *
 * Access: a client's subscribe (y=1) and channel message (y=4) run only if its session's
 * channel access allows them (`{"error":"forbidden"}` otherwise, the stream staying open); a
 * uid holds at most `connectionsPerUid` sessions here and subscribes with y=1 to at most
 * `channelsPerUid` channels. The admin API's requests are held to none of these.
 *
 * Map changes (docs/cluster.md): when the map moves a uid away, the shard closes its sessions
 * with `{"error":"moved"}` and forgets its cached state and channel memberships at once, so
 * that a later re-own reloads from the store; `s` is taken only after a fresh ownership check,
 * so nothing is numbered here once the map has moved the uid. A uid the map moves *here* while
 * the change is held (until every former owner has let go) waits: its state is read from the
 * store only once the change is settled.
 *
 * Hand-off (an embedded store, docs/cluster.md): {@linkcode Shard.handOff} sends the state of
 * every uid its store holds but the map no longer gives it to the uid's owner, and deletes it
 * here only once that owner took it; {@linkcode Shard.importUsers} takes such state, only for
 * uids it holds (a uid it has served throughout keeps its own state: the handed one is stale).
 *
 * Bus mark (docs/cluster.md, the bus): in a cluster every channel copy is stored from the bus,
 * this node's own messages' too. {@linkcode Shard.publishBusEntries} stores the copies with the
 * id of the last bus entry they complete, in the same journal append, and skips any entry at
 * or below that mark when it is read again (the node died, or this worker crashed, before the
 * `XACK`). The mark is the shard's, read from its store at start: it says nothing about a uid
 * handed to the shard later.
 *
 * Taking over (docs/cluster.md, "Channel copies when uids move"): a settle that gives the
 * shard uids of other nodes' shards ({@linkcode Shard.settle} with a `TakeOver`) also stores
 * their copies of the channel messages their old shard never stored: the bus entries after
 * where it let each uid go (its reported position, or a dead shard's mark) up to the stream's
 * end at the settle are replayed to the shard for those uids alone; live entries up to that
 * end skip them.
 *
 * @module
 */

import type { ChannelAction, Sender } from "../core/access.ts";
import { errorAnswer, ServiceError } from "../core/errors.ts";
import type { PresenceChange } from "../core/presence.ts";
import {
  type ChannelReceipt,
  type ChannelRequest,
  noReceipt,
  type PubResult,
  type Receipt,
  type UnicastRequest,
} from "../core/requests.ts";
import type {
  Delivery,
  DeviceCursor,
  HandedUser,
  HandOffOutcome,
  StoredMessage,
} from "../core/messages.ts";
import {
  type BusEntry,
  type BusPosition,
  compareEntryIds,
  laterEntryId,
} from "../core/bus_entry.ts";
import type { ClientMessage } from "../protocol/message.ts";
import { encodeListed } from "../protocol/message.ts";
import {
  lostMaps,
  type LostNode,
  lostWith,
  nodeOf,
  seqFloor,
  ShardMap,
} from "../core/shard_map.ts";
import type { ReplayRange, TakeOver } from "./ops.ts";
import { FencedError, type Journal, StorageBusyError } from "../storage/journal.ts";
import {
  compactionFloor,
  StorageUnavailableError,
  type Store,
  type UserState,
} from "../storage/store.ts";
import { type ShardCounters, type ShardHistograms, TRANSPORT_COUNTERS } from "../stats/counters.ts";
import type { Outcome, Session, SessionOwner } from "../session/session.ts";
import { Allowances, type MessageBudget, type MessageRate } from "../session/rate.ts";
import type { ClientConn, TransportName } from "../transport/conn.ts";

/** What a shard needs from its surroundings. */
export interface ShardOptions {
  /** This shard's index in `map`. */
  index: number;
  map: ShardMap;
  store: Store;
  journal: Journal;
  /** The store's bus mark, read at start ({@linkcode Shard.publishBusEntries}); none if absent. */
  busMark?: string | null;
  counters: ShardCounters;
  /** Where delivery latencies go. */
  histograms: ShardHistograms;
  /** Stored messages replayed per store read. */
  replayPage: number;
  /** Devices a uid may have seen within `deviceTtlMs`; a new one past it is refused. */
  maxDevices: number;
  /** A device not seen this long no longer counts (nor holds messages back). */
  deviceTtlMs: number;
  /** Channels whose members stay cached; the least recently used beyond it are forgotten. */
  channelCacheSize: number;
  /** What one uid, and one connection, may do. */
  limits: ShardLimits;
  /** How long a session whose connection left it waits for the client's next one. */
  sessionWaitMs: number;
  /** A client's y=3 to a uid owned by another shard. */
  forward(request: UnicastRequest): Promise<unknown>;
  /**
   * A client's y=4, to every member of its channel: resolves once this node's members' copies
   * are stored, this shard's included (through the cluster bus, or this process's shards).
   */
  publishChannel(request: ChannelRequest): Promise<unknown>;
  /**
   * Hands `users` (of one shard, another) to their owner; resolves with the uids it kept its
   * own state of (see {@linkcode Shard.importUsers}).
   */
  handOff(users: HandedUser[]): Promise<string[]>;
  /** Hears connection counts and channel joins of online uids; absent without presence. */
  presence?: (change: PresenceChange) => void;
  log(level: "debug" | "info" | "warn" | "error", message: string): void;
}

/** Limits on what clients do (PROTOCOL.md §8); each a flag. */
export interface ShardLimits {
  connectionsPerUid: number;
  channelsPerUid: number;
  /** Client messages a second per connection, and how many at once. */
  messageRate: MessageRate;
}

interface User {
  uid: string;
  lastSeq: number;
  /**
   * Each device's cursor: a list, not a Map, as most uids have one device, and a Map of one
   * with its cursor costs an idle connection ~320 bytes (a list of one, ~100: heap snapshot).
   */
  devices: DeviceCursor[];
  /**
   * Replaced, never grown in place: an array pushed onto (or spread or filtered into) holds
   * room for 17; `concat` and `toSpliced` make one of exactly its length. `devices` too.
   */
  sessions: Session[];
  /** The uid's channels once needed (presence, the channel limit) while it is cached. */
  channels?: string[];
  /** Operations in flight; a user is only forgotten at zero. */
  busy: number;
  lastUsed: number;
}

/** How long an offline user's state stays cached after its last use. */
const USER_IDLE_MS = 60_000;
/** A connect this soon after the same uid's disconnect counts as a reconnect. */
const RECONNECT_WINDOW_MS = 60_000;

/** Most uids in one hand-off request, and about the most bytes of their messages. */
const HAND_OFF_USERS = 500;
const HAND_OFF_BYTES = 4 << 20;

/** How a map change is applied ({@linkcode Shard.setMap}). */
export interface MapChange {
  /**
   * Uids this change gives the shard wait until {@linkcode Shard.settle}: their former owners
   * may still be writing for them.
   */
  hold: boolean;
  /** Forget every uid and hold all of them (the node was fenced and re-joins). */
  reset?: boolean;
}

/** One shard's state and behaviour. */
export class Shard implements SessionOwner {
  readonly counters: ShardCounters;
  #options: ShardOptions;
  /**
   * While a change is held: the maps applied since the last settled one (that one first); a
   * uid is this shard's without waiting only if every one of them gave it here (after a
   * reset, none does).
   */
  #heldSince: { owns(uid: string): boolean }[] | null = null;
  #settled = Promise.withResolvers<void>();
  /** Bumped by every map change: a user state read under an older map is read again. */
  #generation = 0;
  #users = new Map<string, User>();
  #loadingUsers = new Map<string, Promise<User>>();
  /**
   * channel → the members this shard owns, loaded on the channel's first message; least
   * recently used first, and no more than `channelCacheSize` of them (a client sending to a
   * new channel each time would otherwise grow it without bound).
   */
  #channels = new Map<string, Set<string>>();
  #loadingChannels = new Map<string, Promise<Set<string>>>();
  #loadingChannelLists = new Map<string, Promise<string[]>>();
  #sessions = new Set<Session>();
  /** Open sessions per uid, counted from the moment a session is taken. */
  #connections = new Map<string, number>();
  #recentlyLeft = new Map<string, number>();
  /** Members lost with their uids' state: their uids without state here are refused. */
  #lost: ReturnType<typeof lostMaps> = [];
  /** The `/send` allowance of each uid's device that has spent from it lately. */
  #sendAllowances: Allowances;
  /**
   * The id of the last bus entry this shard has stored the copies of (or found none to
   * store): entries up to it are skipped. Its own, not its uids': see docs/cluster.md.
   */
  #busMark: string | null;
  /** The bus batch being stored: its last id, whether its copies are decided, its outcome. */
  #busBatch: { last: string; decided: boolean; stored: Promise<boolean> } | null = null;
  /** Up to which entry this shard stored copies under the map before the last change. */
  #appliedPosition: Promise<string | null> = Promise.resolve(null);
  /** The uids a failed hand-off left, and under which map (`#generation`). */
  #handOffLeft: { generation: number; uids: string[] } | null = null;
  /** The uids taken over from other shards at the last settle, while entries skip them. */
  #takenOver: TakenOver | null = null;
  /**
   * The same, until {@linkcode replay} has stored their copies: live entries past the
   * replay's end may end the skipping before the replay arrives.
   */
  #toReplay: TakenOver | null = null;

  constructor(options: ShardOptions) {
    this.#options = options;
    this.counters = options.counters;
    this.#sendAllowances = new Allowances(options.limits.messageRate);
    this.#busMark = options.busMark ?? null;
  }

  get messageRate(): ShardLimits["messageRate"] {
    return this.#options.limits.messageRate;
  }

  sendAllowance(sender: Sender, now: number): MessageBudget {
    return this.#sendAllowances.of(sender.uid, sender.device, now);
  }

  /** Why a new session of `uid` is refused (its connections are at the limit), or null. */
  admit(uid: string): string | null {
    const open = this.#connections.get(uid) ?? 0;
    return open < this.#options.limits.connectionsPerUid ? null : "too many connections";
  }

  /**
   * A new map (ports known, a shard restarted, a member joined or left): this shard is at
   * `index` of it (-1: in none). Sessions of uids it no longer owns get `{"error":"moved"}`
   * and their state is forgotten, at once (the caller then flushes the journal, so that what
   * was numbered under the old map is durable before anyone else reads it).
   */
  setMap(map: ShardMap, index: number, change: MapChange = { hold: false }): void {
    const before = this.#options.map;
    const beforeIndex = this.#options.index;
    this.#options.map = map;
    this.#options.index = index;
    this.#generation++;
    // A batch decided under the old map stores under it (or fails, and is decided again).
    const batch = this.#busBatch;
    const mark = this.#busMark;
    this.#appliedPosition = batch?.decided
      ? batch.stored.then((stored) => stored ? batch.last : mark)
      : Promise.resolve(mark);
    if (change.reset) this.#heldSince = [{ owns: () => false }];
    else if (change.hold || this.#heldSince) {
      // A change while one is held (a port update too) is held with it.
      this.#heldSince ??= [mapOwnedAt(before, beforeIndex)];
      this.#heldSince.push(mapOwnedAt(map, index));
    }
    const moved = (uid: string) => change.reset || !this.owns(uid);
    for (const session of [...this.#sessions]) {
      if (moved(session.uid)) {
        this.counters.moved_sessions++;
        session.fail("moved");
      }
    }
    for (const uid of [...this.#users.keys()]) if (moved(uid)) this.#users.delete(uid);
    // Memberships are cached per channel, filtered by the old map: read them again.
    this.#channels.clear();
  }

  /**
   * The members lost with their uids' state (they died without handing it off): a uid one of
   * them held that has no state here is refused with `503 {"error":"state lost"}` rather than
   * numbered from 1 again, which would reuse the `s` that member gave; once its loss is
   * accepted (a `floor`), they are served and numbered above the floor.
   */
  setLost(lost: readonly LostNode[]): void {
    this.#lost = lostMaps(lost);
  }

  /**
   * Up to which bus entry this shard stored its members' copies under the map before the last
   * change ({@linkcode setMap}); null if it never stored any. What the uids' new owners replay
   * after (`BusPosition`): every entry after it was decided under the new map.
   */
  appliedPosition(): Promise<string | null> {
    return this.#appliedPosition;
  }

  /**
   * The held change is settled: the uids it gave this shard are served. With `takeOver`, for
   * those of them whose shard in the last settled map was one of `takeOver.from`'s: up to its
   * position (reported with its `applied`; for a node that died, its mark in the shared store
   * or what its group says) that shard stored their copies; the entries after it up to
   * `takeOver.until` it did not, nor did this shard. This
   * answers that range, for {@linkcode replay} to store those copies; null if there is none.
   * The uids are served at once (an operation already waiting for one may hold the loading
   * of its state, which the replay needs): bus entries up to the range's end skip them, so
   * each copy is stored once, but a copy replayed after the uid was served comes after
   * messages numbered meanwhile.
   */
  async settle(takeOver?: TakeOver): Promise<ReplayRange | null> {
    if (!this.#heldSince) return null;
    this.#takenOver = this.#toReplay = takeOver
      ? await this.#takeOver(new ShardMap(takeOver.before), takeOver)
      : null;
    this.#settle();
    const from = this.#takenOver?.from;
    if (!from || from.size === 0) return null;
    const marks = [...from.values()].flatMap((shard) => shard.marks);
    const after = marks.reduce((low, mark) => compareEntryIds(mark, low) < 0 ? mark : low);
    return { after, upTo: takeOver!.until };
  }

  /** What each old owner's shard of `map` stored up to; logged where it cannot be known. */
  async #takeOver(map: ShardMap, takeOver: TakeOver): Promise<TakenOver> {
    const from = new Map<number, TakenShard>();
    for (const [index, shard] of map.shards.entries()) {
      const old = takeOver.from.find((node) => node.node === nodeOf(shard));
      if (!old) continue;
      if (old.positions) {
        from.set(index, reportedShard(shard.id, old.positions));
        continue;
      }
      // It died: its mark in a shared store, or its group.
      const upTo = await this.#storage(() => this.#options.store.busMark(shard.id)) ??
        old.storedUpTo;
      if (upTo === null) {
        this.#options.log(
          "warn",
          `shard ${shard.id} of dead node ${old.node} left no bus mark nor group: the ` +
            "channel messages it had not stored for its uids are not replayed",
        );
        continue;
      }
      from.set(index, { marks: [upTo], upTo: () => upTo });
    }
    return { map, from, until: takeOver.until };
  }

  /**
   * Stores the copies of the replayed entries (the range {@linkcode settle} answered) for the
   * uids taken over alone, those after their old shard's position: every copy in a cluster is
   * decided from the bus (the node that publishes an entry reads it too), so that position
   * covers all the old shard stored, whoever published.
   * Answers how many copies it stored.
   */
  async replay(entries: readonly BusEntry[]): Promise<number> {
    const taken = this.#toReplay;
    this.#toReplay = null;
    if (!taken || entries.length === 0) return 0;
    const requests = entries.flatMap((entry) => entry.requests);
    const entryOf = entries.flatMap((entry) => entry.requests.map(() => entry));
    const receipts = await this.#publishChannels(requests, {
      keep: (uid, i) => {
        const shard = taken.from.get(taken.map.indexOf(uid));
        return shard !== undefined && compareEntryIds(entryOf[i].id, shard.upTo(uid)) > 0;
      },
    });
    const stored = receipts.reduce(
      (sum, receipt, i) => requests[i].volatile ? sum : sum + receipt.recipients,
      0,
    );
    this.#options.log("info", `${stored} channel copies replayed for uids taken over`);
    return stored;
  }

  #settle(): void {
    this.#heldSince = null;
    this.#settled.resolve();
    this.#settled = Promise.withResolvers<void>();
  }

  /** True when this shard owns `uid`. */
  owns(uid: string): boolean {
    return this.#options.index >= 0 && this.#options.map.indexOf(uid) === this.#options.index;
  }

  /** Resolves once `uid`, owned here, may be served (at once unless a held change gave it). */
  #ready(uid: string): Promise<void> | undefined {
    const held = this.#heldSince;
    if (!held || held.every((owned) => owned.owns(uid))) return undefined;
    return this.#settled.promise;
  }

  /**
   * Hands the state of every uid the store holds but the map no longer gives this shard to
   * the uid's owner, a batch at a time per owning shard, and deletes it here once the owner
   * took it (or kept its own, newer state). A batch that fails is kept here, whole, and so
   * is the rest for that shard. Resolves with how many uids are left, and why.
   */
  async handOff(): Promise<HandOffOutcome> {
    const store = this.#options.store;
    const generation = this.#generation;
    // Under the same map the uids to hand off only ever go (none can be written here): a
    // retry takes those the last attempt left rather than scan the whole store again.
    const left = this.#handOffLeft;
    this.#handOffLeft = null;
    const candidates = left?.generation === generation
      ? left.uids
      : await this.#storage(() => store.uids());
    const byOwner = new Map<number, string[]>();
    for (const uid of candidates) {
      if (this.owns(uid)) continue;
      const owner = this.#options.map.indexOf(uid);
      const uids = byOwner.get(owner);
      if (uids) uids.push(uid);
      else byOwner.set(owner, [uid]);
    }
    const outcome: HandOffOutcome = { left: 0 };
    const unsent: string[] = [];
    for (const uids of byOwner.values()) {
      let next = 0;
      /** Uids handed off (or found stale) and deleted here. */
      let done = 0;
      try {
        while (next < uids.length) {
          const batch: HandedUser[] = [];
          let bytes = 0;
          while (next < uids.length && batch.length < HAND_OFF_USERS && bytes < HAND_OFF_BYTES) {
            const user = await this.#export(uids[next++]);
            batch.push(user);
            for (const message of user.messages) bytes += 64 + message.body.length;
          }
          const kept = await this.#options.handOff(batch);
          if (kept.length > 0) {
            this.#options.log(
              "warn",
              `hand-off: ${kept.length} uids (${kept.slice(0, 5).join(", ")}) have been served ` +
                "by their owner throughout: the copies here were stale and are deleted",
            );
          }
          // A uid the map gave back meanwhile is left alone: its owner hands it back.
          const gone = batch.map((user) => user.uid).filter((uid) => !this.owns(uid));
          await this.#storage(() => store.deleteUsers(gone));
          this.counters.handed_off_uids += gone.length;
          done = next;
        }
      } catch (error) {
        // Said by the map keeper, with the others' (once, not once an attempt).
        outcome.left += uids.length - done;
        outcome.reason ??= (error as Error).message;
        unsent.push(...uids.slice(done));
      }
    }
    if (unsent.length > 0) this.#handOffLeft = { generation, uids: unsent };
    return outcome;
  }

  /** The uid's state as a hand-off carries it: messages above its compaction floor. */
  async #export(uid: string): Promise<HandedUser> {
    const store = this.#options.store;
    const now = Date.now();
    const { lastSeq, devices } = await this.#storage(() => store.userState(uid));
    const messages: StoredMessage[] = [];
    let after = compactionFloor(devices.values(), now - this.#options.deviceTtlMs);
    for (;;) {
      const page = await this.#storage(() =>
        store.readAfter(uid, after, this.#options.replayPage, now)
      );
      messages.push(...page);
      if (page.length < this.#options.replayPage) break;
      after = page[page.length - 1].seq;
    }
    return {
      uid,
      lastSeq,
      devices: cursorsOf(devices),
      messages,
      channels: await this.#storage(() => store.channels(uid)),
    };
  }

  /**
   * Takes the state of uids handed off by their old owner: for uids this shard owns and holds
   * (not served yet: the change that gave them is not settled), and for those it has refused
   * as lost throughout (no state here: a lost member came back with its files and hands them
   * on). Any other uid it has served throughout keeps its own state, which is newer; those
   * uids are answered.
   */
  async importUsers(users: readonly HandedUser[]): Promise<string[]> {
    for (const user of users) this.#checkOwner(user.uid);
    const kept: HandedUser[] = [];
    for (const user of users) {
      if (this.#ready(user.uid) !== undefined) continue;
      // Refused while it has no state: nothing is numbered for it meanwhile.
      if (lostWith(this.#lost, user.uid) && isEmpty(await this.#state(user.uid))) continue;
      kept.push(user);
    }
    const taken = users.filter((user) => !kept.includes(user));
    await this.#storage(() => this.#options.store.importUsers(taken));
    for (const user of taken) {
      // Cached memberships were read without it.
      for (const channel of user.channels) this.#channels.delete(channel);
    }
    this.counters.imported_uids += taken.length;
    return kept.map((user) => user.uid);
  }

  /** Open sessions. */
  get sessions(): ReadonlySet<Session> {
    return this.#sessions;
  }

  /** Stores (unless volatile) and delivers a message to one uid; resolves with its receipt. */
  async publish(request: UnicastRequest): Promise<Receipt> {
    const [result] = await this.publishMany([request]);
    if ("s" in result) return result;
    throw new ServiceError(result.error, result.status);
  }

  /**
   * Stores (unless volatile) and delivers many messages to uids of this shard, with one
   * journal batch for all of them: a request's cost is then its own work, not a store round
   * trip. Answers each request's receipt or its error, in order.
   */
  async publishMany(requests: readonly UnicastRequest[]): Promise<PubResult[]> {
    const takenAt = performance.now();
    const results: PubResult[] = new Array(requests.length);
    const users: (User | undefined)[] = new Array(requests.length);
    let loading: Promise<void>[] | undefined;
    for (let i = 0; i < requests.length; i++) {
      const uid = requests[i].to;
      if (!this.owns(uid)) {
        results[i] = notOwned(uid);
        continue;
      }
      const cached = this.#users.get(uid);
      if (cached) users[i] = cached;
      else {
        (loading ??= []).push(
          this.#user(uid).then((user) => void (users[i] = user), (error) => {
            results[i] = errorAnswer(error);
          }),
        );
      }
    }
    if (loading) await Promise.all(loading);
    // Sequence numbers are taken in request order once every user is at hand.
    const messages: (StoredMessage | undefined)[] = new Array(requests.length);
    const stored: StoredMessage[] = [];
    for (let i = 0; i < requests.length; i++) {
      const user = users[i];
      if (!user) continue;
      // The map may have moved it while its state loaded.
      if (!this.owns(user.uid)) {
        users[i] = undefined;
        results[i] = notOwned(user.uid);
        continue;
      }
      user.busy++;
      const request = requests[i];
      const message = this.#message(user, 3, request.from, request.body, request.ttlSec, request);
      messages[i] = message;
      if (!request.volatile) stored.push(message);
    }
    let storeFailure: PubResult | undefined;
    try {
      if (stored.length > 0) await this.#store(stored);
    } catch (error) {
      storeFailure = errorAnswer(error);
    }
    let delivered = 0;
    for (let i = 0; i < requests.length; i++) {
      const message = messages[i];
      if (!message) continue;
      const user = users[i]!;
      if (storeFailure && message.seq !== 0) results[i] = storeFailure;
      else {
        delivered += this.#deliver(user, message);
        results[i] = { s: message.seq, online: onlineDevices(user) };
      }
      this.#release(user);
    }
    this.#delivered(takenAt, delivered);
    return results;
  }

  /** Stores (unless volatile) and delivers a channel message to the members this shard owns. */
  async publishChannel(request: ChannelRequest): Promise<ChannelReceipt> {
    const [receipt] = await this.#publishChannels([request]);
    return receipt;
  }

  /**
   * Stores and delivers the channel messages of bus entries (in stream order) to the members
   * this shard owns. An entry at or below the shard's bus mark is skipped: its
   * copies are stored already (it is read again because the node died, or lost Redis, before
   * its `XACK`). The copies of the others go to the journal in one append that carries the
   * last one's id as the new mark, so that the mark commits with the copies it vouches for.
   *
   * `streamTop` is the latest entry id the node's bus knew of before it read these: a mark
   * past it was written for another stream (Redis lost it and it was made anew, or came back
   * from an older snapshot), whose ids say nothing about this one's, so it is dropped rather
   * than trusted.
   * Answers each request's receipt, every entry's in turn (none for one skipped: its members
   * were counted when it was stored).
   */
  async publishBusEntries(
    entries: readonly BusEntry[],
    streamTop: string,
  ): Promise<ChannelReceipt[]> {
    if (this.#busMark !== null && compareEntryIds(this.#busMark, streamTop) > 0) {
      this.#options.log(
        "warn",
        `bus mark ${this.#busMark} is past the bus stream's last entry ${streamTop}: the ` +
          "stream is not the one the mark was written for (Redis lost it?); nothing is " +
          "skipped by it",
      );
      this.#busMark = null;
    }
    const mark = this.#busMark;
    const fresh = mark === null
      ? entries
      : entries.filter((entry) => compareEntryIds(entry.id, mark) > 0);
    if (fresh.length < entries.length) {
      this.#options.log(
        "info",
        `${entries.length - fresh.length} bus entries at or below this shard's bus mark ` +
          `${mark} skipped: their copies are stored already`,
      );
    }
    if (fresh.length === 0) return entries.flatMap((entry) => entry.requests.map(noReceipt));
    const last = fresh.reduce((latest, entry) => laterEntryId(latest, entry.id), fresh[0].id);
    const requests = fresh.flatMap((entry) => entry.requests);
    // Up to the end of the replay, a uid taken over gets its copies from the replay alone;
    // read when the members are chosen (a batch may wait for a settle that takes some over).
    const entryOf = fresh.flatMap((entry) => entry.requests.map(() => entry));
    const keep = (uid: string, i: number) => {
      const taken = this.#takenOver;
      return !taken || compareEntryIds(entryOf[i].id, taken.until) > 0 ||
        !taken.from.has(taken.map.indexOf(uid));
    };
    const stored = Promise.withResolvers<boolean>();
    const batch = { last, decided: false, stored: stored.promise };
    this.#busBatch = batch;
    let receipts: ChannelReceipt[];
    try {
      receipts = await this.#publishChannels(requests, {
        busMark: last,
        keep,
        decided: () => batch.decided = true,
      });
      stored.resolve(true);
    } catch (error) {
      stored.resolve(false);
      throw error;
    } finally {
      if (this.#busBatch === batch) this.#busBatch = null;
    }
    const taken = this.#takenOver;
    if (taken && compareEntryIds(last, taken.until) >= 0) this.#takenOver = null;
    // Also when nothing was stored (no members here, or only volatile messages): there is
    // nothing to store again, and the stored mark, older, only costs such an entry a re-read.
    if (this.#busMark === null || compareEntryIds(last, this.#busMark) > 0) this.#busMark = last;
    // `fresh` keeps the entries' order: its requests' receipts come in turn.
    const isFresh = new Set(fresh);
    let next = 0;
    return entries.flatMap((entry) =>
      entry.requests.map(() => isFresh.has(entry) ? receipts[next++] : noReceipt())
    );
  }

  /**
   * Stores (unless volatile) and delivers channel messages to the members this shard owns, in
   * request order, with one journal append for all of their copies (carrying `busMark`, if
   * given); with `keep`, only to the members it keeps for request `i`; `decided` hears when
   * the members are chosen (by the map of that moment). Answers each request's receipt;
   * rejects if a member's state or the store fails.
   */
  async #publishChannels(
    requests: readonly ChannelRequest[],
    { busMark, keep, decided }: {
      busMark?: string;
      keep?: (uid: string, i: number) => boolean;
      decided?: () => void;
    } = {},
  ): Promise<ChannelReceipt[]> {
    const takenAt = performance.now();
    const memberSets = await Promise.all(requests.map((request) => this.#members(request.channel)));
    // Each request's members as they are now (a cached set changes with every subscribe).
    const recipients = memberSets.map((members) => [...members]);
    // Online members are cached: only the others wait for their state (no promise per member).
    // Each user is held (busy) once, however many of the requests it is a member for.
    const held = new Map<string, User>();
    let loading: Promise<User>[] | undefined;
    for (const uid of new Set(recipients.flat())) {
      const cached = this.#users.get(uid);
      if (!cached) (loading ??= []).push(this.#user(uid));
      else {
        cached.busy++;
        held.set(uid, cached);
      }
    }
    try {
      if (loading) {
        for (const user of await Promise.all(loading)) {
          if (held.has(user.uid)) continue;
          user.busy++;
          held.set(user.uid, user);
        }
      }
      // Only members still owned here: the map may have moved some while they loaded.
      const copies = requests.map((request, i) =>
        recipients[i].map((uid) => held.get(uid)!).filter((user) =>
          this.owns(user.uid) && (keep?.(user.uid, i) ?? true)
        ).map((user) => ({
          user,
          message: this.#message(user, 4, request.from, request.body, request.ttlSec, request),
        }))
      );
      decided?.();
      const stored = requests.flatMap((request, i) =>
        request.volatile ? [] : copies[i].map((copy) => copy.message)
      );
      await this.#store(stored, busMark);
      let delivered = 0;
      const receipts = copies.map((list) => {
        let online = 0;
        for (const { user, message } of list) {
          delivered += this.#deliver(user, message);
          if (user.sessions.length > 0) online++;
        }
        return { recipients: list.length, online };
      });
      this.#delivered(takenAt, delivered);
      return receipts;
    } finally {
      for (const user of held.values()) this.#release(user);
    }
  }

  /** Stores the (channel, uid) pair and updates the cached membership. */
  subscribe(uid: string, channel: string): Promise<void> {
    return this.#subscribe(uid, channel, false);
  }

  /**
   * Subscribes `uid` to `channel`; `reserved` when the channel is already in the uid's
   * channel list (a client's y=1 puts it there first, for the limit).
   */
  async #subscribe(uid: string, channel: string, reserved: boolean): Promise<void> {
    this.#checkOwner(uid);
    await this.#ready(uid);
    await this.#checkNotLost(uid);
    await this.#storage(() => this.#options.store.subscribe(channel, uid));
    await this.#loadingChannels.get(channel);
    this.#channels.get(channel)?.add(uid);
    const list = this.#users.get(uid)?.channels;
    if (!list || (!reserved && list.includes(channel))) return;
    if (!reserved) list.push(channel);
    this.#options.presence?.({ type: "presence-channel", uid, channel, joined: true });
  }

  /**
   * A client's y=1: as {@linkcode subscribe}, within `channelsPerUid`. The channel takes its
   * place in the uid's list before the store is asked, so subscribes in flight at once
   * cannot pass the limit together.
   */
  async #clientSubscribe(uid: string, channel: string): Promise<void> {
    const list = await this.#channelList(await this.#user(uid));
    if (list.includes(channel)) return this.#subscribe(uid, channel, false);
    if (list.length >= this.#options.limits.channelsPerUid) {
      this.counters.limit_channels_number++;
      throw new ServiceError("too many channels", 429);
    }
    list.push(channel);
    try {
      await this.#subscribe(uid, channel, true);
    } catch (error) {
      const at = list.indexOf(channel);
      if (at >= 0) list.splice(at, 1);
      throw error;
    }
  }

  /** The uid's channels, read from the store once while the user is cached. */
  #channelList(user: User): Promise<string[]> {
    if (user.channels) return Promise.resolve(user.channels);
    let loading = this.#loadingChannelLists.get(user.uid);
    if (!loading) {
      loading = this.#storage(() => this.#options.store.channels(user.uid))
        .then((list) => user.channels ??= list)
        .finally(() => this.#loadingChannelLists.delete(user.uid));
      this.#loadingChannelLists.set(user.uid, loading);
    }
    return loading;
  }

  /** Deletes the (channel, uid) pair and updates the cached membership. */
  async unsubscribe(uid: string, channel: string): Promise<void> {
    this.#checkOwner(uid);
    await this.#ready(uid);
    await this.#checkNotLost(uid);
    await this.#storage(() => this.#options.store.unsubscribe(channel, uid));
    await this.#loadingChannels.get(channel);
    this.#channels.get(channel)?.delete(uid);
    const list = this.#users.get(uid)?.channels;
    if (list?.includes(channel)) list.splice(list.indexOf(channel), 1);
    this.#options.presence?.({ type: "presence-channel", uid, channel, joined: false });
  }

  /**
   * The offline messages of the uid's `device` (`s` past its cursor, not expired), in the
   * `/msg` form; a device never seen has everything still stored.
   */
  async offline(uid: string, device: string, limit: number): Promise<string[]> {
    this.#checkOwner(uid);
    const user = await this.#user(uid);
    user.busy++;
    try {
      const after = cursorOf(user, device)?.lastAck ?? 0;
      const stored = await this.#storage(() =>
        this.#options.store.readAfter(uid, after, limit, Date.now())
      );
      return stored.map(encodeListed);
    } finally {
      this.#release(user);
    }
  }

  /**
   * Takes a new session: registers it under its uid (resolving once the uid's state is
   * loaded, so its frames can be handled), acknowledges every `s ≤ since`, then replays what
   * it missed in the background and lets live deliveries through after that.
   */
  async attach(session: Session, since = 0): Promise<void> {
    const counters = this.counters;
    this.#sessions.add(session);
    this.#connections.set(session.uid, (this.#connections.get(session.uid) ?? 0) + 1);
    counters.connect++;
    counters.connection_number++;
    counters[TRANSPORT_COUNTERS[session.transport].connections]++;
    const left = this.#recentlyLeft.get(session.uid);
    if (left !== undefined && Date.now() - left < RECONNECT_WINDOW_MS) counters.reconnect++;
    let user: User;
    try {
      user = await this.#user(session.uid);
    } catch (error) {
      return session.fail(error instanceof ServiceError ? error.message : "storage unavailable");
    }
    // Closed while its state loaded: `onClose` has already been and gone.
    if (!this.#sessions.has(session)) return;
    if (!this.owns(session.uid)) {
      this.counters.moved_sessions++;
      return session.fail("moved");
    }
    const now = Date.now();
    let device = cursorOf(user, session.device);
    if (!device) {
      if (liveDevices(user, now - this.#options.deviceTtlMs) >= this.#options.maxDevices) {
        return session.fail("too many devices");
      }
      device = { device: session.device, lastAck: 0, seenAt: now };
      user.devices = user.devices.concat(device);
    }
    device.seenAt = now;
    this.#options.journal.seen(user.uid, session.device, now);
    user.sessions = user.sessions.concat(session);
    if (user.sessions.length === 1) counters.user_number++;
    this.#resumeAfter(user, session, since);
    if (this.#options.presence) this.#reportPresence(user);
  }

  /** The session of `uid` waiting for its client's next connection over `transport`, if any. */
  waiting(uid: string, device: string, transport: TransportName): Session | undefined {
    return this.#users.get(uid)?.sessions.find((session) =>
      session.conn === null && session.device === device && session.transport === transport
    );
  }

  /** Gives a waiting session its client's next connection: acknowledges, then replays. */
  rejoin(session: Session, conn: ClientConn, since = 0): Promise<void> {
    const user = this.#users.get(session.uid);
    if (!user || !this.#sessions.has(session)) {
      return Promise.reject(new Error(`rejoining a session that is gone (${session.uid})`));
    }
    session.rejoin(conn);
    const device = cursorOf(user, session.device);
    if (device) {
      device.seenAt = Date.now();
      this.#options.journal.seen(user.uid, session.device, device.seenAt);
    }
    this.#resumeAfter(user, session, since);
    return Promise.resolve();
  }

  /** Acknowledges every `s ≤ since` for the session's device, then replays past its cursor. */
  #resumeAfter(user: User, session: Session, since: number): void {
    if (since > 0) {
      const error = this.#ack(user, session.device, since);
      if (error !== undefined) session.sendError(error);
    }
    this.#replay(user, session, cursorOf(user, session.device)?.lastAck ?? 0);
  }

  /** Tells presence the uid's connection count (and, the first time, its channels). */
  async #reportPresence(user: User): Promise<void> {
    let channels: string[] = [];
    try {
      channels = await this.#channelList(user);
    } catch (error) {
      this.#options.log("warn", `presence of ${user.uid}: ${(error as Error).message}`);
    }
    const connections = user.sessions.length;
    this.#options.presence!({
      type: "presence",
      uid: user.uid,
      connections,
      devices: onlineDevices(user),
      channels,
    });
    if (connections === 0) user.channels = undefined;
  }

  /** Sends `session` its uid's stored messages after `after`, then lets it go live. */
  async #replay(user: User, session: Session, after: number): Promise<void> {
    user.busy++;
    // A connection that leaves (a poll answered) ends its replay; the next one starts its own.
    const epoch = session.epoch;
    try {
      for (;;) {
        const page = await this.#options.store.readAfter(
          user.uid,
          after,
          this.#options.replayPage,
          Date.now(),
        );
        if (session.epoch !== epoch) return;
        for (const message of page) session.send(message);
        if (page.length < this.#options.replayPage) break;
        after = page[page.length - 1].seq;
      }
      session.goLive();
    } catch (error) {
      this.#options.log("warn", `replay for ${user.uid}: ${(error as Error).message}`);
      if (session.epoch === epoch) session.fail("storage unavailable");
    } finally {
      this.#release(user);
    }
  }

  onClose(session: Session): void {
    if (!this.#sessions.delete(session)) return;
    const open = this.#connections.get(session.uid)! - 1;
    if (open === 0) this.#connections.delete(session.uid);
    else this.#connections.set(session.uid, open);
    this.counters.disconnect++;
    this.counters.connection_number--;
    this.counters[TRANSPORT_COUNTERS[session.transport].connections]--;
    this.#recentlyLeft.set(session.uid, Date.now());
    const user = this.#users.get(session.uid);
    if (!user) return;
    const at = user.sessions.indexOf(session);
    if (at < 0) return;
    user.sessions = user.sessions.toSpliced(at, 1);
    const now = Date.now();
    if (user.sessions.length === 0) {
      this.counters.user_number--;
      user.lastUsed = now;
    }
    // It was live until now: its TTL runs from its last connection, not its first.
    const device = cursorOf(user, session.device);
    if (device) {
      device.seenAt = now;
      this.#options.journal.seen(user.uid, session.device, now);
    }
    if (this.#options.presence) this.#reportPresence(user);
  }

  onMessage(sender: Sender, message: Exclude<ClientMessage, { y: 0 }>): Outcome {
    const from = sender.uid;
    switch (message.y) {
      case 1:
        return this.#permitted(
          sender,
          message.c,
          "subscribe",
          () => this.#clientSubscribe(from, message.c),
        ).then(done, reasonOf);
      case 2:
        return this.unsubscribe(from, message.c).then(done, reasonOf);
      case 3: {
        const request = { to: message.t, from, body: message.b, ttlSec: 0, volatile: false };
        return (this.owns(message.t) ? this.publish(request) : this.#options.forward(request))
          .then(done, reasonOf);
      }
      case 4: {
        const request = { channel: message.c, from, body: message.b, ttlSec: 0, volatile: false };
        return this.#permitted(
          sender,
          message.c,
          "publish",
          () => this.#options.publishChannel(request),
        ).then(done, reasonOf);
      }
      case 5: {
        const user = this.#users.get(from);
        return user ? this.#ack(user, sender.device, message.s) : this.#user(from).then(
          (loaded) => this.#ack(loaded, sender.device, message.s),
          reasonOf,
        );
      }
    }
  }

  /** Runs `action` if the sender's channel access allows it on `channel`; throws if not. */
  async #permitted(
    sender: Sender,
    channel: string,
    action: ChannelAction,
    run: () => Promise<unknown>,
  ): Promise<unknown> {
    const access = sender.access;
    if (access === null) return run();
    const answer = await access.check(sender.uid, channel, action);
    if (answer === "allow") return run();
    if (answer === "unavailable") throw new ServiceError("auth unavailable", 503);
    this.counters.forbidden_number++;
    throw new ServiceError("forbidden", 403);
  }

  /**
   * Closes sessions silent for longer than `heartbeatMs`, forgets those that waited for a
   * connection past `sessionWaitMs`, and idle offline users.
   */
  sweep(heartbeatMs: number): void {
    const now = Date.now();
    for (const session of this.#sessions) {
      session.sweep(now, heartbeatMs, this.#options.sessionWaitMs);
    }
    for (const user of this.#users.values()) {
      if (user.sessions.length === 0 && user.busy === 0 && now - user.lastUsed > USER_IDLE_MS) {
        this.#users.delete(user.uid);
      }
    }
    for (const [uid, at] of this.#recentlyLeft) {
      if (now - at > RECONNECT_WINDOW_MS) this.#recentlyLeft.delete(uid);
    }
    this.#sendAllowances.sweep(now);
  }

  /**
   * Moves the cursor of the uid's `device`: acks are cumulative and never move back. The
   * reason it cannot, if so.
   */
  #ack(user: User, device: string, seq: number): string | undefined {
    // A late ack of a uid moved away would write a cursor here after its state was handed off.
    if (!this.owns(user.uid)) return "moved";
    if (seq > user.lastSeq) return "ack beyond last seq";
    const cursor = cursorOf(user, device);
    if (!cursor) return "unknown device";
    if (seq <= cursor.lastAck) return;
    cursor.lastAck = seq;
    this.#options.journal.ack(user.uid, device, seq);
  }

  #message(
    user: User,
    type: 3 | 4,
    from: string,
    body: string,
    ttlSec: number,
    request: { volatile: boolean; channel?: string },
  ): StoredMessage {
    this.counters[type === 3 ? "accepted_msg" : "accepted_cmsg"]++;
    return {
      uid: user.uid,
      seq: request.volatile ? 0 : ++user.lastSeq,
      type,
      from,
      channel: request.channel,
      body,
      expiresAt: ttlSec > 0 ? Date.now() + ttlSec * 1000 : 0,
    };
  }

  /** Hands a message to the uid's sessions; answers how many it went to. */
  #deliver(user: User, message: StoredMessage): number {
    if (message.expiresAt !== 0 && message.expiresAt <= Date.now()) return 0;
    const delivery: Delivery = message;
    for (const session of user.sessions) session.deliver(delivery);
    return user.sessions.length;
  }

  /** `count` deliveries of messages taken at `takenAt`, in the latency histogram at once. */
  #delivered(takenAt: number, count: number): void {
    if (count > 0) {
      this.#options.histograms.delivery.observe((performance.now() - takenAt) / 1000, count);
    }
  }

  #user(uid: string): Promise<User> {
    const cached = this.#users.get(uid);
    if (cached) return Promise.resolve(cached);
    let loading = this.#loadingUsers.get(uid);
    if (!loading) {
      loading = this.#load(uid).finally(() => this.#loadingUsers.delete(uid));
      this.#loadingUsers.set(uid, loading);
    }
    return loading;
  }

  /**
   * Reads the uid's state once the uid may be served here; read again if the map changed
   * meanwhile (the state may have been written by another owner since).
   */
  async #load(uid: string): Promise<User> {
    for (;;) {
      await this.#ready(uid);
      const generation = this.#generation;
      const state = await this.#state(uid);
      if (generation !== this.#generation) continue;
      if (isEmpty(state) && lostWith(this.#lost, uid)) throw new ServiceError("state lost", 503);
      // An accepted loss: numbered above anything its lost owner can have given.
      const lastSeq = Math.max(state.lastSeq, seqFloor(this.#lost, uid));
      const devices = cursorsOf(state.devices);
      const user: User = { uid, lastSeq, devices, sessions: [], busy: 0, lastUsed: Date.now() };
      // Not cached if it is not ours (an admin read of a uid moved away); a later use loads.
      if (this.owns(uid)) this.#users.set(uid, user);
      return user;
    }
  }

  #state(uid: string): Promise<UserState> {
    return this.#storage(() => this.#options.store.userState(uid));
  }

  #release(user: User): void {
    user.busy--;
    user.lastUsed = Date.now();
  }

  #members(channel: string): Promise<Set<string>> {
    const channels = this.#channels;
    const cached = channels.get(channel);
    if (cached) {
      channels.delete(channel);
      channels.set(channel, cached);
      return Promise.resolve(cached);
    }
    let loading = this.#loadingChannels.get(channel);
    if (!loading) {
      loading = this.#storage(() => this.#options.store.members(channel)).then((uids) => {
        const own = new Set(uids.filter((uid) => this.owns(uid)));
        channels.set(channel, own);
        if (channels.size > this.#options.channelCacheSize) {
          channels.delete(channels.keys().next().value!);
        }
        return own;
      }).finally(() => this.#loadingChannels.delete(channel));
      this.#loadingChannels.set(channel, loading);
    }
    return loading;
  }

  #store(messages: StoredMessage[], busMark?: string): Promise<void> {
    return this.#storage(() => this.#options.journal.append(messages, busMark));
  }

  /** Runs a storage call, turning an outage into a 503 that crosses the link. */
  async #storage<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      if (error instanceof StorageUnavailableError) {
        this.#options.log("warn", `storage: ${error.message}`);
        // Clients and back ends get a stable reason; the engine's detail is in the log.
        const reason = error instanceof StorageBusyError
          ? "storage busy"
          : error instanceof FencedError
          ? "fenced"
          : "storage unavailable";
        throw new ServiceError(reason, 503);
      }
      throw error;
    }
  }

  /**
   * Refuses a membership change of a uid lost with its state: stored here, it would be handed
   * on as the uid's state, and replace the real one when the lost member comes back.
   */
  async #checkNotLost(uid: string): Promise<void> {
    if (lostWith(this.#lost, uid)) await this.#user(uid);
  }

  #checkOwner(uid: string): void {
    if (!this.owns(uid)) {
      const { error, status } = notOwned(uid);
      throw new ServiceError(error, status);
    }
  }
}

/** True for the state of a uid never numbered nor seen here. */
function isEmpty(state: UserState): boolean {
  return state.lastSeq === 0 && state.devices.size === 0;
}

/** How many of the uid's devices have a session open. */
function onlineDevices(user: User): number {
  const { sessions } = user;
  if (sessions.length < 2) return sessions.length;
  return new Set(sessions.map((session) => session.device)).size;
}

/** How many of the uid's devices were seen since `since`. */
function liveDevices(user: User, since: number): number {
  let live = 0;
  for (const device of user.devices) if (device.seenAt >= since) live++;
  return live;
}

/** The cursor of the uid's `device`, if it has one. */
function cursorOf(user: User, device: string): DeviceCursor | undefined {
  for (const cursor of user.devices) if (cursor.device === device) return cursor;
}

/** A store's cursors as a list of exactly their number (see {@linkcode User.sessions}). */
function cursorsOf(devices: UserState["devices"]): DeviceCursor[] {
  const cursors = new Array<DeviceCursor>(devices.size);
  let at = 0;
  for (const [device, { lastAck, seenAt }] of devices) cursors[at++] = { device, lastAck, seenAt };
  return cursors;
}

const done = (): undefined => undefined;
const reasonOf = (error: Error): string => error.message;

/** What `map` gives shard `index` (-1: nothing), as a question. */
function mapOwnedAt(map: ShardMap, index: number): { owns(uid: string): boolean } {
  return { owns: (uid) => index >= 0 && map.indexOf(uid) === index };
}

/** An old owner's shard, as a take-over reads it. */
interface TakenShard {
  /** Every position it may have let a uid go at. */
  marks: string[];
  /** The last entry whose copies it stored for `uid` (one of `marks`). */
  upTo(uid: string): string;
}

/**
 * A shard of a node that let its uids go at the changes `positions` (oldest first): a uid
 * left it at the first whose map gives it to another shard, and its copies were stored up to
 * that position's mark. A position without its map (a node that did not say) is taken as
 * the one every uid left at: its mark is the lowest, so a copy may be stored twice, not lost.
 */
function reportedShard(id: string, positions: readonly Omit<BusPosition, "version">[]): TakenShard {
  const steps = positions.map((position) => ({
    map: position.shards?.length
      ? new ShardMap(position.shards.map((shard) => ({ id: shard, host: "", port: 0 })))
      : null,
    mark: position.marks[id] ?? "0-0",
  }));
  return {
    marks: steps.map((step) => step.mark),
    upTo: (uid) =>
      (steps.find((step) => !step.map || step.map.shardOf(uid).id !== id) ?? steps.at(-1)!).mark,
  };
}

/** Uids a settle took over from other nodes' shards ({@linkcode Shard.settle}). */
interface TakenOver {
  /** The map they were served by until then. */
  map: ShardMap;
  /** Each old shard's index in `map`, and what it stored. */
  from: Map<number, TakenShard>;
  /** The stream's last entry at the settle: the replay's end. */
  until: string;
}

function notOwned(uid: string): { error: string; status: number } {
  return { error: `uid ${uid} is not owned by this shard`, status: 421 };
}
