/**
 * The client handshake: a hand-parsed HTTP/1.1 request head (`GET /connect?uid=&password=`)
 * and the exact response heads of PROTOCOL.md §1. Hand-written by design: after a 200 the
 * raw chunk protocol continues on the same socket, which no general HTTP server allows.
 *
 * @module
 */

/** A parsed request head. */
export interface RequestHead {
  method: string;
  /** The path without the query, percent-decoded. */
  path: string;
  /** The raw query string (no `?`), as the client sent it: reused verbatim in a 303. */
  query: string;
  /** Query parameters, percent-decoded; the first occurrence of a name wins. */
  params: Map<string, string>;
  /** Header names lower-cased; the first occurrence wins. */
  headers: Map<string, string>;
}

/** Why a head could not be parsed; `reason` goes to the client as `{"error": reason}`. */
export class HeadError extends Error {
  constructor(readonly reason: string) {
    super(reason);
    this.name = "HeadError";
  }
}

const LF = 0x0a;
const CR = 0x0d;

/**
 * Returns the length of the head in `buffer` including its blank line, or -1 while the blank
 * line has not arrived. Bare LF line ends are accepted as well as CRLF.
 */
export function headLength(buffer: Uint8Array, from = 0): number {
  for (let i = Math.max(from, 1); i < buffer.length; i++) {
    if (buffer[i] !== LF) continue;
    if (buffer[i - 1] === LF) return i + 1;
    if (buffer[i - 1] === CR && i >= 2 && buffer[i - 2] === LF) return i + 1;
  }
  return -1;
}

const decoder = new TextDecoder("utf-8", { fatal: true });
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/**
 * A request target is visible ASCII only (RFC 9112 §3.2): a control byte copied from it into a
 * 303's `Location` would break the response head (header injection), and a client
 * percent-encodes everything else.
 */
const TARGET = /^\/[\x21-\x7e]*$/;
/** A field value may hold a tab but no other control byte (RFC 9110 §5.5); a bare CR included. */
// deno-lint-ignore no-control-regex -- control bytes are what it finds
const FIELD_CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;

/** Parses a complete request head (as delimited by {@linkcode headLength}). */
export function parseHead(bytes: Uint8Array): RequestHead {
  let text: string;
  try {
    text = decoder.decode(bytes);
  } catch {
    throw new HeadError("malformed request");
  }
  const lines = text.split(/\r?\n/);
  const [method, target, version, ...extra] = lines[0].split(" ");
  if (
    extra.length > 0 || !method || !TOKEN.test(method) || !TARGET.test(target ?? "") ||
    !/^HTTP\/1\.[01]$/.test(version ?? "")
  ) {
    throw new HeadError("malformed request");
  }
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    if (line === "") continue;
    const colon = line.indexOf(":");
    const name = line.slice(0, colon).toLowerCase();
    const value = line.slice(colon + 1);
    if (colon <= 0 || !TOKEN.test(name) || FIELD_CONTROL.test(value)) {
      throw new HeadError("malformed request");
    }
    if (!headers.has(name)) headers.set(name, value.trim());
  }
  const mark = target.indexOf("?");
  const rawPath = mark < 0 ? target : target.slice(0, mark);
  const query = mark < 0 ? "" : target.slice(mark + 1);
  return { method, path: percentDecode(rawPath), query, params: parseQuery(query), headers };
}

/** Splits a raw query into percent-decoded parameters. `+` is kept literally (RFC 3986). */
export function parseQuery(query: string): Map<string, string> {
  const params = new Map<string, string>();
  if (query === "") return params;
  for (const pair of query.split("&")) {
    if (pair === "") continue;
    const eq = pair.indexOf("=");
    const name = percentDecode(eq < 0 ? pair : pair.slice(0, eq));
    const value = eq < 0 ? "" : percentDecode(pair.slice(eq + 1));
    if (!params.has(name)) params.set(name, value);
  }
  return params;
}

function percentDecode(text: string): string {
  if (!text.includes("%")) return text;
  try {
    return decodeURIComponent(text);
  } catch {
    throw new HeadError("malformed request");
  }
}

const encoder = new TextEncoder();

/** The `Date` header value: IMF-fixdate, as in `Thu, 26 Mar 2015 07:08:43 GMT`. */
export function httpDate(now = new Date()): string {
  return now.toUTCString();
}

/**
 * The 200 head that turns the socket into a duplex chunk stream; MessagePack streams say so
 * in their `Content-Type` (PROTOCOL.md §7).
 */
export function connectedHead(
  contentType = "text/html; charset=utf-8",
  date = httpDate(),
): Uint8Array {
  return encoder.encode(
    "HTTP/1.1 200 OK\r\n" +
      "Connection: keep-alive\r\n" +
      `Content-Type: ${contentType}\r\n` +
      "Transfer-Encoding: chunked\r\n" +
      `Date: ${date}\r\n` +
      "\r\n",
  );
}

/**
 * The redirect that sends the client to the shard that owns its uid: `303`, or `307` for a
 * request whose body must be sent again (`POST /send`). `headers` are extra header lines.
 */
export function redirectHead(
  location: string,
  date = httpDate(),
  status: 303 | 307 = 303,
  headers = "",
): Uint8Array {
  return encoder.encode(
    `HTTP/1.1 ${status} ${STATUS_TEXT[status]}\r\n` +
      `Location: ${location}\r\n` +
      headers +
      "Content-Length: 0\r\n" +
      `Date: ${date}\r\n` +
      "\r\n",
  );
}

const STATUS_TEXT: Record<number, string> = {
  200: "OK",
  204: "No Content",
  303: "See Other",
  304: "Not Modified",
  307: "Temporary Redirect",
  400: "Bad Request",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  411: "Length Required",
  413: "Content Too Large",
  426: "Upgrade Required",
  429: "Too Many Requests",
  500: "Internal Server Error",
  503: "Service Unavailable",
};

/**
 * A refusal: `{"error": reason}` with the status's head; the server closes afterwards.
 * `headers` are extra header lines (CORS, a WebSocket's version).
 */
export function refusal(
  status: number,
  reason: string,
  date = httpDate(),
  headers = "",
): Uint8Array {
  return response(status, "Content-Type: text/json; charset=utf-8\r\n" + headers, {
    body: encoder.encode(JSON.stringify({ error: reason })),
    date,
  });
}

/**
 * A whole response: the status line, `headers` (header lines), `Date`, `Content-Length` and
 * the body. For the requests a client port answers and then reads the next one of
 * (HTTP/1.1 keep-alive), `headers` says `Connection: keep-alive`.
 */
export function response(
  status: number,
  headers: string,
  { body = new Uint8Array(0), date = httpDate() }: { body?: Uint8Array; date?: string },
): Uint8Array {
  // A 204 or 304 has no body, and says no length (RFC 9110 §8.6).
  const length = status === 204 || status === 304 ? "" : `Content-Length: ${body.length}\r\n`;
  const head = encoder.encode(
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? "Error"}\r\n` + headers +
      `Date: ${date}\r\n` +
      length +
      "\r\n",
  );
  const bytes = new Uint8Array(head.length + body.length);
  bytes.set(head);
  bytes.set(body, head.length);
  return bytes;
}

/** The URL of `path` at a shard, carrying the client's query verbatim (a redirect's). */
export function shardLocation(host: string, port: number, path: string, query: string): string {
  const authority = host.includes(":") ? `[${host}]` : host;
  return `http://${authority}:${port}${path}?${query}`;
}

const CLOSE = /(?:^|,)\s*close\s*(?:,|$)/i;

/** Whether the request's `Connection` header asks for the connection to close after the answer. */
export function wantsClose(headers: ReadonlyMap<string, string>): boolean {
  return CLOSE.test(headers.get("connection") ?? "");
}

/**
 * The `since` a request carries: a server-sent events reconnect's `Last-Event-ID` header when
 * it has one (what the browser last saw), else the `since` parameter; 0 when neither is
 * there, null when the one given is not a whole number of at most 16 digits that is a safe
 * integer (an accepted loss's floor has 16: docs/cluster.md).
 */
export function resumePoint(
  headers: ReadonlyMap<string, string>,
  params: ReadonlyMap<string, string>,
): number | null {
  const given = headers.get("last-event-id") ?? params.get("since");
  if (given === undefined || given === "") return 0;
  const since = Number(given);
  return /^\d{1,16}$/.test(given) && Number.isSafeInteger(since) ? since : null;
}
