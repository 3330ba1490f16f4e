/**
 * The rule for uids and channel ids: 1 to 64 characters from `A-Z a-z 0-9 _ - . @`. Narrow on
 * purpose: a name travels in URLs, JSON, log lines and storage keys without escaping, and
 * every byte of it is one character.
 *
 * @module
 */

/** The longest uid or channel id accepted. */
export const MAX_NAME_LENGTH = 64;

const NAME = /^[A-Za-z0-9_.@-]{1,64}$/;

/** True when `value` is a string that is a valid uid or channel id. */
export function isValidName(value: unknown): value is string {
  return typeof value === "string" && NAME.test(value);
}
