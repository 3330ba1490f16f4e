/**
 * Channel permissions (PROTOCOL.md §8): what a connected client may do on a channel, decided
 * by its authenticator at connect and kept with its session. It crosses from the auth layer,
 * through the client port and the session, to the shard that asks it on a client's y=1
 * (subscribe) and y=4 (publish); the admin API's `/sub` never asks.
 *
 * @module
 */

/** What a client asks to do on a channel. */
export type ChannelAction = "subscribe" | "publish";

/** A permission's answer: `unavailable` when the backend that decides could not answer. */
export type AccessAnswer = "allow" | "forbidden" | "unavailable";

/**
 * Decides a connected client's channel actions. One is kept per session (so it must be
 * small, or shared by many sessions); none at all means every channel is allowed.
 */
export interface ChannelAccess {
  check(uid: string, channel: string, action: ChannelAction): AccessAnswer | Promise<AccessAnswer>;
}

/**
 * Who a client message is from, as its login proved: the uid, the device (PROTOCOL.md §7; ""
 * for the default one), and its channel permissions (null: every channel). A session is one;
 * so is a `/send` request.
 */
export interface Sender {
  readonly uid: string;
  readonly device: string;
  readonly access: ChannelAccess | null;
}
