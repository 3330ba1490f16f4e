/**
 * Cross-origin access to the client ports (`--cors_origins`, PROTOCOL.md §6): which web pages
 * may call them from another origin, the `Access-Control-Allow-Origin` every answer carries,
 * and the answer to a preflight.
 *
 * `*` lets any page in (no credentials are involved: a client proves itself by its password
 * or token in the request, never by a cookie). A list names the origins allowed, and a
 * request that carries another `Origin` is refused with `403 {"error":"origin not allowed"}`
 * — a WebSocket upgrade too, which CORS itself does not cover. Empty (the flag's default): no
 * CORS headers at all, so browsers keep pages of other origins out, and nothing is refused
 * for its `Origin`.
 *
 * @module
 */

/** How long a browser may cache a preflight's answer, in seconds. */
const PREFLIGHT_MAX_AGE_SEC = 600;
const METHODS = "GET, POST, OPTIONS";
const HEADER_LIST = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+(?:\s*,\s*[!#$%&'*+.^_`|~0-9A-Za-z-]+)*$/;

/** A preflight's answer: its status and header lines. */
export interface PreflightAnswer {
  status: 204 | 403;
  headers: string;
}

/** The `--cors_origins` policy. */
export class Cors {
  #any: boolean;
  #origins: ReadonlySet<string>;

  /** `spec`: `*`, a comma-separated list of origins, or empty. */
  constructor(spec: string) {
    const origins = spec.split(",").map((origin) => origin.trim()).filter((o) => o !== "");
    this.#any = origins.includes("*");
    this.#origins = new Set(origins);
  }

  /** Whether a request from `origin` (undefined: it sent none) is served at all. */
  allows(origin: string | undefined): boolean {
    return origin === undefined || this.#any || this.#origins.size === 0 ||
      this.#origins.has(origin);
  }

  /** The header lines for an answer to a request from `origin` ("" for none). */
  headers(origin: string | undefined): string {
    if (origin === undefined) return "";
    if (this.#any) return "Access-Control-Allow-Origin: *\r\n";
    if (!this.#origins.has(origin)) return "";
    return `Access-Control-Allow-Origin: ${origin}\r\nVary: Origin\r\n`;
  }

  /**
   * The answer to an `OPTIONS` request with these headers: a preflight's, or, without an
   * `Origin` (no browser asking), the methods allowed.
   */
  preflight(headers: ReadonlyMap<string, string>): PreflightAnswer {
    const origin = headers.get("origin");
    if (origin === undefined) return { status: 204, headers: `Allow: ${METHODS}\r\n` };
    const allow = this.headers(origin);
    if (allow === "") return { status: 403, headers: "" };
    const asked = headers.get("access-control-request-headers") ?? "";
    return {
      status: 204,
      headers: allow +
        `Access-Control-Allow-Methods: ${METHODS}\r\n` +
        (HEADER_LIST.test(asked) ? `Access-Control-Allow-Headers: ${asked}\r\n` : "") +
        `Access-Control-Max-Age: ${PREFLIGHT_MAX_AGE_SEC}\r\n`,
    };
  }
}
