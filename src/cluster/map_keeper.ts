/**
 * Keeps this node's shards on the cluster's map as members join, leave and expire
 * (`--cluster=redis`; docs/cluster.md). It reads the membership on every change notice and on
 * a timer (when the next lease can expire, at the latest every third of a lease), and for each
 * new version:
 *
 * 1. applies the map to the local shards, holding the uids it gives them: the shards close the
 *    sessions of uids moved away with `{"error":"moved"}`, forget their state and flush their
 *    journals; with an embedded store they then hand the state of every uid they hold but no
 *    longer own to its new owner (and delete it here once that owner took it). Only when
 *    nothing is left to hand off does it say so in Redis (`applied`); a hand-off that fails
 *    (the new owner unreachable) is tried again every {@linkcode HAND_OFF_RETRY_MS}, with the
 *    map as it is then, and until it succeeds the new owners keep those uids held;
 * 2. settles the held uids only once every node that could still be writing for them has let
 *    go: each member of the maps since the last settle has applied this version, or is gone —
 *    having left (it said so), or having lost its lease at least `graceMs` ago (so that a write
 *    it sent before its fence closed has landed). A member that is leaving keeps its lease
 *    while it hands off: it is waited for as long as it has one.
 *
 * With an embedded store (`localState`), a member whose lease went without its hand-off (it
 * died) took its uids' state with it: before settling, the keeper records it as lost in Redis,
 * with the map it died in, and the shards refuse those of its uids they have no state for
 * (`503 {"error":"state lost"}`) rather than number them from 1 again, until it joins again
 * and has handed on what its files held (its `applied` clears the record), or an operator
 * accepts the loss (`DELETE /cluster/lost`): then the shards serve those uids, numbered above
 * the acceptance's floor.
 *
 * A node that finds itself out of the list without having left (its lease expired: it was
 * paused, or cut off from Redis) is fenced already (its journal refuses writes); it forgets
 * every uid, holds them all, and joins again as a new member.
 *
 * @module
 */

import type { Log } from "../core/log.ts";
import type { HandOffOutcome } from "../core/messages.ts";
import type { BusPosition } from "../core/bus_entry.ts";
import type { LostNode } from "../core/shard_map.ts";
import type { ShardCounters } from "../stats/counters.ts";
import { LEFT, type Membership, type View } from "./membership.ts";
import { type NodeInfo, shardsOf } from "./topology.ts";

/**
 * A node that held uids a settle gives: where it stood at each change it applied since the
 * last settle, oldest first (a uid left it at the first whose map moved it); null: it died.
 */
export interface OldOwner {
  node: string;
  positions: BusPosition[] | null;
}

/** The local shards, as the keeper moves them (the worker pool). */
export interface MapTarget {
  /**
   * Applies the map of `members` (in order); `hold`: the uids it gives wait for settle.
   * Answers where the node stood on the bus (said with this version's `applied`).
   */
  setMembers(members: readonly NodeInfo[], hold: boolean): Promise<Omit<BusPosition, "version">>;
  /**
   * The held uids are served; `from`: the members that held some of them in the map of
   * `before` (the last settled one), with where they stood on the bus when they let go (null:
   * it died; its uids' state is in a shared store, but not the channel copies it never stored).
   */
  settle(before: readonly NodeInfo[], from: readonly OldOwner[]): Promise<void>;
  /**
   * Hands the state of the uids the shards hold but no longer own to their owners; resolves
   * with how many are left (not handed off: tried again later), and why.
   */
  handOff(): Promise<HandOffOutcome>;
  /** Forgets every uid and holds them all (the node was fenced). */
  reset(): Promise<void>;
  /**
   * The members lost with their uids' state: the shards refuse those uids without state, or,
   * for an accepted loss (a `floor`), number them above its floor.
   */
  setLost(lost: LostNode[]): Promise<void>;
}

/** What the keeper needs besides the membership and the shards. */
export interface KeeperOptions {
  selfId: string;
  /** How long after a member's expiry its uids may be served elsewhere (the store timeout). */
  graceMs: number;
  /**
   * Each node keeps its own uids' state (an embedded store): a member that dies without
   * handing off is recorded as lost, and the shards follow the lost records.
   */
  localState: boolean;
  /** Hears every member list applied (for the peers and the bus). */
  onMembers(members: readonly NodeInfo[]): void;
  counters: ShardCounters;
  log: Log;
}

/** The shortest pause between two timed reads of the membership. */
const MIN_READ_MS = 50;
/** How soon a hand-off that left uids behind is tried again. */
export const HAND_OFF_RETRY_MS = 500;
/** How often a hand-off that keeps failing the same way is logged again. */
const HAND_OFF_LOG_MS = 10_000;

/** Follows the membership; one per node. */
export class MapKeeper {
  #membership: Membership;
  #target: MapTarget;
  #options: KeeperOptions;
  #view: View | null = null;
  /** The version the local shards run by (0: none yet). */
  #version = 0;
  /** The version this node said it applied (below `#version` while a hand-off is left). */
  #applied = 0;
  /** The last failed hand-off logged: what it said, and when. */
  #handOffLogged = { text: "", at: 0 };
  /** Nodes that must let go before the held uids are served. */
  #waitFor = new Set<string>();
  /** When each gone node of `#waitFor` was first seen gone. */
  #goneSince = new Map<string, number>();
  #held = false;
  #leaving = false;
  #stopped = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #running: Promise<void> | null = null;
  #again = false;
  /** Members of the last map applied. */
  #members: readonly NodeInfo[] = [];
  /** The last member list applied that had each member in it (the uids it held), and its version. */
  #lastMapOf = new Map<string, { members: readonly NodeInfo[]; version: number }>();
  /** Where this node stood on the bus when it applied its latest version. */
  #position: BusPosition | null = null;
  /** The version last settled here (before the first: the one before this node's join). */
  #settledVersion = 0;
  /** The members of the map last settled here (null: none since this node joined). */
  #settledMembers: readonly NodeInfo[] | null = null;
  /** The lost records the shards have, as JSON ("": none given yet). */
  #lostGiven = "";

  constructor(membership: Membership, target: MapTarget, options: KeeperOptions) {
    this.#membership = membership;
    this.#target = target;
    this.#options = options;
  }

  /** The membership as last read, and the version the shards run by. */
  get state(): { view: View | null; version: number; held: boolean } {
    return { view: this.#view, version: this.#version, held: this.#held };
  }

  /** Joins the cluster; resolves once the join's map is applied (its uids may still be held). */
  async start(): Promise<void> {
    this.#held = true;
    this.#settledVersion = await this.#membership.join(() => this.#lost()) - 1;
    this.#settledMembers = null;
    await this.refresh();
  }

  /** Reads the membership now (a change notice, the timer); runs one read at a time. */
  refresh(): Promise<void> {
    if (this.#running) {
      this.#again = true;
      return this.#running;
    }
    this.#running = (async () => {
      do {
        this.#again = false;
        try {
          await this.#step();
        } catch (error) {
          this.#options.log("warn", `cluster membership: ${(error as Error).message}`);
        }
      } while (this.#again && !this.#stopped);
    })().finally(() => {
      this.#running = null;
      this.#schedule();
    });
    return this.#running;
  }

  /**
   * Leaves the cluster (SIGTERM): out of the list first, so the others take this node's uids;
   * its shards let them go (sessions told `moved`, journals flushed, state handed off); then
   * the lease goes. A hand-off that fails is tried again until it succeeds: the caller bounds
   * the wait (the drain timeout), and this node's lease keeps the others waiting meanwhile.
   */
  async leave(): Promise<void> {
    this.#leaving = true;
    await this.#running;
    const version = await this.#membership.leave();
    await this.refresh();
    while (this.#applied < version) {
      await new Promise((resolve) => setTimeout(resolve, HAND_OFF_RETRY_MS));
      await this.refresh();
    }
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#membership.left();
  }

  /** Stops following (the lease then expires on its own). */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#membership.stop();
  }

  async #step(): Promise<void> {
    const view = await this.#membership.read();
    this.#view = view;
    if (view.version !== this.#version && !await this.#apply(view)) return;
    if (this.#applied !== this.#version) await this.#handOff();
    if (this.#options.localState) await this.#giveLost(view.lost, view);
    if (this.#held && this.#mayServe(view)) {
      if (this.#options.localState) await this.#recordLost(view);
      // With a shared store the dead members' uids are served from it, and their shards'
      // channel copies they never stored are replayed first (docs/cluster.md, "Failover").
      // A node that has just joined never had the map before: the members but itself.
      const before = this.#settledMembers ??
        this.#members.filter((member) => member.id !== this.#options.selfId);
      await this.#target.settle(before, await this.#oldOwners(view));
      this.#settledVersion = this.#version;
      this.#settledMembers = this.#members;
      this.#held = false;
      this.#waitFor.clear();
      this.#goneSince.clear();
      for (const id of this.#lastMapOf.keys()) {
        if (!this.#members.some((member) => member.id === id)) this.#lastMapOf.delete(id);
      }
      this.#options.log("info", `cluster map ${this.#version} settled`);
    }
  }

  /** Applies the view's map; false if this node was not in it and joined again instead. */
  async #apply(view: View): Promise<boolean> {
    const self = this.#options.selfId;
    const members = view.members.filter((member) => member.id !== self || !this.#leaving);
    if (!this.#leaving && !view.members.some((member) => member.id === self)) {
      await this.#rejoin();
      return false;
    }
    for (const member of [...this.#members, ...members]) {
      if (member.id !== self) this.#waitFor.add(member.id);
    }
    // The last member leaving has no one to hand to: its drain closes its sessions.
    if (members.length > 0) {
      this.#position = { version: view.version, ...await this.#target.setMembers(members, true) };
      this.#members = members;
      for (const member of members) {
        this.#lastMapOf.set(member.id, { members, version: view.version });
      }
      this.#options.onMembers(members);
    }
    this.#version = view.version;
    this.#held = true;
    this.#options.counters.map_changes++;
    this.#options.counters.map_version = view.version;
    this.#options.log(
      "info",
      `cluster map ${view.version}: ${members.map((m) => m.id).join(",") || "(none)"}`,
    );
    return true;
  }

  /** Hands off what the shards no longer own; says `applied` once nothing is left. */
  async #handOff(): Promise<void> {
    const version = this.#version;
    const { left, reason } = await this.#target.handOff();
    if (left > 0) {
      const text = `cluster map ${version}: ${left} uids not handed off to their new owners ` +
        `(${reason}); kept here, tried again every ${HAND_OFF_RETRY_MS} ms, not applied until ` +
        "they are";
      const now = Date.now();
      if (text !== this.#handOffLogged.text || now - this.#handOffLogged.at >= HAND_OFF_LOG_MS) {
        this.#options.log("warn", text);
        this.#handOffLogged = { text, at: now };
      }
      return;
    }
    const position = this.#position?.version === version ? this.#position : null;
    await this.#membership.applied(version, position);
    this.#applied = version;
  }

  /**
   * Records each member the held change waited for that is gone without having applied it or
   * left — its lease lapsed: it handed nothing off — as lost, with the map it held its uids in,
   * and gives the shards the records before they serve those uids.
   */
  async #recordLost(view: View): Promise<void> {
    const lost = [...view.lost];
    for (const id of this.#died(view)) {
      const map = this.#lastMapOf.get(id);
      if (!map || lost.some((entry) => entry.node === id)) continue;
      const entry = { node: id, shards: map.members.flatMap(shardsOf).map((shard) => shard.id) };
      // Not if an operator accepted this loss already (a survivor settling late).
      if (!await this.#membership.markLost(entry, map.version)) continue;
      this.#options.log(
        "warn",
        `cluster member ${id} is gone without handing off its uids' state: those uids are ` +
          `refused with 503 state lost where there is no state for them, until ${id} joins ` +
          "again with its files and applies a map, or an operator accepts the loss " +
          `(DELETE /cluster/lost?node=${id}; docs/cluster.md)`,
      );
      lost.push(entry);
    }
    await this.#giveLost(lost, view);
  }

  /**
   * The members the held change waited for that are gone without having applied it or left:
   * their lease lapsed, they handed nothing off (read once {@linkcode #mayServe} holds).
   */
  #died(view: View): string[] {
    return [...this.#waitFor].filter((id) => {
      const applied = view.applied.get(id) ?? 0;
      return applied < this.#version && applied !== LEFT;
    });
  }

  /**
   * The members the held change waited for that held some of its uids, and where each stood
   * on the bus when it let go: its positions at the versions after the last settle here (a
   * change held together with others has several; each uid left at the first whose map moved
   * it), or null if it died — only with a shared store: with an embedded one a dead member's
   * uids are refused (`state lost`) and it catches up on its own when it is back.
   */
  async #oldOwners(view: View): Promise<OldOwner[]> {
    const died = new Set(this.#died(view));
    const positions = await this.#membership.positions();
    const owners: OldOwner[] = [];
    for (const node of this.#waitFor) {
      if (died.has(node)) {
        if (!this.#options.localState) owners.push({ node, positions: null });
        continue;
      }
      const since = (positions.get(node) ?? []).filter((p) => p.version > this.#settledVersion);
      if (since.length > 0) owners.push({ node, positions: since });
    }
    return owners;
  }

  /** Gives the shards the lost records and the accepted losses' floors, if they changed. */
  async #giveLost(lost: LostNode[], view: View): Promise<void> {
    const all: LostNode[] = [
      ...lost,
      ...view.accepted.map(({ node, shards, floor }) => ({ node, shards, floor })),
    ].sort((a, b) => a.node < b.node ? -1 : a.node > b.node ? 1 : (a.floor ?? 0) - (b.floor ?? 0));
    const text = JSON.stringify(all);
    if (text === this.#lostGiven) return;
    await this.#target.setLost(all);
    this.#lostGiven = text;
  }

  /** True once no node that held the held uids can still write for them. */
  #mayServe(view: View): boolean {
    const now = Date.now();
    for (const id of this.#waitFor) {
      if ((view.applied.get(id) ?? 0) >= this.#version) continue;
      if (view.members.some((member) => member.id === id)) return false;
      if (view.applied.get(id) === LEFT) continue;
      // Leaving: out of the list, still handing off under its lease.
      if ((view.leaseLeftMs.get(id) ?? -2) > 0) return false;
      const since = this.#goneSince.get(id) ?? now;
      this.#goneSince.set(id, since);
      if (now - since < this.#options.graceMs) return false;
    }
    return true;
  }

  /** The lease was lost: the fence is already closed; forget everything and join again. */
  #lost(): void {
    if (this.#stopped || this.#leaving) return;
    this.refresh();
  }

  async #rejoin(): Promise<void> {
    this.#options.counters.fenced++;
    this.#options.log(
      "warn",
      "this node's lease expired (paused, or cut off from Redis): " +
        "its uids are forgotten and it joins again as a new member",
    );
    this.#membership.stop();
    await this.#target.reset();
    this.#held = true;
    for (const member of this.#members) {
      if (member.id !== this.#options.selfId) {
        this.#waitFor.add(member.id);
      }
    }
    this.#settledVersion = await this.#membership.join(() => this.#lost()) - 1;
    this.#settledMembers = null;
    // The join's version is read (and applied) at once.
    this.#again = true;
  }

  #schedule(): void {
    clearTimeout(this.#timer);
    if (this.#stopped) return;
    const leaseMs = this.#membership.leaseMs;
    let wait = leaseMs / 3;
    for (const left of this.#view?.leaseLeftMs.values() ?? []) {
      if (left >= 0) wait = Math.min(wait, left + 20);
    }
    if (this.#applied !== this.#version) wait = Math.min(wait, HAND_OFF_RETRY_MS);
    if (this.#held && this.#goneSince.size > 0) {
      const now = Date.now();
      for (const since of this.#goneSince.values()) {
        wait = Math.min(wait, since + this.#options.graceMs - now + 10);
      }
    }
    this.#timer = setTimeout(() => this.refresh(), Math.max(MIN_READ_MS, wait));
  }
}
