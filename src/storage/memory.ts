/**
 * The in-memory store: fast, and lost on restart. Each shard has its own, which is enough
 * because a shard is the only reader and writer of its uids' messages, state and
 * memberships.
 *
 * @module
 */

import type { Store, StoredMessage, UserState } from "./store.ts";

interface UserRecord extends UserState {
  /** Unacknowledged messages in seq order. */
  messages: StoredMessage[];
}

/** A {@linkcode Store} held in the shard's own heap. */
export class MemoryStore implements Store {
  #users = new Map<string, UserRecord>();
  #members = new Map<string, Set<string>>();
  #channels = new Map<string, Set<string>>();

  #user(uid: string): UserRecord {
    let user = this.#users.get(uid);
    if (!user) {
      user = { lastSeq: 0, lastAck: 0, messages: [] };
      this.#users.set(uid, user);
    }
    return user;
  }

  append(messages: readonly StoredMessage[]): Promise<void> {
    for (const message of messages) {
      const user = this.#user(message.uid);
      user.messages.push({ ...message });
      if (message.seq > user.lastSeq) user.lastSeq = message.seq;
    }
    return Promise.resolve();
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
    return Promise.resolve({ lastSeq: user?.lastSeq ?? 0, lastAck: user?.lastAck ?? 0 });
  }

  ack(uid: string, seq: number): Promise<void> {
    const user = this.#user(uid);
    if (seq > user.lastAck) user.lastAck = seq;
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

  compact(now: number): Promise<number> {
    let removed = 0;
    for (const user of this.#users.values()) {
      const kept = user.messages.filter((m) =>
        m.seq > user.lastAck && (m.expiresAt === 0 || m.expiresAt > now)
      );
      removed += user.messages.length - kept.length;
      user.messages = kept;
    }
    return Promise.resolve(removed);
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
