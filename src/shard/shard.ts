/**
 * A shard: everything about the uids it owns — their sessions, sequence numbers, acks,
 * stored messages and channel memberships. It is the only writer for those uids, so plain
 * counters suffice: no locks, no compare-and-set.
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
 * @module
 */

import { errorAnswer, ServiceError } from "../core/errors.ts";
import type { PresenceChange } from "../core/presence.ts";
import type { ChannelRequest, PubResult, UnicastRequest } from "../core/requests.ts";
import type { Delivery } from "../core/messages.ts";
import type { ClientMessage } from "../protocol/message.ts";
import { encodeListed } from "../protocol/message.ts";
import type { ShardMap } from "../core/shard_map.ts";
import { type Journal, StorageBusyError } from "../storage/journal.ts";
import { StorageUnavailableError, type Store } from "../storage/store.ts";
import type { StoredMessage } from "../core/messages.ts";
import { type ShardCounters, TRANSPORT_COUNTERS } from "../stats/counters.ts";
import type { Outcome, Sender, Session, SessionOwner } from "../session/session.ts";
import type { ClientConn, TransportName } from "../transport/conn.ts";

/** What a shard needs from its surroundings. */
export interface ShardOptions {
  /** This shard's index in `map`. */
  index: number;
  map: ShardMap;
  store: Store;
  journal: Journal;
  counters: ShardCounters;
  /** Stored messages replayed per store read. */
  replayPage: number;
  /** Channels whose members stay cached; the least recently used beyond it are forgotten. */
  channelCacheSize: number;
  /** How long a session whose connection left it waits for the client's next one. */
  sessionWaitMs: number;
  /** A client's y=3 to a uid owned by another shard. */
  forward(request: UnicastRequest): Promise<unknown>;
  /** A client's y=4, for every other shard. */
  broadcast(request: ChannelRequest): void;
  /** Hears connection counts and channel joins of online uids; absent without presence. */
  presence?: (change: PresenceChange) => void;
  log(level: "debug" | "info" | "warn" | "error", message: string): void;
}

interface User {
  uid: string;
  lastSeq: number;
  lastAck: number;
  sessions: Session[];
  /** The uid's channels while it is online, kept for presence only. */
  channels?: string[];
  /** Operations in flight; a user is only forgotten at zero. */
  busy: number;
  lastUsed: number;
}

/** How long an offline user's state stays cached after its last use. */
const USER_IDLE_MS = 60_000;
/** A connect this soon after the same uid's disconnect counts as a reconnect. */
const RECONNECT_WINDOW_MS = 60_000;

/** One shard's state and behaviour. */
export class Shard implements SessionOwner {
  readonly counters: ShardCounters;
  #options: ShardOptions;
  #users = new Map<string, User>();
  #loadingUsers = new Map<string, Promise<User>>();
  /**
   * channel → the members this shard owns, loaded on the channel's first message; least
   * recently used first, and no more than `channelCacheSize` of them (a client sending to a
   * new channel each time would otherwise grow it without bound).
   */
  #channels = new Map<string, Set<string>>();
  #loadingChannels = new Map<string, Promise<Set<string>>>();
  #sessions = new Set<Session>();
  #recentlyLeft = new Map<string, number>();

  constructor(options: ShardOptions) {
    this.#options = options;
    this.counters = options.counters;
  }

  /** The shard addresses changed (ports known, a shard restarted): route by the new map. */
  setMap(map: ShardMap): void {
    this.#options.map = map;
  }

  /** True when this shard owns `uid`. */
  owns(uid: string): boolean {
    return this.#options.map.indexOf(uid) === this.#options.index;
  }

  /** Open sessions. */
  get sessions(): ReadonlySet<Session> {
    return this.#sessions;
  }

  /** Stores (unless volatile) and delivers a message to one uid; resolves with its `s`. */
  async publish(request: UnicastRequest): Promise<number> {
    const [result] = await this.publishMany([request]);
    if (typeof result === "number") return result;
    throw new ServiceError(result.error, result.status);
  }

  /**
   * Stores (unless volatile) and delivers many messages to uids of this shard, with one
   * journal batch for all of them: a request's cost is then its own work, not a store round
   * trip. Answers each request's `s` (0 when volatile) or its error, in order.
   */
  async publishMany(requests: readonly UnicastRequest[]): Promise<PubResult[]> {
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
    for (let i = 0; i < requests.length; i++) {
      const message = messages[i];
      if (!message) continue;
      const user = users[i]!;
      if (storeFailure && message.seq !== 0) results[i] = storeFailure;
      else {
        this.#deliver(user, message);
        results[i] = message.seq;
      }
      this.#release(user);
    }
    return results;
  }

  /** Stores (unless volatile) and delivers a channel message to the members this shard owns. */
  async publishChannel(request: ChannelRequest): Promise<number> {
    const members = await this.#members(request.channel);
    // Online members are cached: only the others wait for their state (no promise per member).
    const users: User[] = [];
    let loading: Promise<User>[] | undefined;
    for (const uid of members) {
      const cached = this.#users.get(uid);
      if (!cached) (loading ??= []).push(this.#user(uid));
      else {
        cached.busy++;
        users.push(cached);
      }
    }
    if (loading) {
      let loaded: User[];
      try {
        loaded = await Promise.all(loading);
      } catch (error) {
        for (const user of users) this.#release(user);
        throw error;
      }
      for (const user of loaded) {
        user.busy++;
        users.push(user);
      }
    }
    try {
      const messages = users.map((user) =>
        this.#message(user, 4, request.from, request.body, request.ttlSec, request)
      );
      if (!request.volatile) await this.#store(messages);
      users.forEach((user, i) => this.#deliver(user, messages[i]));
      return messages.length;
    } finally {
      for (const user of users) this.#release(user);
    }
  }

  /** Stores the (channel, uid) pair and updates the cached membership. */
  async subscribe(uid: string, channel: string): Promise<void> {
    this.#checkOwner(uid);
    await this.#storage(() => this.#options.store.subscribe(channel, uid));
    await this.#loadingChannels.get(channel);
    this.#channels.get(channel)?.add(uid);
    const user = this.#users.get(uid);
    if (this.#options.presence && user?.channels && !user.channels.includes(channel)) {
      user.channels.push(channel);
      this.#options.presence({ type: "presence-channel", uid, channel, joined: true });
    }
  }

  /** Deletes the (channel, uid) pair and updates the cached membership. */
  async unsubscribe(uid: string, channel: string): Promise<void> {
    this.#checkOwner(uid);
    await this.#storage(() => this.#options.store.unsubscribe(channel, uid));
    await this.#loadingChannels.get(channel);
    this.#channels.get(channel)?.delete(uid);
    const user = this.#users.get(uid);
    if (user?.channels) user.channels = user.channels.filter((c) => c !== channel);
    this.#options.presence?.({ type: "presence-channel", uid, channel, joined: false });
  }

  /** The uid's offline messages (`s > last_ack`, not expired), in the `/msg` form. */
  async offline(uid: string, limit: number): Promise<string[]> {
    this.#checkOwner(uid);
    const user = await this.#user(uid);
    user.busy++;
    try {
      const stored = await this.#storage(() =>
        this.#options.store.readAfter(uid, user.lastAck, limit, Date.now())
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
    counters.connect++;
    counters.connection_number++;
    counters[TRANSPORT_COUNTERS[session.transport].connections]++;
    const left = this.#recentlyLeft.get(session.uid);
    if (left !== undefined && Date.now() - left < RECONNECT_WINDOW_MS) counters.reconnect++;
    let user: User;
    try {
      user = await this.#user(session.uid);
    } catch {
      return session.fail("storage unavailable");
    }
    // Closed while its state loaded: `onClose` has already been and gone.
    if (!this.#sessions.has(session)) return;
    if (user.sessions.push(session) === 1) counters.user_number++;
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
    this.#resumeAfter(user, session, since);
    return Promise.resolve();
  }

  #resumeAfter(user: User, session: Session, since: number): void {
    if (since > 0) {
      const error = this.#ack(user, since);
      if (error !== undefined) session.sendError(error);
    }
    this.#replay(user, session);
  }

  /** Tells presence the uid's connection count (and, the first time, its channels). */
  async #reportPresence(user: User): Promise<void> {
    try {
      user.channels ??= await this.#options.store.channels(user.uid);
    } catch (error) {
      this.#options.log("warn", `presence of ${user.uid}: ${(error as Error).message}`);
      user.channels = [];
    }
    const connections = user.sessions.length;
    this.#options.presence!({
      type: "presence",
      uid: user.uid,
      connections,
      channels: user.channels,
    });
    if (connections === 0) user.channels = undefined;
  }

  async #replay(user: User, session: Session): Promise<void> {
    user.busy++;
    // A connection that leaves (a poll answered) ends its replay; the next one starts its own.
    const epoch = session.epoch;
    try {
      let after = user.lastAck;
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
    this.counters.disconnect++;
    this.counters.connection_number--;
    this.counters[TRANSPORT_COUNTERS[session.transport].connections]--;
    this.#recentlyLeft.set(session.uid, Date.now());
    const user = this.#users.get(session.uid);
    if (!user) return;
    const at = user.sessions.indexOf(session);
    if (at < 0) return;
    user.sessions.splice(at, 1);
    if (user.sessions.length === 0) {
      this.counters.user_number--;
      user.lastUsed = Date.now();
    }
    if (this.#options.presence) this.#reportPresence(user);
  }

  onMessage(sender: Sender, message: Exclude<ClientMessage, { y: 0 }>): Outcome {
    const from = sender.uid;
    switch (message.y) {
      case 1:
        return this.subscribe(from, message.c).then(done, reasonOf);
      case 2:
        return this.unsubscribe(from, message.c).then(done, reasonOf);
      case 3: {
        const request = { to: message.t, from, body: message.b, ttlSec: 0, volatile: false };
        return (this.owns(message.t) ? this.publish(request) : this.#options.forward(request))
          .then(done, reasonOf);
      }
      case 4: {
        const request = { channel: message.c, from, body: message.b, ttlSec: 0, volatile: false };
        this.#options.broadcast(request);
        return this.publishChannel(request).then(done, reasonOf);
      }
      case 5: {
        const user = this.#users.get(from);
        return user ? this.#ack(user, message.s) : this.#user(from).then(
          (loaded) => this.#ack(loaded, message.s),
          reasonOf,
        );
      }
    }
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
  }

  /** Moves the uid's cursor to `seq`; the reason it cannot, if so. */
  #ack(user: User, seq: number): string | undefined {
    if (seq > user.lastSeq) return "ack beyond last seq";
    if (seq <= user.lastAck) return;
    user.lastAck = seq;
    this.#options.journal.ack(user.uid, seq);
  }

  #message(
    user: User,
    type: 3 | 4,
    from: string,
    body: string,
    ttlSec: number,
    request: { volatile: boolean; channel?: string },
  ): StoredMessage {
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

  #deliver(user: User, message: StoredMessage): void {
    if (message.expiresAt !== 0 && message.expiresAt <= Date.now()) return;
    const delivery: Delivery = message;
    for (const session of user.sessions) session.deliver(delivery);
  }

  #user(uid: string): Promise<User> {
    const cached = this.#users.get(uid);
    if (cached) return Promise.resolve(cached);
    let loading = this.#loadingUsers.get(uid);
    if (!loading) {
      loading = this.#storage(() => this.#options.store.userState(uid)).then((state) => {
        const user: User = { uid, ...state, sessions: [], busy: 0, lastUsed: Date.now() };
        this.#users.set(uid, user);
        return user;
      }).finally(() => this.#loadingUsers.delete(uid));
      this.#loadingUsers.set(uid, loading);
    }
    return loading;
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

  #store(messages: StoredMessage[]): Promise<void> {
    return this.#storage(() => this.#options.journal.append(messages));
  }

  /** Runs a storage call, turning an outage into a 503 that crosses the link. */
  async #storage<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      if (error instanceof StorageUnavailableError) {
        this.#options.log("warn", `storage: ${error.message}`);
        // Clients and back ends get a stable reason; the engine's detail is in the log.
        const busy = error instanceof StorageBusyError;
        throw new ServiceError(busy ? "storage busy" : "storage unavailable", 503);
      }
      throw error;
    }
  }

  #checkOwner(uid: string): void {
    if (!this.owns(uid)) {
      const { error, status } = notOwned(uid);
      throw new ServiceError(error, status);
    }
  }
}

const done = (): undefined => undefined;
const reasonOf = (error: Error): string => error.message;

function notOwned(uid: string): { error: string; status: number } {
  return { error: `uid ${uid} is not owned by this shard`, status: 421 };
}
