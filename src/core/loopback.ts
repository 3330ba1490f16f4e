/**
 * Which hosts are this machine only: what may be left open without a credential (the admin
 * API without `--admin_token`) and what the load generator may aim at.
 *
 * @module
 */

import { isIPv4 } from "node:net";

/** True for 127.0.0.0/8, ::1 (also bracketed, as in URLs) and `localhost`. */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase();
  if (h === "localhost" || h === "::1" || h === "[::1]") return true;
  return isIPv4(h) && h.startsWith("127.");
}
