/**
 * Client authentication at the handshake. A check may be asynchronous, which leaves room for
 * an HTTP auth backend or signed tokens beside the two built in here.
 *
 * @module
 */

/** Decides whether `password` admits `uid`. */
export type Authenticator = (uid: string, password: string) => boolean | Promise<boolean>;

/** `--auth=none`: any password admits any valid uid. */
export const acceptAll: Authenticator = () => true;

/**
 * `--auth=file`: a `uid password` pair per line of `text`; blank lines and `#` comments (at
 * the start of a line or after white space, so a password may contain `#`) are skipped.
 * Throws on a line that is not a pair, naming the line.
 */
export function passwordTable(text: string): Authenticator {
  const passwords = new Map<string, string>();
  text.split("\n").forEach((raw, i) => {
    const line = raw.replace(/(^|\s)#.*$/, "").trim();
    if (line === "") return;
    const fields = line.split(/\s+/);
    if (fields.length !== 2) throw new Error(`users file line ${i + 1}: expected 'uid password'`);
    passwords.set(fields[0], fields[1]);
  });
  return (uid, password) => passwords.get(uid) === password;
}

/** The authenticator a configuration names. */
export function createAuthenticator(
  options: { auth: "none" | "file"; users_file: string },
): Authenticator {
  if (options.auth === "none") return acceptAll;
  if (options.users_file === "") throw new Error("--auth=file needs --users_file");
  return passwordTable(Deno.readTextFileSync(options.users_file));
}
