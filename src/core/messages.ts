/**
 * A message as it is stored for one recipient and delivered to it: the record every layer
 * passes on (shard, journal, stores, the codecs), so it lives below all of them.
 *
 * @module
 */

/** Message types that are stored: to one user (3) and a channel copy for one subscriber (4). */
export type StoredType = 3 | 4;

/** One message as persisted for one recipient uid. */
export interface StoredMessage {
  /** Recipient uid: the partition key. */
  uid: string;
  /** The recipient's own sequence number, 1, 2, 3 ... never reused. */
  seq: number;
  type: StoredType;
  /** Sender uid or publisher name. */
  from: string;
  /** Channel id, for type 4. */
  channel?: string;
  /** The payload as the JSON text of the `b` value. */
  body: string;
  /** Expiry in milliseconds since the epoch; 0 means never. */
  expiresAt: number;
}

/**
 * One uid's whole state as a planned hand-off carries it from the shard that lets it go to
 * the one the map gives it to (docs/cluster.md, "The embedded store"): its `lastSeq` (which
 * may be above every message left), each device's cursor, its messages above the compaction
 * floor, in seq order, and its channels.
 */
export interface HandedUser {
  uid: string;
  lastSeq: number;
  devices: DeviceCursor[];
  messages: StoredMessage[];
  channels: string[];
}

/** One device of a uid and its cursor: the highest seq it acked, and when it was last seen. */
export interface DeviceCursor {
  device: string;
  lastAck: number;
  seenAt: number;
}

/** What a hand-off attempt left behind: how many uids, and the first failure's reason. */
export interface HandOffOutcome {
  left: number;
  reason?: string;
}

/** A message on its way to one recipient: stored (with `seq`) or volatile (`seq` 0). */
export type Delivery = Omit<StoredMessage, "expiresAt">;
