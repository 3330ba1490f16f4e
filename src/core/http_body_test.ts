import assert from "node:assert/strict";
import { readBody } from "./http_body.ts";
import { ServiceError } from "./errors.ts";

function declared(body: Uint8Array<ArrayBuffer> | string): Request {
  const bytes = typeof body === "string" ? new TextEncoder().encode(body) : body;
  return new Request("http://ipush.test/pub", {
    method: "POST",
    body: bytes,
    headers: { "content-length": String(bytes.length) },
  });
}

/** A body without a declared length, arriving in `parts`. */
function chunked(...parts: string[]): Request {
  const encoder = new TextEncoder();
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const part of parts) controller.enqueue(encoder.encode(part));
      controller.close();
    },
  });
  return new Request("http://ipush.test/pub", { method: "POST", body });
}

function refusedWith(status: number) {
  return (error: unknown) => error instanceof ServiceError && error.status === status;
}

Deno.test("readBody reads a declared body whole, and one that came in parts joined", async () => {
  assert.equal(await readBody(declared('{"text":"héllo"}'), 100), '{"text":"héllo"}');
  assert.equal(await readBody(chunked('{"a":', '"b"', "}"), 100), '{"a":"b"}');
  assert.equal(await readBody(chunked(), 100), "");
});

Deno.test("readBody refuses a body over the limit, declared or not, with 413", async () => {
  await assert.rejects(readBody(declared("x".repeat(11)), 10), refusedWith(413));
  await assert.rejects(readBody(chunked("x".repeat(6), "x".repeat(6)), 10), refusedWith(413));
  assert.equal(await readBody(chunked("x".repeat(5), "x".repeat(5)), 10), "x".repeat(10));
});

Deno.test("readBody refuses a body that is not UTF-8 with 400", async () => {
  await assert.rejects(
    readBody(declared(new Uint8Array([0x7b, 0xff, 0x7d])), 10),
    refusedWith(400),
  );
});
