/**
 * The in-memory store: fast, and lost on restart. Each shard has its own, which is enough
 * because a shard is the only reader and writer of its uids' messages, state and
 * memberships.
 *
 * @module
 */

import {
  compactionFloor,
  type DeviceState,
  type DeviceUpdate,
  type Store,
  type StoreBackend,
  type UserState,
} from "./store.ts";
import type { HandedUser, StoredMessage } from "../core/messages.ts";

interface UserRecord extends UserState {
  /** Messages not yet acked by every device, in seq order. */
  messages: StoredMessage[];
}

/** A {@linkcode Store} held in the shard's own heap. */
export class MemoryStore implements Store {
  #users = new Map<string, UserRecord>();
  #members = new Map<string, Set<string>>();
  #channels = new Map<string, Set<string>>();
  /** Messages released by acks since the last `compact`, which reports them. */
  #released = 0;
  #busMark: string | null = null;

  #user(uid: string): UserRecord {
    let user = this.#users.get(uid);
    if (!user) {
      user = { lastSeq: 0, devices: new Map(), messages: [] };
      this.#users.set(uid, user);
    }
    return user;
  }

  append(messages: readonly StoredMessage[], busMark?: string): Promise<void> {
    for (const message of messages) {
      const user = this.#user(message.uid);
      user.messages.push({ ...message });
      if (message.seq > user.lastSeq) user.lastSeq = message.seq;
    }
    if (busMark !== undefined) this.#busMark = busMark;
    return Promise.resolve();
  }

  busMark(shard?: string): Promise<string | null> {
    return Promise.resolve(shard === undefined ? this.#busMark : null);
  }

  readAfter(uid: string, afterSeq: number, limit: number, now: number): Promise<StoredMessage[]> {
    const found: StoredMessage[] = [];
    for (const message of this.#users.get(uid)?.messages ?? []) {
      if (found.length >= limit) break;
      if (message.seq <= afterSeq) continue;
      if (message.expiresAt !== 0 && message.expiresAt <= now) continue;
      found.push({ ...message });
    }
    return Promise.resolve(found);
  }

  userState(uid: string): Promise<UserState> {
    const user = this.#users.get(uid);
    const devices = new Map<string, DeviceState>();
    for (const [device, state] of user?.devices ?? []) devices.set(device, { ...state });
    return Promise.resolve({ lastSeq: user?.lastSeq ?? 0, devices });
  }

  updateDevices(updates: readonly DeviceUpdate[]): Promise<void> {
    const acked = new Set<UserRecord>();
    for (const { uid, device, lastAck, seenAt } of updates) {
      const user = this.#user(uid);
      const state = user.devices.get(device);
      if (!state) user.devices.set(device, { lastAck, seenAt });
      else {
        if (lastAck > state.lastAck) state.lastAck = lastAck;
        if (seenAt > state.seenAt) state.seenAt = seenAt;
      }
      if (lastAck > 0) acked.add(user);
    }
    // Released now, not at the next compaction: a message then dies young, in the
    // scavenger's cheap path (a worker's scavenges at 60k msgs/s fell from up to 12 ms to
    // about 1 ms, and its RSS under load from ~600 to ~220 MB). Every device counts as live
    // here; compaction lets the ones gone quiet go.
    for (const user of acked) this.#release(user, compactionFloor(user.devices.values(), 0));
    return Promise.resolve();
  }

  subscribe(channel: string, uid: string): Promise<void> {
    addTo(this.#members, channel, uid);
    addTo(this.#channels, uid, channel);
    return Promise.resolve();
  }

  unsubscribe(channel: string, uid: string): Promise<void> {
    deleteFrom(this.#members, channel, uid);
    deleteFrom(this.#channels, uid, channel);
    return Promise.resolve();
  }

  members(channel: string): Promise<string[]> {
    return Promise.resolve([...this.#members.get(channel) ?? []]);
  }

  channels(uid: string): Promise<string[]> {
    return Promise.resolve([...this.#channels.get(uid) ?? []]);
  }

  compact(now: number, liveSince: number): Promise<number> {
    for (const user of this.#users.values()) {
      this.#release(user, compactionFloor(user.devices.values(), liveSince));
      const kept = user.messages.filter((m) => m.expiresAt === 0 || m.expiresAt > now);
      this.#released += user.messages.length - kept.length;
      user.messages = kept;
    }
    const removed = this.#released;
    this.#released = 0;
    return Promise.resolve(removed);
  }

  /** Drops the user's messages at or below `floor`. */
  #release(user: UserRecord, floor: number): void {
    const above = user.messages.findIndex((m) => m.seq > floor);
    const count = above === -1 ? user.messages.length : above;
    if (count === 0) return;
    user.messages.splice(0, count);
    this.#released += count;
  }

  uids(): Promise<string[]> {
    return Promise.resolve([...new Set([...this.#users.keys(), ...this.#channels.keys()])]);
  }

  async importUsers(users: readonly HandedUser[]): Promise<void> {
    for (const { uid, lastSeq, devices, messages, channels } of users) {
      const user = this.#user(uid);
      if (lastSeq > user.lastSeq) user.lastSeq = lastSeq;
      user.messages = messages.map((message) => ({ ...message }));
      await this.updateDevices(devices.map((device) => ({ uid, ...device })));
      this.#leaveChannels(uid);
      for (const channel of channels) await this.subscribe(channel, uid);
    }
  }

  deleteUsers(uids: readonly string[]): Promise<void> {
    for (const uid of uids) {
      this.#users.delete(uid);
      this.#leaveChannels(uid);
    }
    return Promise.resolve();
  }

  /** Takes `uid` out of every channel. */
  #leaveChannels(uid: string): void {
    for (const channel of this.#channels.get(uid) ?? []) deleteFrom(this.#members, channel, uid);
    this.#channels.delete(uid);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

function addTo(index: Map<string, Set<string>>, key: string, value: string): void {
  let set = index.get(key);
  if (!set) index.set(key, set = new Set());
  set.add(value);
}

function deleteFrom(index: Map<string, Set<string>>, key: string, value: string): void {
  const set = index.get(key);
  if (!set) return;
  set.delete(value);
  if (set.size === 0) index.delete(key);
}

/** `--storage=memory`: a store per shard, lost on restart. */
export const memoryBackend: StoreBackend<Record<never, never>, unknown> = {
  name: "memory",
  shared: false,
  flags: {},
  open: () => Promise.resolve(new MemoryStore()),
};
