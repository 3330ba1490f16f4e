/**
 * The requests a client port answers at once, beside the transports (PROTOCOL.md §6), each
 * answer keeping the connection for the client's next request:
 *
 * - `POST /send?uid=&password=…` (the upstream of server-sent events and long-poll): the body
 *   is JSON lines, each a client message of §2; the owner answers `{"result":[…]}`, one
 *   entry a line, `"ok"` or `{"error":"…"}` (a non-owner's `307` is the client port's).
 * - `GET /shard?uid=U`: `{"result":"host:port"}`, where the uid's owner listens.
 * - `GET /ipush.js`: the JavaScript client (`src/client/ipush.js`); `GET /demo`: the demo
 *   page. Both revalidate (`ETag`, `304`), so a new daemon's client is picked up at once.
 *
 * @module
 */

import { createHash } from "node:crypto";
import type { Sender } from "../core/access.ts";
import type { ShardAddress } from "../core/shard_map.ts";
import { response } from "../protocol/handshake.ts";
import type { Accepted, Endpoint } from "./handshake.ts";

/** What the endpoints need of the shard (or front door) serving the port. */
export interface EndpointServices {
  /** Where `uid`'s owner listens for clients. */
  shardOf(uid: string): ShardAddress;
  /**
   * The messages of one `/send`, at the uid's owner: each line's answer, `"ok"` or an
   * `{"error": …}` text, in order.
   */
  submit(sender: Sender, lines: Uint8Array[]): Promise<string[]>;
}

/** Most lines one `/send` carries. */
export const SEND_MAX_LINES = 1000;

export const SEND: Endpoint = { method: "POST", path: "/send", needs: "login" };
const SHARD: Endpoint = { method: "GET", path: "/shard", needs: "uid" };
const CLIENT: Endpoint = { method: "GET", path: "/ipush.js", needs: "none" };
const DEMO: Endpoint = { method: "GET", path: "/demo", needs: "none" };

/** Every endpoint, in the order a request is matched against them. */
export const ENDPOINTS: readonly Endpoint[] = [SEND, SHARD, CLIENT, DEMO];

/** A file served as it is, with its validator. */
interface Asset {
  type: string;
  bytes: Uint8Array;
  etag: string;
}

function asset(name: string, type: string): Asset {
  const bytes = Deno.readFileSync(new URL(`../client/${name}`, import.meta.url));
  const etag = `"${createHash("sha1").update(bytes).digest("base64url")}"`;
  return { type, bytes, etag };
}

const ASSETS = new Map<Endpoint, Asset>([
  [CLIENT, asset("ipush.js", "text/javascript; charset=utf-8")],
  [DEMO, asset("demo.html", "text/html; charset=utf-8")],
]);

const encoder = new TextEncoder();
const JSON_TYPE = "Content-Type: application/json; charset=utf-8\r\n";

/**
 * The answer to an accepted endpoint request (the whole response), for a client that reached
 * the port at `host`. `keepAlive` says whether the socket takes a next request.
 */
export async function answerEndpoint(
  request: Accepted,
  endpoint: Endpoint,
  services: EndpointServices,
  host: string,
  keepAlive: boolean,
): Promise<Uint8Array> {
  const connection = keepAlive ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
  const json = (status: number, value: unknown, text = JSON.stringify(value)) =>
    response(status, JSON_TYPE + "Cache-Control: no-store\r\n" + connection + request.cors, {
      body: encoder.encode(text),
    });
  if (endpoint === SHARD) {
    const owner = services.shardOf(request.uid);
    return json(200, { result: `${owner.host || host}:${owner.port}` });
  }
  if (endpoint === SEND) {
    const lines = splitLines(request.body);
    if (lines.length > SEND_MAX_LINES) return json(413, { error: "too many lines" });
    const answers = await services.submit(request, lines);
    return json(200, null, `{"result":[${answers.join(",")}]}`);
  }
  const file = ASSETS.get(endpoint)!;
  const headers = `ETag: ${file.etag}\r\nCache-Control: no-cache\r\n` + connection + request.cors;
  if (request.head.headers.get("if-none-match") === file.etag) {
    return response(304, headers, {});
  }
  return response(200, `Content-Type: ${file.type}\r\n` + headers, { body: file.bytes });
}

/** The non-blank lines of a body, without their line ends (LF or CRLF). */
export function splitLines(body: Uint8Array): Uint8Array[] {
  const lines: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i <= body.length; i++) {
    if (i < body.length && body[i] !== 0x0a) continue;
    let end = i;
    if (end > start && body[end - 1] === 0x0d) end--;
    if (!isBlank(body, start, end)) lines.push(body.subarray(start, end));
    start = i + 1;
  }
  return lines;
}

function isBlank(body: Uint8Array, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const byte = body[i];
    if (byte !== 0x20 && byte !== 0x09 && byte !== 0x0d) return false;
  }
  return true;
}
