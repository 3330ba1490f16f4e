/**
 * The requests a client port answers at once, beside the transports (PROTOCOL.md §6), each
 * answer keeping the connection for the client's next request:
 *
 * - `POST /send?uid=&password=…` (the upstream of server-sent events and long-poll): the body
 *   is JSON lines, each a client message of §2; the owner answers `{"result":[…]}`, one
 *   entry a line, `"ok"` or `{"error":"…"}` (a non-owner's `307` is the client port's).
 * - `GET /shard?uid=U`: `{"result":"host:port"}`, where the uid's owner listens.
 *
 * @module
 */

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
  submit(uid: string, device: string, lines: Uint8Array[]): Promise<string[]>;
}

/** Most lines one `/send` carries. */
export const SEND_MAX_LINES = 1000;

const SEND: Endpoint = { method: "POST", path: "/send", needs: "login" };
const SHARD: Endpoint = { method: "GET", path: "/shard", needs: "uid" };

/** Every endpoint, in the order a request is matched against them. */
export const ENDPOINTS: readonly Endpoint[] = [SEND, SHARD];

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
  const lines = splitLines(request.body);
  if (lines.length > SEND_MAX_LINES) return json(413, { error: "too many lines" });
  const answers = await services.submit(request.uid, request.device, lines);
  return json(200, null, `{"result":[${answers.join(",")}]}`);
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
