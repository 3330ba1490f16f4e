/**
 * The load generator only ever aims at this machine: every target, including a 303's
 * `Location`, must be a loopback address.
 *
 * @module
 */

import { isIPv4 } from "node:net";

export { isLoopback } from "../../src/core/loopback.ts";

/** The address to dial for a loopback host name (URL brackets stripped, localhost pinned). */
export function dialAddress(host: string): string {
  if (host.toLowerCase() === "localhost") return "127.0.0.1";
  return host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
}

/**
 * `n` source addresses 127.0.0.2, 127.0.0.3, ... for client sockets to bind to, so each gets
 * its own ephemeral port range (about 28k ports per address here); none for an IPv6 target,
 * whose loopback is a single address.
 */
export function sourceAddresses(target: string, n: number): string[] {
  if (!isIPv4(dialAddress(target)) || n <= 0) return [];
  return Array.from({ length: Math.min(n, 250) }, (_, i) => `127.0.0.${i + 2}`);
}
