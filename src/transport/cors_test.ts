import assert from "node:assert/strict";
import { Cors } from "./cors.ts";

const asked = (origin?: string, requested?: string) =>
  new Map([
    ...(origin ? [["origin", origin] as const] : []),
    ["access-control-request-method", "POST"] as const,
    ...(requested ? [["access-control-request-headers", requested] as const] : []),
  ]);

Deno.test("Cors: * lets every page in, with no credentials", () => {
  const cors = new Cors("*");
  assert.equal(cors.allows("https://any.example"), true);
  assert.equal(cors.headers("https://any.example"), "Access-Control-Allow-Origin: *\r\n");
  assert.equal(cors.headers(undefined), "", "a request without an Origin needs none");
  const { status, headers } = cors.preflight(asked("https://any.example", "content-type"));
  assert.equal(status, 204);
  assert.equal(
    headers,
    "Access-Control-Allow-Origin: *\r\n" +
      "Access-Control-Allow-Methods: GET, POST, OPTIONS\r\n" +
      "Access-Control-Allow-Headers: content-type\r\n" +
      "Access-Control-Max-Age: 600\r\n",
  );
});

Deno.test("Cors: a list names its origins and refuses the others, WebSocket included", () => {
  const cors = new Cors("https://app.example, http://localhost:8080");
  assert.equal(
    cors.headers("http://localhost:8080"),
    "Access-Control-Allow-Origin: http://localhost:8080\r\nVary: Origin\r\n",
  );
  assert.equal(cors.allows("https://app.example"), true);
  assert.equal(cors.allows("https://evil.example"), false);
  assert.equal(cors.allows(undefined), true, "raw clients and same-origin GETs send none");
  assert.equal(cors.headers("https://evil.example"), "");
  assert.equal(cors.preflight(asked("https://evil.example")).status, 403);
});

Deno.test("Cors: empty means no CORS headers, and nothing refused for its Origin", () => {
  const cors = new Cors("");
  assert.equal(cors.allows("https://any.example"), true);
  assert.equal(cors.headers("https://any.example"), "");
  assert.equal(cors.preflight(asked("https://any.example")).status, 403);
});

Deno.test("Cors: an OPTIONS without an Origin is told the methods; odd header lists are not echoed", () => {
  const cors = new Cors("*");
  assert.deepEqual(cors.preflight(asked()), {
    status: 204,
    headers: "Allow: GET, POST, OPTIONS\r\n",
  });
  const injected = cors.preflight(asked("https://a.example", "x\r\nSet-Cookie: y")).headers;
  assert.ok(!injected.includes("Allow-Headers"), injected);
});
