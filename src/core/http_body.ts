/**
 * Reading an HTTP request's body with a limit, for the admin API and `/cluster/ops`.
 *
 * @module
 */

import { badRequest, ServiceError } from "./errors.ts";

/** Decodes whole bodies (no stream state is kept between calls). */
const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Reads a body of at most `maxBytes`, as UTF-8. A body that declares its length is read whole
 * once that length is checked (the server never delivers more than it declared; measured,
 * this takes the runtime's path for a whole body and spares a `/pub` a stream reader, ~6 % of
 * the main thread at the unicast maximum). A chunked body, which declares no length, is read
 * as it streams in and refused the moment it passes the limit, so that it cannot make the
 * daemon buffer more than the limit first (256 MiB sent chunked grew it by 260 MB before).
 */
export async function readBody(request: Request, maxBytes: number): Promise<string> {
  const tooLarge = () => new ServiceError(`body over ${maxBytes} bytes`, 413);
  const declared = request.headers.get("content-length");
  if (Number(declared ?? "0") > maxBytes) throw tooLarge();
  const bytes = declared !== null
    ? new Uint8Array(await request.arrayBuffer())
    : await readStreamed(request, maxBytes, tooLarge);
  try {
    return utf8.decode(bytes);
  } catch {
    throw badRequest("body is not utf-8");
  }
}

async function readStreamed(
  request: Request,
  maxBytes: number,
  tooLarge: () => Error,
): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let length = 0;
  if (request.body) {
    for await (const part of request.body) {
      length += part.length;
      // Leaving the loop cancels the stream: the rest is never read.
      if (length > maxBytes) throw tooLarge();
      parts.push(part);
    }
  }
  if (parts.length <= 1) return parts[0] ?? new Uint8Array(0);
  const bytes = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    bytes.set(part, at);
    at += part.length;
  }
  return bytes;
}
