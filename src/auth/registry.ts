/**
 * Which authenticator `--auth` names, built from its flags. Every shard worker builds its
 * own (an `http` backend's cache is then per worker; as a uid always connects to the same
 * worker, that loses nothing), and the main thread builds one at start-up only to refuse a
 * configuration that cannot work.
 *
 * @module
 */

import type { Config } from "../config/flags.ts";
import type { Log } from "../core/log.ts";
import { acceptAll, type Authenticator, passwordTable } from "./auth.ts";
import { HttpBackend } from "./http.ts";
import { tokenVerifier } from "./token.ts";

/** The flags an authenticator is made from. */
export type AuthOptions = Pick<
  Config,
  | "auth"
  | "users_file"
  | "auth_http_url"
  | "auth_http_timeout_ms"
  | "auth_http_max_inflight"
  | "auth_cache_sec"
  | "auth_token_secret"
  | "auth_token_key_file"
  | "auth_token_leeway_sec"
>;

/**
 * The authenticator a configuration names. Throws with a message naming the flag when the
 * configuration cannot work (no users file, no backend URL, no key), so that a daemon
 * refuses to start rather than every client.
 */
export async function createAuthenticator(
  options: AuthOptions,
  log: Log = () => {},
): Promise<Authenticator> {
  switch (options.auth) {
    case "none":
      return acceptAll;
    case "file":
      if (options.users_file === "") throw new Error("--auth=file needs --users_file");
      return passwordTable(Deno.readTextFileSync(options.users_file));
    case "http":
      return new HttpBackend({
        url: options.auth_http_url,
        cacheMs: options.auth_cache_sec * 1000,
        timeoutMs: options.auth_http_timeout_ms,
        maxInFlight: options.auth_http_max_inflight,
        log,
      }).authenticate;
    case "token":
      return await tokenVerifier({
        secret: options.auth_token_secret,
        keyFile: options.auth_token_key_file,
        leewaySec: options.auth_token_leeway_sec,
      });
  }
}
