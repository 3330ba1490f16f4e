import assert from "node:assert/strict";
import {
  connectedHead,
  HeadError,
  headLength,
  httpDate,
  parseHead,
  parseQuery,
  redirectHead,
  refusal,
  shardLocation,
  wantsClose,
} from "./handshake.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const bytes = (text: string) => encoder.encode(text);

/** The example request of PROTOCOL.md §1, byte for byte. */
const PROTOCOL_REQUEST = "GET /connect?uid=user001&password=pwd001 HTTP/1.1\r\n" +
  "User-Agent: mobile_socket_client/0.1.0\r\n" +
  "Accept: */*\r\n" +
  "\r\n";

/** What `curl http://127.0.0.1:9000/connect?...` sends. */
const CURL_REQUEST = "GET /connect?uid=user002&password=pwd002 HTTP/1.1\r\n" +
  "Host: 127.0.0.1:9000\r\n" +
  "User-Agent: curl/8.5.0\r\n" +
  "Accept: */*\r\n" +
  "\r\n";

function assertMalformed(head: string | Uint8Array): void {
  const input = typeof head === "string" ? bytes(head) : head;
  assert.throws(
    () => parseHead(input),
    (error: unknown) => error instanceof HeadError && error.reason === "malformed request",
  );
}

// ---------------------------------------------------------------------------------------------
// headLength

Deno.test("headLength: CRLF head is delimited at its blank line", () => {
  assert.equal(headLength(bytes(PROTOCOL_REQUEST)), PROTOCOL_REQUEST.length);
});

Deno.test("headLength: bytes after the blank line are not part of the head", () => {
  const buffer = bytes(PROTOCOL_REQUEST + 'a\r\n{"y":0}\r\n');
  assert.equal(headLength(buffer), PROTOCOL_REQUEST.length);
});

Deno.test("headLength: bare LF line ends are accepted", () => {
  const head = "GET /connect?uid=a HTTP/1.1\nAccept: */*\n\n";
  assert.equal(headLength(bytes(head)), head.length);
  const mixed = "GET /connect?uid=a HTTP/1.1\r\nAccept: */*\n\r\n";
  assert.equal(headLength(bytes(mixed)), mixed.length);
  const mixed2 = "GET /connect?uid=a HTTP/1.1\r\nAccept: */*\r\n\n";
  assert.equal(headLength(bytes(mixed2)), mixed2.length);
});

Deno.test("headLength: -1 while the blank line has not arrived", () => {
  assert.equal(headLength(new Uint8Array(0)), -1);
  assert.equal(headLength(bytes("GET /connect?uid=a HTTP/1.1\r\n")), -1);
  assert.equal(headLength(bytes("GET /connect?uid=a HTTP/1.1\r\nAccept: */*\r\n")), -1);
  assert.equal(headLength(bytes("GET /connect?uid=a HTTP/1.1\r\nAccept: */*\r\n\r")), -1);
  // A lone CR is not a line end.
  assert.equal(headLength(bytes("GET / HTTP/1.1\r\r")), -1);
});

Deno.test("headLength: every prefix of the request is incomplete, the whole is not", () => {
  const all = bytes(PROTOCOL_REQUEST);
  for (let n = 0; n < all.length; n++) assert.equal(headLength(all.subarray(0, n)), -1, `n=${n}`);
  assert.equal(headLength(all), all.length);
});

Deno.test("headLength: `from` resumes a scan, also when the blank line straddles two reads", () => {
  const all = bytes(PROTOCOL_REQUEST);
  // As the handshake reader does: rescan from three bytes before the previous end.
  for (let cut = 1; cut < all.length; cut++) {
    assert.equal(headLength(all.subarray(0, cut)), -1);
    assert.equal(headLength(all, Math.max(0, cut - 3)), all.length, `cut=${cut}`);
  }
});

Deno.test("headLength: `from` skips what is before it", () => {
  const first = "GET /a HTTP/1.1\r\n\r\n";
  const second = "GET /b HTTP/1.1\r\nHost: x\r\n\r\n";
  const buffer = bytes(first + second);
  assert.equal(headLength(buffer, 0), first.length);
  assert.equal(headLength(buffer, first.length), first.length + second.length);
  assert.equal(headLength(buffer, buffer.length), -1);
});

// ---------------------------------------------------------------------------------------------
// parseHead

Deno.test("parseHead: the request of PROTOCOL.md §1", () => {
  const head = parseHead(bytes(PROTOCOL_REQUEST));
  assert.equal(head.method, "GET");
  assert.equal(head.path, "/connect");
  assert.equal(head.query, "uid=user001&password=pwd001");
  assert.deepEqual([...head.params], [["uid", "user001"], ["password", "pwd001"]]);
  assert.deepEqual([...head.headers], [
    ["user-agent", "mobile_socket_client/0.1.0"],
    ["accept", "*/*"],
  ]);
});

Deno.test("parseHead: curl's request head", () => {
  const head = parseHead(bytes(CURL_REQUEST));
  assert.equal(head.method, "GET");
  assert.equal(head.path, "/connect");
  assert.equal(head.params.get("uid"), "user002");
  assert.equal(head.params.get("password"), "pwd002");
  assert.equal(head.headers.get("host"), "127.0.0.1:9000");
  assert.equal(head.headers.get("user-agent"), "curl/8.5.0");
  assert.equal(head.headers.get("accept"), "*/*");
});

Deno.test("parseHead: bare LF lines, HTTP/1.0, no headers", () => {
  const head = parseHead(bytes("GET /connect?uid=a&password=b HTTP/1.0\n\n"));
  assert.equal(head.path, "/connect");
  assert.equal(head.params.get("uid"), "a");
  assert.equal(head.headers.size, 0);
});

Deno.test("parseHead: header names lower-cased, values trimmed, first occurrence wins", () => {
  const head = parseHead(bytes("GET / HTTP/1.1\r\nX-Thing:   one  \r\nx-thing: two\r\n\r\n"));
  assert.equal(head.headers.get("x-thing"), "one");
  assert.equal(head.headers.size, 1);
});

Deno.test("parseHead: uid and password are percent-decoded, the raw query is kept", () => {
  const query = "uid=user%40example.com&password=p%20w%26d%3D%E2%82%AC";
  const head = parseHead(bytes(`GET /connect?${query} HTTP/1.1\r\n\r\n`));
  assert.equal(head.params.get("uid"), "user@example.com");
  assert.equal(head.params.get("password"), "p w&d=€");
  assert.equal(head.query, query);
});

Deno.test("parseHead: the path is percent-decoded", () => {
  assert.equal(parseHead(bytes("GET /con%6Eect HTTP/1.1\r\n\r\n")).path, "/connect");
});

Deno.test("parseHead: `+` is kept literally", () => {
  const head = parseHead(bytes("GET /connect?uid=a+b&password=1+1%2B1 HTTP/1.1\r\n\r\n"));
  assert.equal(head.params.get("uid"), "a+b");
  assert.equal(head.params.get("password"), "1+1+1");
});

Deno.test("parseHead: the first occurrence of a parameter wins", () => {
  const head = parseHead(bytes("GET /connect?uid=first&uid=second&password=x HTTP/1.1\r\n\r\n"));
  assert.equal(head.params.get("uid"), "first");
  assert.equal(head.query, "uid=first&uid=second&password=x");
});

Deno.test("parseQuery: empty pairs skipped, a name without `=` has an empty value", () => {
  assert.deepEqual([...parseQuery("")], []);
  assert.deepEqual([...parseQuery("&&uid=a&&flag&x=")], [["uid", "a"], ["flag", ""], ["x", ""]]);
  assert.deepEqual([...parseQuery("a=b=c")], [["a", "b=c"]]);
});

Deno.test("parseHead: malformed request lines", () => {
  // Missing version.
  assertMalformed("GET /connect?uid=a\r\n\r\n");
  // Missing target and version.
  assertMalformed("GET\r\n\r\n");
  // Empty head.
  assertMalformed("\r\n\r\n");
  assertMalformed(new Uint8Array(0));
  // Extra spaces.
  assertMalformed("GET  /connect?uid=a HTTP/1.1\r\n\r\n");
  assertMalformed("GET /connect?uid=a  HTTP/1.1\r\n\r\n");
  assertMalformed("GET /connect?uid=a HTTP/1.1 \r\n\r\n");
  assertMalformed(" GET /connect?uid=a HTTP/1.1\r\n\r\n");
  // A fourth word.
  assertMalformed("GET /connect?uid=a HTTP/1.1 extra\r\n\r\n");
  // Non-token method.
  assertMalformed("G(T /connect?uid=a HTTP/1.1\r\n\r\n");
  assertMalformed("GE\u00e9T /connect?uid=a HTTP/1.1\r\n\r\n");
  // Other versions, or none that looks like one.
  assertMalformed("GET /connect?uid=a HTTP/2.0\r\n\r\n");
  assertMalformed("GET /connect?uid=a http/1.1\r\n\r\n");
  assertMalformed("GET /connect?uid=a HTTP/1.10\r\n\r\n");
  // A target that is not a path.
  assertMalformed("GET connect?uid=a HTTP/1.1\r\n\r\n");
  assertMalformed("GET * HTTP/1.1\r\n\r\n");
});

Deno.test("parseHead: malformed header lines", () => {
  assertMalformed("GET / HTTP/1.1\r\nno colon here\r\n\r\n");
  assertMalformed("GET / HTTP/1.1\r\n: empty name\r\n\r\n");
  assertMalformed("GET / HTTP/1.1\r\nBad Name: x\r\n\r\n");
  assertMalformed("GET / HTTP/1.1\r\nHost : x\r\n\r\n");
});

Deno.test("parseHead: control bytes and non-ASCII in the request target are malformed", () => {
  // A bare CR inside the request line would otherwise reach a 303's Location as a header break.
  assertMalformed("GET /connect?uid=user001&password=p\rSet-Cookie:x=1 HTTP/1.1\r\n\r\n");
  for (const byte of [0x00, 0x01, 0x09, 0x0b, 0x0c, 0x0d, 0x1b, 0x7f]) {
    const head = Uint8Array.from([
      ...bytes("GET /connect?uid=a&password=p"),
      byte,
      ...bytes("x HTTP/1.1\r\n\r\n"),
    ]);
    assertMalformed(head);
  }
  // UTF-8 is fine in a header value, not in a target: a client percent-encodes it there.
  assertMalformed("GET /connect?uid=caf\u00e9 HTTP/1.1\r\n\r\n");
  // Every target byte from 0x21 to 0x7e is still accepted.
  let visible = "";
  for (let c = 0x21; c <= 0x7e; c++) if (c !== 0x25) visible += String.fromCharCode(c);
  assert.equal(parseHead(bytes(`GET /${visible} HTTP/1.1\r\n\r\n`)).method, "GET");
});

Deno.test("parseHead: control bytes in a header line are malformed", () => {
  assertMalformed("GET / HTTP/1.1\r\nX: a\rSet-Cookie: x=1\r\n\r\n");
  for (const byte of [0x00, 0x01, 0x0b, 0x1b, 0x7f]) {
    assertMalformed(
      Uint8Array.from([...bytes("GET / HTTP/1.1\r\nX: a"), byte, ...bytes("b\r\n\r\n")]),
    );
  }
  // A tab is white space in a field value (RFC 9110 §5.5).
  assert.equal(parseHead(bytes("GET / HTTP/1.1\r\nX: a\tb\r\n\r\n")).headers.get("x"), "a\tb");
});

Deno.test("parseHead: bad percent-encoding", () => {
  assertMalformed("GET /connect?uid=%zz HTTP/1.1\r\n\r\n");
  assertMalformed("GET /connect?uid=abc% HTTP/1.1\r\n\r\n");
  assertMalformed("GET /connect?uid=a&password=%4 HTTP/1.1\r\n\r\n");
  // Percent-encoded bytes that are not UTF-8.
  assertMalformed("GET /connect?uid=%E9 HTTP/1.1\r\n\r\n");
  assertMalformed("GET /connect?uid=%C3%28 HTTP/1.1\r\n\r\n");
  // In a parameter name, and in the path.
  assertMalformed("GET /connect?%zz=1 HTTP/1.1\r\n\r\n");
  assertMalformed("GET /con%nect HTTP/1.1\r\n\r\n");
});

Deno.test("parseHead: non-UTF-8 bytes", () => {
  const valid = bytes("GET /connect?uid=a HTTP/1.1\r\nX: ab\r\n\r\n");
  assert.equal(parseHead(valid).headers.get("x"), "ab");
  const broken = valid.slice();
  broken[broken.indexOf(0x61, 30)] = 0xff; // the `a` of the header value
  assertMalformed(broken);
  // An overlong encoding and a lone continuation byte in the request line.
  assertMalformed(Uint8Array.from([...bytes("GET /"), 0xc0, 0xaf, ...bytes(" HTTP/1.1\r\n\r\n")]));
  assertMalformed(Uint8Array.from([...bytes("GET /"), 0x80, ...bytes(" HTTP/1.1\r\n\r\n")]));
});

Deno.test("parseHead: UTF-8 in a header value is fine", () => {
  const head = parseHead(bytes("GET / HTTP/1.1\r\nX-Name: caf\u00e9\r\n\r\n"));
  assert.equal(head.headers.get("x-name"), "caf\u00e9");
});

// ---------------------------------------------------------------------------------------------
// Responses, byte-exact against PROTOCOL.md §1

Deno.test("httpDate: IMF-fixdate as in PROTOCOL.md", () => {
  assert.equal(
    httpDate(new Date(Date.UTC(2015, 2, 26, 7, 8, 43))),
    "Thu, 26 Mar 2015 07:08:43 GMT",
  );
  assert.equal(httpDate(new Date(Date.UTC(2015, 3, 2, 4, 5, 6))), "Thu, 02 Apr 2015 04:05:06 GMT");
  assert.match(httpDate(), /^[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT$/);
});

Deno.test("connectedHead: the 200 of PROTOCOL.md, byte for byte", () => {
  const expected = "HTTP/1.1 200 OK\r\n" +
    "Connection: keep-alive\r\n" +
    "Content-Type: text/html; charset=utf-8\r\n" +
    "Transfer-Encoding: chunked\r\n" +
    "Date: Thu, 26 Mar 2015 07:08:43 GMT\r\n" +
    "\r\n";
  assert.deepEqual(connectedHead(undefined, "Thu, 26 Mar 2015 07:08:43 GMT"), bytes(expected));
  const date = httpDate(new Date(Date.UTC(2015, 2, 26, 7, 8, 43)));
  assert.equal(decoder.decode(connectedHead(undefined, date)), expected);
  // A MessagePack stream says so (PROTOCOL.md §7).
  assert.equal(
    decoder.decode(connectedHead("application/msgpack", date)),
    expected.replace("text/html; charset=utf-8", "application/msgpack"),
  );
});

Deno.test("redirectHead: the 303 of PROTOCOL.md, byte for byte", () => {
  const expected = "HTTP/1.1 303 See Other\r\n" +
    "Location: http://192.168.2.3:9002/connect?uid=user2&password=123\r\n" +
    "Content-Length: 0\r\n" +
    "Date: Thu, 23 Apr 2015 14:32:19 GMT\r\n" +
    "\r\n";
  const location = shardLocation("192.168.2.3", 9002, "/connect", "uid=user2&password=123");
  assert.deepEqual(redirectHead(location, "Thu, 23 Apr 2015 14:32:19 GMT"), bytes(expected));
});

Deno.test("redirectHead: a 307 for a request whose body goes again, with extra headers", () => {
  const location = shardLocation("10.0.0.1", 9010, "/send", "uid=a&password=b");
  const head = redirectHead(location, "Thu, 23 Apr 2015 14:32:19 GMT", 307, "Vary: Origin\r\n");
  assert.equal(
    decoder.decode(head),
    "HTTP/1.1 307 Temporary Redirect\r\n" +
      "Location: http://10.0.0.1:9010/send?uid=a&password=b\r\n" +
      "Vary: Origin\r\n" +
      "Content-Length: 0\r\n" +
      "Date: Thu, 23 Apr 2015 14:32:19 GMT\r\n" +
      "\r\n",
  );
});

Deno.test("refusal: the 400 of PROTOCOL.md, byte for byte", () => {
  const expected = "HTTP/1.1 400 Bad Request\r\n" +
    "Content-Type: text/json; charset=utf-8\r\n" +
    "Date: Thu, 26 Mar 2015 07:10:46 GMT\r\n" +
    "Content-Length: 23\r\n" +
    "\r\n" +
    '{"error":"invalid uid"}';
  assert.deepEqual(refusal(400, "invalid uid", "Thu, 26 Mar 2015 07:10:46 GMT"), bytes(expected));
});

Deno.test("refusal: other statuses; Content-Length counts bytes, not characters", () => {
  const date = "Thu, 26 Mar 2015 07:10:46 GMT";
  const text = (status: number, reason: string) => decoder.decode(refusal(status, reason, date));
  assert.ok(text(503, "draining").startsWith("HTTP/1.1 503 Service Unavailable\r\n"));
  assert.ok(text(404, "not found").startsWith("HTTP/1.1 404 Not Found\r\n"));
  assert.ok(text(405, "x").startsWith("HTTP/1.1 405 Method Not Allowed\r\n"));
  assert.ok(text(418, "x").startsWith("HTTP/1.1 418 Error\r\n"));

  const reply = text(400, 'caf\u00e9 "q"');
  const [head, body] = reply.split("\r\n\r\n");
  assert.equal(body, '{"error":"caf\u00e9 \\"q\\""}');
  assert.deepEqual(JSON.parse(body), { error: 'caf\u00e9 "q"' });
  const length = Number(/\r\nContent-Length: (\d+)\r\n/.exec(head + "\r\n")![1]);
  assert.equal(length, bytes(body).length);
  assert.equal(length, body.length + 1); // é is two bytes
});

Deno.test("shardLocation: IPv4, names, and IPv6 in brackets", () => {
  assert.equal(
    shardLocation("10.0.0.1", 9010, "/connect", "uid=a"),
    "http://10.0.0.1:9010/connect?uid=a",
  );
  assert.equal(
    shardLocation("push.example.com", 80, "/connect", "uid=a&password=%40"),
    "http://push.example.com:80/connect?uid=a&password=%40",
  );
  assert.equal(shardLocation("::1", 9010, "/connect", "uid=a"), "http://[::1]:9010/connect?uid=a");
  assert.equal(
    shardLocation("fe80::1:2", 9011, "/connect", "uid=b&password=c"),
    "http://[fe80::1:2]:9011/connect?uid=b&password=c",
  );
});

Deno.test("wantsClose: the close token of Connection, in any case, among others", () => {
  const asked = (value?: string) =>
    wantsClose(new Map(value === undefined ? [] : [["connection", value]]));
  assert.deepEqual(
    [asked("close"), asked("Keep-Alive, Close"), asked("keep-alive"), asked("closed"), asked()],
    [true, true, false, false, false],
  );
});
