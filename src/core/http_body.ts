/**
 * Reading an HTTP request's body with a limit, for the admin API and `/cluster/ops`.
 *
 * @module
 */

import { badRequest, ServiceError } from "./errors.ts";

/**
 * Reads a body of at most `maxBytes`, as UTF-8. It is read as it streams in and refused the
 * moment it passes the limit, so a chunked body (which declares no length) cannot make the
 * daemon buffer more than the limit first (256 MiB sent chunked grew it by 260 MB before).
 */
export async function readBody(request: Request, maxBytes: number): Promise<string> {
  const tooLarge = () => new ServiceError(`body over ${maxBytes} bytes`, 413);
  if (Number(request.headers.get("content-length") ?? "0") > maxBytes) throw tooLarge();
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
  let bytes = parts[0] ?? new Uint8Array(0);
  if (parts.length > 1) {
    bytes = new Uint8Array(length);
    let at = 0;
    for (const part of parts) {
      bytes.set(part, at);
      at += part.length;
    }
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw badRequest("body is not utf-8");
  }
}
