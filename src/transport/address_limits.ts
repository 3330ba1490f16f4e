/**
 * A client port's limits per client address: unfinished handshakes (so that one address
 * cannot hold a port's descriptors with heads it never finishes, or with connects waiting on a
 * slow auth backend), and request heads a second (a token bucket an address, one second's
 * worth deep; the front door's, where connect storms land). An address is an IPv4 address, or
 * an IPv6 /64: a host is usually given a whole /64, and counting its addresses one by one would
 * let it pick a fresh one for every connection.
 *
 * Memory: an address is tracked while it has a handshake under way, and its bucket while it is
 * not full again; at {@linkcode MAX_BUCKETS} addresses, the full buckets are dropped, and the
 * oldest if that is not enough (an address forgotten so starts again with a full bucket).
 *
 * @module
 */

/** Addresses whose head rate is tracked at most. */
export const MAX_BUCKETS = 65_536;

/** The limits. */
export interface AddressLimitOptions {
  /** Handshakes under way from one address, at most. */
  handshakes: number;
  /** Request heads a second from one address; 0: no limit. */
  headsPerSec: number;
}

/** One client port's per-address counts. */
export class AddressLimits {
  #options: AddressLimitOptions;
  #handshakes = new Map<string, number>();
  #buckets = new Map<string, { credit: number; at: number }>();

  constructor(options: AddressLimitOptions) {
    this.#options = options;
  }

  /** Counts a handshake from `address` that begins; false (not counted) past the limit. */
  startHandshake(address: string): boolean {
    const under = this.#handshakes.get(address) ?? 0;
    if (under >= this.#options.handshakes) return false;
    this.#handshakes.set(address, under + 1);
    return true;
  }

  /** A handshake counted by {@linkcode startHandshake} ended, whatever its outcome. */
  endHandshake(address: string): void {
    const under = this.#handshakes.get(address)! - 1;
    if (under === 0) this.#handshakes.delete(address);
    else this.#handshakes.set(address, under);
  }

  /** Takes one request head from `address`'s bucket; false when it is empty. */
  takeHead(address: string, now = Date.now()): boolean {
    const rate = this.#options.headsPerSec;
    if (rate === 0) return true;
    const buckets = this.#buckets;
    let bucket = buckets.get(address);
    if (!bucket) {
      if (buckets.size >= MAX_BUCKETS) this.#prune(now);
      bucket = { credit: rate, at: now };
      buckets.set(address, bucket);
    } else {
      bucket.credit = Math.min(rate, bucket.credit + (now - bucket.at) * rate / 1000);
      bucket.at = now;
    }
    if (bucket.credit < 1) return false;
    bucket.credit--;
    return true;
  }

  /**
   * Drops the buckets that are full again, and then, if that left more than three quarters,
   * the oldest down to three quarters: a scan for every new address would make many
   * addresses at once cost the port a pass over all of them each.
   */
  #prune(now: number): void {
    const rate = this.#options.headsPerSec;
    const buckets = this.#buckets;
    for (const [address, bucket] of buckets) {
      if (bucket.credit + (now - bucket.at) * rate / 1000 >= rate) buckets.delete(address);
    }
    for (const address of buckets.keys()) {
      if (buckets.size <= MAX_BUCKETS * 3 / 4) break;
      buckets.delete(address);
    }
  }
}

/** The address a client is counted under: IPv4 as it is, IPv6 as its /64. */
export function addressKey(address: string): string {
  if (address.startsWith("::ffff:") && address.includes(".")) return address.slice(7);
  if (!address.includes(":")) return address;
  const [head, tail] = address.split("%")[0].split("::");
  const front = head === "" ? [] : head.split(":");
  const back = tail === undefined || tail === "" ? [] : tail.split(":");
  const zeros = tail === undefined ? [] : Array(Math.max(0, 8 - front.length - back.length));
  const groups = [...front, ...zeros.fill("0"), ...back].slice(0, 4);
  return `${groups.map((g) => parseInt(g, 16).toString(16)).join(":")}::/64`;
}
