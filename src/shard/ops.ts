/**
 * What crosses the link between the main thread and a shard worker.
 *
 * @module
 */

import type { PresenceChange } from "../core/presence.ts";
import type { Config } from "../config/flags.ts";
import type { LostNode, ShardAddress } from "../core/shard_map.ts";
import type { SharedBudget } from "../transport/budget.ts";
import type { SharedFence } from "../core/fence.ts";
import type { ShardReport } from "../stats/report.ts";
import type { HandedUser } from "../core/messages.ts";
import type { BusEntry, BusPosition } from "../core/bus_entry.ts";
import type { ChannelRequest, OwnerOp, UnicastRequest } from "../core/requests.ts";

/** The first message a worker gets: who it is, the map it shards by, the socket budget. */
export interface ShardInit {
  /** This shard's id (`node/k`); its place in `shards` is its index in the map, if there. */
  id: string;
  /** This shard's client port (0: ephemeral). */
  port: number;
  /** This worker's slot in `budget` (1 + its index within the node). */
  slot: number;
  config: Config;
  shards: ShardAddress[];
  /** The uids `shards` gives this shard wait for `settle` (a node joining a cluster). */
  hold: boolean;
  /** The members lost with their uids' state (`lost`): those uids without state are refused. */
  lost: LostNode[];
  /**
   * The node has a cluster bus: a client's channel message goes to it through the main thread
   * (every shard, this one too, stores its copies from the bus). Without, to the process's
   * other shards over {@linkcode CHANNEL_BUS}.
   */
  bus: boolean;
  budget: SharedBudget;
  /** The node's write fence (`core/fence.ts`). */
  fence: SharedFence;
}

/**
 * A settle that gives a shard uids of other nodes: what it needs to store the copies of the
 * channel messages their old owners did not store for them (`Shard.settle`, docs/cluster.md
 * "Channel copies when uids move").
 */
export interface TakeOver {
  /** The map of the last settled version: who owned the uids before (ids are what count). */
  before: ShardAddress[];
  from: TakenFrom[];
  /** The stream's last entry now, as the change settles: the copies up to it are replayed. */
  until: string;
}

/** An old owner of uids a settle gives: where it stood on the bus when it let them go. */
export interface TakenFrom {
  node: string;
  /**
   * Its shards' positions as it reported them with its `applied`s since the last settle, oldest
   * first (`BusPosition`: the marks, and the map it applied); absent for a node that died (its
   * shards' marks are read from a shared store, else `storedUpTo`).
   */
  positions?: Omit<BusPosition, "version">[];
  /** For a node that died: up to where its group says it stored what it read. */
  storedUpTo: string | null;
}

/** The bus entries a shard asks to be replayed to it, after `after` up to `upTo`. */
export interface ReplayRange {
  after: string;
  upTo: string;
}

/** Requests from the main thread to a shard: an owner's op, or one about the shard itself. */
export type ShardOp =
  | OwnerOp
  /** A channel message, for the members this shard owns. */
  | { op: "publish_channel"; request: ChannelRequest }
  /**
   * Bus entries, in stream order, for the members this shard owns; those at or below its bus
   * mark are skipped. `streamTop`: the latest entry id the bus knew of before it read them.
   * Answers each entry's receipt.
   */
  | { op: "bus_entries"; entries: BusEntry[]; streamTop: string }
  /** The shard's report now (`/stats` is exact, not a second old). */
  | { op: "stats" }
  /**
   * The map changed (a shard started on an ephemeral port or restarted, a member joined or
   * left): uids moved away are let go and the journal flushed before it answers, with the
   * last bus entry it stored copies of under the old map (`Shard.appliedPosition`). `hold`: the
   * uids it gives wait for `settle`; `reset`: forget and hold every uid (the node was fenced).
   */
  | { op: "map"; shards: ShardAddress[]; hold?: boolean; reset?: boolean }
  /**
   * The held map change is settled: serve the uids it gave. With `takeOver`, answers the
   * range of bus entries to replay to it (`replay`), or null.
   */
  | { op: "settle"; takeOver?: TakeOver }
  /** The entries of the range a settle asked for: their copies for the uids taken over. */
  | { op: "replay"; entries: BusEntry[] }
  /**
   * Hand the state of the uids the store holds but the map no longer gives this shard to
   * their owners (an embedded store); answers how many are left, and why.
   */
  | { op: "hand_off" }
  /** The members lost with their uids' state now (replaces the last list). */
  | { op: "lost"; lost: LostNode[] }
  | { op: "drain" }
  /**
   * `--debug_api` only: throw from the shard's event loop, as a bug would; at once, or right
   * after its next commit, before it answers: of bus entries' copies (`"bus_commit"`, so
   * before the node's `XACK`) or of a `/pub` to a uid (`"pub_commit"`).
   */
  | { op: "crash"; after?: CrashPoint }
  /** `--debug_api` only: compact the store now; answers how many messages went. */
  | { op: "compact" };

/** Where an armed `/debug/crash` throws: right after the shard's next commit of this kind. */
export type CrashPoint = "bus_commit" | "pub_commit";

/** Every {@linkcode CrashPoint}, for the debug API's check of `after`. */
export const CRASH_POINTS: readonly CrashPoint[] = ["bus_commit", "pub_commit"];

/**
 * Requests from a shard to the main thread: a client's message for a uid owned elsewhere, a
 * client's channel message for the cluster bus (`ShardInit.bus`), and a hand-off's batch for
 * the shard that owns `uid` (and every uid of `users`).
 */
export type MainOp =
  | { op: "publish"; request: UnicastRequest }
  | { op: "publish_channel"; request: ChannelRequest }
  | { op: "import"; uid: string; users: HandedUser[] };

/** Notes from a shard: listening (on `port`) or failed to start, its report once a second, presence changes. */
export type ShardNote =
  | { type: "ready"; port: number }
  /** The shard could not start (its port is taken, its store will not open, ...). */
  | { type: "failed"; reason: string }
  | ({ type: "stats" } & ShardReport)
  | PresenceChange;

/** The `BroadcastChannel` on which a process's shards hear clients' channel messages (without a
 * cluster bus). */
export const CHANNEL_BUS = "ipush.channel-messages";
