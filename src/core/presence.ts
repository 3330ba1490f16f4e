/**
 * Presence as it crosses modules: what a shard reports when a uid's connections or channels
 * change, and what a lookup answers.
 *
 * @module
 */

/**
 * A change a shard reports: a uid's connections and the devices they are from, or a channel
 * it joined or left.
 */
export type PresenceChange =
  | { type: "presence"; uid: string; connections: number; devices: number; channels: string[] }
  | { type: "presence-channel"; uid: string; channel: string; joined: boolean };

/** One uid's status. */
export interface UserPresence {
  uid: string;
  status: "online" | "offline";
  connections: number;
  /** Distinct devices among the connections. */
  devices: number;
}

/** What a node says of itself with each liveness beat, for the other nodes' dashboards. */
export interface NodeStatus {
  /** Why it is not ready (as its `/readyz` says); empty when it is. */
  notReady: string[];
  connections: number;
  users: number;
}

/** A node's last beat: its status, and when it was sent (ms since the epoch). */
export interface NodeBeat extends NodeStatus {
  at: number;
}
