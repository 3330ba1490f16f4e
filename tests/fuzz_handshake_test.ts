/**
 * Fuzz, seeded and bounded: mutated `GET /connect` request heads (PROTOCOL.md §1,
 * docs/protocol-notes.md "Handshake") sent to the front door and to the shard ports, each on a
 * fresh TCP connection, 24 at a time. Every case is built by mutating a valid head (byte flips,
 * control bytes 0x00–0x1f and 0x7f, bare CR/LF in the request line and header values,
 * non-ASCII and invalid UTF-8, percent-escapes good and bad, odd methods, paths and versions,
 * duplicated or broken headers, truncation, heads past `--max_head_bytes`), and every answer is
 * checked against a model of the documented rules, not just for a crash:
 *
 * - the answer is one well-formed HTTP/1.1 response head (CRLF lines of printable ASCII),
 *   status 200, 303, 400, 404, 405 or 503, and the one the rules give for that head;
 * - a refusal has exactly `Content-Type: text/json; charset=utf-8`, a `Date`, a
 *   `Content-Length` equal to the body's bytes, and the body `{"error": <documented reason>}`;
 * - a head with a control byte, a bare CR, or a non-ASCII byte in its request target is
 *   `400 {"error":"malformed request"}`, never a 303 or a 200;
 * - a 303 has exactly `Location`, `Content-Length: 0` and `Date`; the Location is
 *   `http://<host>:<owner's port>/connect?<the client's query verbatim>`, all of it 0x21–0x7e;
 * - a 200 (the exact head of PROTOCOL.md) only on the shard that owns a valid uid, for GET
 *   /connect with a password; the front door never answers 200;
 * - after any other answer the server closes the connection within 5 s although the client
 *   keeps its side open, and releases the socket: a byte the client writes after the EOF is
 *   answered with a reset within 5 s (a socket the server only half-closed swallows it; the
 *   EOF alone does not show this, as a half-close sends it too).
 * - 503 (server full, draining) is allowed for any head, but for at most 2% of the cases.
 *
 * Reproduce a failure with `FUZZ_SEED=<seed>` (and `FUZZ_CASES=<n>`); the report names the
 * failing case's bytes, escaped. Bound (2 cores, 3000 cases, 20 of them fixed traps): about
 * 11 s of test time, at most ~25 s; the release check runs on every 6th case, in the
 * background, and waits at most 5 s.
 */

import assert from "node:assert/strict";
import { type Daemon, startDaemon } from "./harness.ts";
import { prng } from "../src/testing/support.ts";
import {
  bin,
  casesFromEnv,
  EOF,
  esc,
  Findings,
  fromUtf8Bin,
  HTTP_DATE,
  insertAt,
  isName,
  latin1,
  mutateBytes,
  ONE_ADDRESS_FLAGS,
  parseResponseHead,
  percentOne,
  Rand,
  ReleaseProbes,
  type ResponseHead,
  runPool,
  seedFromEnv,
  single,
  TIMEOUT,
  Wire,
} from "./fuzz_support.ts";

const SEED = seedFromEnv(0x5eed0001);
const CASES = casesFromEnv(3000);
const CONCURRENCY = 24;
const MAX_HEAD_BYTES = 1024;
/** How long the server may take to close after a refusal or a redirect. */
const CLOSE_BOUND_MS = 5000;
/** The release check (which waits for the server to let go) runs on every n-th case. */
const PROBE_EVERY = 6;

// ---------------------------------------------------------------------------------------------
// The model: what the documented rules say a head must get.

type Refusal = [number, string];

/** What a request head must be answered with. */
interface Expected {
  /** Acceptable refusals (status, reason); several where the rules leave a choice. */
  refusals: Refusal[];
  /** A valid connect: 303 to the owner, or 200 on the owner (of one of these uids). */
  admit?: { uids: string[]; query: string };
  /** The head has no end yet: the server waits for it (and times out). */
  incomplete: boolean;
  /** The head breaks the byte rules (control byte, bare CR, non-ASCII target). */
  illegalBytes: boolean;
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const MALFORMED: Refusal = [400, "malformed request"];
const TOO_LARGE: Refusal = [400, "request head too large"];
const TIMED_OUT: Refusal = [400, "request head timeout"];
/** Head lengths this close to the limit may go either way (< or <=). */
const LIMIT_SLACK = 4;

/** The length of the head through its blank line (bare LF tolerated), or -1. */
function headEnd(bytes: string): number {
  for (let i = 1; i < bytes.length; i++) {
    if (bytes[i] !== "\n") continue;
    if (bytes[i - 1] === "\n") return i + 1;
    if (bytes[i - 1] === "\r" && i >= 2 && bytes[i - 2] === "\n") return i + 1;
  }
  return -1;
}

/** A control byte other than the line ends' CR LF (and TAB in header values), or 0x7f. */
function lineDefect(line: string, first: boolean): string | undefined {
  if (line.includes("\r")) return "a bare CR";
  for (const char of line) {
    const c = char.charCodeAt(0);
    if ((c < 0x20 && (first || c !== 0x09)) || c === 0x7f) return "a control byte";
  }
  if (first && /[\x80-\xff]/.test(line)) return "a non-ASCII byte in the request line";
  return undefined;
}

/** The head's lines (the blank line dropped, one trailing CR of each line stripped). */
function headLines(head: string): string[] {
  const lines = head.split("\n");
  if (lines.at(-1) === "") lines.pop();
  if (lines.at(-1) === "" || lines.at(-1) === "\r") lines.pop();
  return lines.map((line) => line.endsWith("\r") ? line.slice(0, -1) : line);
}

/** Percent-decoding (RFC 3986, UTF-8): the text, "syntax" for a bad escape, "utf8" for bad bytes. */
function percentDecode(text: string): { ok: string } | "syntax" | "utf8" {
  if (/%(?![0-9A-Fa-f]{2})/.test(text)) return "syntax";
  const bytes = text.replace(
    /%([0-9A-Fa-f]{2})/g,
    (_, hex) => String.fromCharCode(parseInt(hex, 16)),
  );
  const decoded = fromUtf8Bin(bytes);
  return decoded === undefined ? "utf8" : { ok: decoded };
}

/** The documented answer for `request` (the bytes the client sends, as a binary string). */
function expect(request: string): Expected {
  const end = headEnd(request);
  if (end < 0) {
    const refusals: Refusal[] = [];
    if (request.length > MAX_HEAD_BYTES - LIMIT_SLACK) refusals.push(TOO_LARGE);
    if (request.length <= MAX_HEAD_BYTES + LIMIT_SLACK) refusals.push(TIMED_OUT);
    const lines = request.replace(/\r$/, "").split("\n").map((l) => l.replace(/\r$/, ""));
    const defect = lines.some((line, i) => lineDefect(line, i === 0));
    if (defect) refusals.push(MALFORMED);
    return { refusals, incomplete: true, illegalBytes: defect };
  }
  const head = request.slice(0, end);
  const nearLimit: Refusal[] = end > MAX_HEAD_BYTES - LIMIT_SLACK ? [TOO_LARGE] : [];
  const lines = headLines(head);
  const illegalBytes = lines.some((line, i) => lineDefect(line, i === 0) !== undefined);
  const done = (result: Omit<Expected, "incomplete" | "illegalBytes">): Expected => {
    if (end > MAX_HEAD_BYTES + LIMIT_SLACK) {
      return {
        refusals: illegalBytes ? [TOO_LARGE, MALFORMED] : [TOO_LARGE],
        incomplete: false,
        illegalBytes,
      };
    }
    return {
      refusals: [...nearLimit, ...result.refusals],
      admit: result.admit,
      incomplete: false,
      illegalBytes,
    };
  };
  if (illegalBytes) return done({ refusals: [MALFORMED] });
  const parts = lines[0].split(" ");
  const [method, target, version] = parts;
  if (
    parts.length !== 3 || !TOKEN.test(method) || !/^\/[\x21-\x7e]*$/.test(target) ||
    !/^HTTP\/1\.[01]$/.test(version)
  ) {
    return done({ refusals: [MALFORMED] });
  }
  // Non-ASCII header values (obs-text) may be refused as malformed or ignored; so may a
  // fragment in the target, which a request target should not carry (RFC 9112 §3.2).
  const alternatives: Refusal[] = [];
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    if (colon <= 0 || !TOKEN.test(line.slice(0, colon))) return done({ refusals: [MALFORMED] });
    if (/[\x80-\xff]/.test(line)) alternatives.push(MALFORMED);
  }
  if (target.includes("#")) alternatives.push(MALFORMED);
  const mark = target.indexOf("?");
  const rawPath = mark < 0 ? target : target.slice(0, mark);
  const query = mark < 0 ? "" : target.slice(mark + 1);
  const pairs: [string, string][] = [];
  const decode = (text: string): string | undefined => {
    const decoded = percentDecode(text);
    if (decoded === "syntax") return undefined;
    // Escapes of bytes that are not UTF-8 may be refused, or decoded to something else.
    if (decoded === "utf8") alternatives.push(MALFORMED);
    return typeof decoded === "object" ? decoded.ok : "\ufffd";
  };
  const path = decode(rawPath);
  if (path === undefined) return done({ refusals: [MALFORMED] });
  for (const pair of query.split("&")) {
    if (pair === "") continue;
    const eq = pair.indexOf("=");
    const name = decode(eq < 0 ? pair : pair.slice(0, eq));
    const value = eq < 0 ? "" : decode(pair.slice(eq + 1));
    if (name === undefined || value === undefined) return done({ refusals: [MALFORMED] });
    pairs.push([name, value]);
  }
  if (path !== "/connect") {
    const refusals: Refusal[] = [...alternatives, [404, "not found"]];
    if (method !== "GET") refusals.push([405, "method not allowed"]);
    return done({ refusals });
  }
  if (method !== "GET") return done({ refusals: [...alternatives, [405, "method not allowed"]] });
  // The first of a repeated name wins today; the contract is silent, so the last may too.
  const outcomes = [pairs, [...pairs].reverse()].map((ordered) => {
    const params = new Map<string, string>();
    for (const [name, value] of ordered) if (!params.has(name)) params.set(name, value);
    const uid = params.get("uid");
    if (!isName(uid)) return { refusal: [400, "invalid uid"] as Refusal };
    const device = params.get("device") ?? "";
    if (device !== "" && !isName(device)) return { refusal: [400, "invalid device"] as Refusal };
    const since = params.get("since") ?? "";
    if (!/^(\d{1,16})?$/.test(since) || !Number.isSafeInteger(Number(since))) {
      return { refusal: [400, "invalid since"] as Refusal };
    }
    const codec = params.get("codec") ?? "";
    if (!["", "json", "msgpack"].includes(codec)) {
      return { refusal: [400, "invalid codec"] as Refusal };
    }
    if (!params.has("password")) return { refusal: [400, "missing password"] as Refusal };
    return { uid };
  });
  const refusals = [...alternatives];
  const uids: string[] = [];
  for (const outcome of outcomes) {
    if (outcome.refusal) refusals.push(outcome.refusal);
    else uids.push(outcome.uid!);
  }
  return done({
    refusals,
    admit: uids.length > 0 ? { uids: [...new Set(uids)], query } : undefined,
  });
}

// ---------------------------------------------------------------------------------------------
// Generation: valid heads, then mutations.

const NAME_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.@-";
const PASSWORD_CHARS =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$'()*,;:@/";

interface Parts {
  method: string;
  path: string;
  query: string;
  version: string;
  /** Header lines as sent (without their line end). */
  headers: string[];
  eol: string;
  /** Bytes after the head (pipelined). */
  after: string;
}

function validParts(r: Rand, port: number): Parts {
  const uid = r.chance(0.3)
    ? r.pick(["user001", "a", "a.b@c-d_e", "U".repeat(64), "x-1", "@", "9"])
    : r.text(NAME_CHARS, r.range(1, 20));
  const password = r.text(PASSWORD_CHARS, r.range(0, 16));
  let query = r.pick([
    `uid=${uid}&password=${password}`,
    `password=${password}&uid=${uid}`,
    `uid=${uid}&password=${password}&device=d${r.int(9)}`,
    `x=${r.int(99)}&uid=${uid}&&password=${password}`,
    `uid=${uid}&password`,
    `uid=${uid}&password=${password}&codec=json`,
  ]);
  if (r.chance(0.25)) query = percentOne(r, query);
  const headers: string[] = [];
  if (r.chance(0.6)) headers.push(`Host: 127.0.0.1:${port}`);
  if (r.chance(0.6)) headers.push("User-Agent: mobile_socket_client/0.1.0");
  if (r.chance(0.6)) headers.push("Accept: */*");
  if (r.chance(0.2)) headers.push(`X-Trace: ${r.text(NAME_CHARS, r.range(0, 30))}`);
  return {
    method: "GET",
    path: "/connect",
    query,
    version: "HTTP/1.1",
    headers,
    eol: "\r\n",
    after: "",
  };
}

function serialize(p: Parts): string {
  const target = p.query === "" && !p.path.includes("?") ? p.path : `${p.path}?${p.query}`;
  let head = `${p.method} ${target} ${p.version}${p.eol}`;
  for (const line of p.headers) head += `${line}${p.eol}`;
  return head + p.eol + p.after;
}

const INJECTIONS = [
  "\r\nSet-Cookie: evil=1",
  "\rSet-Cookie:evil=1",
  "\nSet-Cookie:evil=1",
  "\r\n\r\nHTTP/1.1 200 OK",
  "\x00",
  "\t",
  "\x1b[31m",
  "\x7f",
  "\x0b",
  "\x0c",
];
const BAD_ESCAPES = ["%", "%g1", "%c3", "%ed%a0%80", "%0", "%zz", "%%", "%ff", "%C3%28"];
const GOOD_ESCAPES = ["%0d%0a", "%00", "%20", "%2B", "%41", "%c3%a9", "%2F", "%3F", "%23"];

/** Mutations on the head's parts (which may then be mutated as bytes too). */
const partMutations: ((r: Rand, p: Parts) => void)[] = [
  (r, p) => {
    p.method = r.pick([
      "POST",
      "get",
      "HEAD",
      "PUT",
      "TRACE",
      "CONNECT",
      "GETGET",
      "G\x00ET",
      "\x7fGET",
      "GE T",
      "",
      "GET\t",
      "G\xc3\xa9T",
      "X".repeat(40),
      "DELETE",
    ]);
  },
  (r, p) => {
    p.version = r.pick([
      "HTTP/1.0",
      "HTTP/1.2",
      "HTTP/2",
      "HTTP/1.1 ",
      "http/1.1",
      "HTTP/1.1\x00",
      "HTTP/1",
      "",
      "HTTP/1.1\r",
      "HTTP/01.1",
      "HTTP/1.1\x0b",
      "HTTP/1.\xb1",
    ]);
  },
  (r, p) => {
    p.path = r.pick([
      "/connect/",
      "/CONNECT",
      "//connect",
      "/conn%65ct",
      "/connect%00",
      "/",
      "/index.html",
      "*",
      "/connect;x",
      "/conn\x01ect",
      "/con%zzect",
      "/connect%2F",
      "/\xc3\xa9",
      "/connect\x80",
      "connect",
      "/connect#x",
      "/shards",
    ]);
  },
  // an injection or a control byte inside the query (the request target)
  (r, p) => {
    p.query = insertAt(
      p.query,
      r.int(p.query.length + 1),
      r.chance(0.7) ? r.pick(INJECTIONS) : r.control(),
    );
  },
  // a non-ASCII byte (or valid UTF-8) inside the query
  (r, p) => {
    p.query = insertAt(
      p.query,
      r.int(p.query.length + 1),
      r.pick([r.high(), "\xc3\xa9", "\xf0\x9f\x98\x80", "\xff\xfe"]),
    );
  },
  (r, p) => {
    p.query = insertAt(p.query, r.int(p.query.length + 1), r.pick(BAD_ESCAPES));
  },
  (r, p) => {
    p.query = insertAt(p.query, r.int(p.query.length + 1), r.pick(GOOD_ESCAPES));
  },
  (r, p) => {
    p.query = percentOne(r, p.query);
  },
  (r, p) => {
    p.query = r.pick([
      `uid=${"u".repeat(65)}&password=x`,
      "uid=&password=x",
      "password=x",
      "uid=a%20b&password=x",
      "uid=a+b&password=x",
      "uid=bad!&uid=good&password=x",
      "uid=good&uid=bad!&password=x",
      "uid=good",
      "uid=ok&password=x#frag",
      "uid=ok&password=x&uid=",
      "UID=ok&password=x",
      "%75id=ok&password=x",
      "uid=ok&%70assword=",
      "uid=%E2%82%AC&password=x",
      "",
    ]);
  },
  // a header whose value holds a control byte, a bare CR, LF or an injection
  (r, p) => {
    const value = insertAt(
      r.text(NAME_CHARS, 8),
      r.int(9),
      r.chance(0.5) ? r.pick(INJECTIONS) : r.control(),
    );
    p.headers.splice(r.int(p.headers.length + 1), 0, `X-Fuzz: ${value}`);
  },
  (r, p) => {
    p.headers.splice(
      r.int(p.headers.length + 1),
      0,
      `X-Fuzz: a${r.pick([r.high(), "\xc3\xa9", "\t"])}b`,
    );
  },
  // broken header lines
  (r, p) => {
    const line = r.pick([
      "no colon",
      " folded: x",
      "Bad Name: x",
      ": empty",
      "X-A :b",
      "\tX: y",
      "X-\x00: y",
      "Host:",
      "X:\x01",
    ]);
    p.headers.splice(r.int(p.headers.length + 1), 0, line);
  },
  (_r, p) => {
    p.headers.push("Host: evil.example", "Host: 127.0.0.1");
  },
  (_r, p) => {
    p.eol = "\n"; // bare LF line ends are tolerated
  },
  // a head past --max_head_bytes
  (r, p) => {
    p.headers.push(`X-Pad: ${"p".repeat(r.range(MAX_HEAD_BYTES - 120, MAX_HEAD_BYTES + 400))}`);
  },
  (r, p) => {
    p.query += "&pad=" + "q".repeat(r.range(MAX_HEAD_BYTES - 100, MAX_HEAD_BYTES * 2));
  },
  (r, p) => {
    p.after = r.pick([
      '7\r\n{"y":0}\r\n',
      "GET / HTTP/1.1\r\n\r\n",
      "\x00\x01\x02",
      "0\r\n\r\n",
      "zz\r\n",
    ]);
  },
  (r, p) => {
    p.query = p.query.replace("&", r.pick([" ", "  ", "&&", ";"]));
  },
];

interface Case {
  id: number;
  port: number;
  portName: string;
  bytes: string;
}

/**
 * Known traps, sent first to the front door and to shard 0 whatever the seed: the bytes that
 * break a 303's head if copied into its Location, and their harmless percent-encoded forms.
 */
const TRAPS = [
  "GET /connect?uid=trap1&password=x\rSet-Cookie:evil=1 HTTP/1.1\r\n\r\n",
  "GET /connect?uid=trap1&password=x\x01y HTTP/1.1\r\n\r\n",
  "GET /connect?uid=trap1&password=x\ty HTTP/1.1\r\n\r\n",
  "GET /connect?uid=trap1&password=x\x7fy HTTP/1.1\r\n\r\n",
  "GET /connect?uid=trap1&password=\xc3\xa9 HTTP/1.1\r\n\r\n",
  "GET /connect?uid=trap1&password=\xff HTTP/1.1\r\n\r\n",
  "GET /connect?uid=trap1&password=x HTTP/1.1\r\nX-A: a\rSet-Cookie: evil=1\r\n\r\n",
  "GET /connect?uid=trap1&password=x HTTP/1.1\r\nX-A: a\x00b\r\n\r\n",
  "GET /connect?uid=trap1&password=x%0D%0ASet-Cookie:%20evil=1 HTTP/1.1\r\n\r\n",
  "GET /connect?uid=trap1&password=%C3%A9%01 HTTP/1.1\r\n\r\n",
];

function generate(seed: number, count: number, daemon: Daemon): Case[] {
  const r = new Rand(prng(seed));
  const cases: Case[] = [];
  for (const bytes of TRAPS) {
    cases.push({ id: cases.length, port: daemon.clientPort, portName: "front door", bytes });
    cases.push({ id: cases.length, port: daemon.shardPorts[0], portName: "shard 0", bytes });
  }
  for (let id = cases.length; id < count; id++) {
    const toShard = r.chance(0.5);
    const shard = r.int(daemon.shardPorts.length);
    const port = toShard ? daemon.shardPorts[shard] : daemon.clientPort;
    const portName = toShard ? `shard ${shard}` : "front door";
    const parts = validParts(r, port);
    const structural = r.chance(0.1) ? 0 : r.range(1, 3);
    for (let k = 0; k < structural; k++) r.pick(partMutations)(r, parts);
    let bytes = serialize(parts);
    if (r.chance(0.3)) {
      // Byte mutations land in the request line or the headers, not in the blank line
      // (losing it makes a head that waits out the handshake timeout; kept rare below).
      const end = headEnd(bytes);
      const head = end < 0 ? bytes : bytes.slice(0, end - 2);
      bytes = mutateBytes(r, head) + (end < 0 ? "" : bytes.slice(end - 2));
    }
    if (r.chance(0.02)) bytes = bytes.slice(0, r.int(bytes.length)); // truncated
    if (bytes.length === 0) bytes = "G";
    cases.push({ id, port, portName, bytes });
  }
  return cases;
}

// ---------------------------------------------------------------------------------------------
// Checking one answer.

const RULE = {
  answer: "H1 every answer is one complete HTTP/1.1 response head, status 200/303/400/404/405/503",
  head: "H2 the response head is well formed: CRLF lines of printable ASCII, no extra header lines",
  status: "H3 the status and reason are the ones the rules give for the request",
  bytes:
    "H4 a control byte or bare CR in the request line or a header, or a non-ASCII byte in the request target, is 400 malformed request, never 303/200",
  refusal:
    'H5 a refusal has Content-Type text/json; charset=utf-8, Date, Content-Length = body bytes, body {"error": reason}',
  redirect:
    "H6 a 303 has exactly Location, Content-Length: 0, Date; Location is http://host:owner-port/connect?<query verbatim>, bytes 0x21-0x7e",
  ok: "H7 a 200 is the exact head of PROTOCOL.md, only on the shard that owns the uid",
  closed:
    "H8 after a non-200 answer the server closes within 5 s while the client keeps its side open",
  released:
    "H9 after a non-200 answer the server releases the socket (a write after EOF is reset) within 5 s",
};

const REASONS = new Map<number, string[]>([
  [400, [
    "malformed request",
    "request head too large",
    "request head timeout",
    "invalid uid",
    "invalid device",
    "invalid codec",
    "invalid since",
    "missing password",
    "invalid password",
  ]],
  [404, ["not found"]],
  [405, ["method not allowed"]],
  [503, ["draining", "server full", "auth unavailable", "storage unavailable"]],
]);

/** The 200 head; a MessagePack stream (`codec=msgpack`) says so in its Content-Type. */
const OK_HEAD =
  /^HTTP\/1\.1 200 OK\r\nConnection: keep-alive\r\nContent-Type: (text\/html; charset=utf-8|application\/msgpack)\r\nTransfer-Encoding: chunked\r\nDate: [^\r\n]+\r\n\r\n$/;

/** Answers with status 503 (server full, draining): allowed, but not for many cases. */
let unavailable = 0;
/** Answers by status (and reason), for the run's summary line. */
const tally = new Map<string, number>();

async function runCase(
  c: Case,
  findings: Findings,
  ownerPort: (uid: string) => Promise<number>,
  probes: ReleaseProbes,
): Promise<void> {
  const expected = expect(c.bytes);
  const id = `case #${c.id} (${c.portName})`;
  const fail = (rule: string, detail: string) => findings.fail(rule, id, c.bytes, detail);
  const wire = await Wire.open(c.port);
  let kept = false;
  try {
    await wire.write(c.bytes);
    const readBound = expected.incomplete ? 4000 : 5000;
    const raw = await wire.readHead(Date.now() + readBound);
    findings.checked(RULE.answer);
    if (typeof raw === "string") {
      fail(
        RULE.answer,
        `no response head within ${readBound} ms (${raw}); got ${esc(wire.buffered)}`,
      );
      return;
    }
    const head = parseResponseHead(raw);
    tally.set(String(head.status), (tally.get(String(head.status)) ?? 0) + 1);
    findings.checked(RULE.head);
    if (head.problems.length > 0) fail(RULE.head, `${head.problems.join("; ")}; head ${esc(raw)}`);
    if (![200, 303, 400, 404, 405, 503].includes(head.status)) {
      fail(RULE.answer, `status ${head.status}: ${esc(raw)}`);
      return;
    }
    findings.checked(expected.illegalBytes ? RULE.bytes : RULE.status);
    if (head.status === 200) return await checkOk(c, expected, raw, head, fail, ownerPort);
    if (head.status === 303) await checkRedirect(c, expected, raw, head, fail, ownerPort);
    else await checkRefusal(wire, expected, raw, head, fail);
    kept = await checkClose(c, wire, raw, findings, fail, probes);
  } finally {
    if (!kept) wire.close();
  }
}

type Fail = (rule: string, detail: string) => void;

async function checkOk(
  c: Case,
  expected: Expected,
  raw: Uint8Array,
  _head: ResponseHead,
  fail: Fail,
  ownerPort: (uid: string) => Promise<number>,
): Promise<void> {
  const text = latin1(raw);
  if (!OK_HEAD.test(text) || !HTTP_DATE.test(/Date: ([^\r\n]+)/.exec(text)?.[1] ?? "")) {
    fail(RULE.ok, `200 head differs from PROTOCOL.md's: ${esc(raw)}`);
  }
  if (!expected.admit) {
    fail(ruleFor(expected), `answered 200, expected ${describe(expected)}: ${esc(raw)}`);
    return;
  }
  if (c.portName === "front door") {
    fail(RULE.ok, `the front door answered 200 (it owns no uids): ${esc(raw)}`);
    return;
  }
  const owners = await Promise.all(expected.admit.uids.map(ownerPort));
  if (!owners.includes(c.port)) {
    fail(RULE.ok, `200 for uid ${expected.admit.uids} on port ${c.port}, owner is ${owners}`);
  }
}

async function checkRedirect(
  c: Case,
  expected: Expected,
  raw: Uint8Array,
  head: ResponseHead,
  fail: Fail,
  ownerPort: (uid: string) => Promise<number>,
): Promise<void> {
  const names = head.headers.map((h) => h.name).sort().join(",");
  const location = single(head, "location");
  if (names !== "content-length,date,location" || single(head, "content-length") !== "0") {
    fail(
      RULE.redirect,
      `303 headers are not exactly Location, Content-Length: 0, Date: ${esc(raw)}`,
    );
  }
  const date = single(head, "date");
  if (typeof date !== "string" || !HTTP_DATE.test(date)) {
    fail(RULE.redirect, `303 Date: ${esc(raw)}`);
  }
  if (!expected.admit) {
    fail(ruleFor(expected), `answered 303, expected ${describe(expected)}: ${esc(raw)}`);
    return;
  }
  if (typeof location !== "string") return;
  // The Location line exactly as sent (a bare CR or LF inside it stays in it).
  const line = latin1(raw).split("\r\n").find((l) => /^location:/i.test(l)) ?? "";
  const rawLocation = line.slice(line.indexOf(":") + 1).replace(/^ /, "");
  if (!/^http:\/\/[^\s/]+:\d+\/connect\?[\x21-\x7e]*$/.test(rawLocation)) {
    fail(RULE.redirect, `Location ${esc(rawLocation)} is not http://host:port/connect?<0x21-0x7e>`);
  }
  const owners = await Promise.all(expected.admit.uids.map(ownerPort));
  const wanted = owners.map((port) => `http://127.0.0.1:${port}/connect?${expected.admit!.query}`);
  if (!wanted.includes(rawLocation)) {
    fail(RULE.redirect, `Location ${esc(rawLocation)}, expected ${wanted.map((w) => esc(w))}`);
  }
  if (owners.length === 1 && owners[0] === c.port) {
    fail(RULE.ok, `the owning shard redirected uid ${expected.admit.uids[0]}`);
  }
}

async function checkRefusal(
  wire: Wire,
  expected: Expected,
  raw: Uint8Array,
  head: ResponseHead,
  fail: Fail,
): Promise<void> {
  const names = head.headers.map((h) => h.name).filter((n) => n !== "connection").sort().join(",");
  const type = single(head, "content-type");
  const date = single(head, "date");
  const length = single(head, "content-length");
  if (names !== "content-length,content-type,date") {
    fail(
      RULE.refusal,
      `refusal headers are not exactly Content-Type, Date, Content-Length: ${esc(raw)}`,
    );
  }
  if (type !== "text/json; charset=utf-8") fail(RULE.refusal, `Content-Type: ${esc(raw)}`);
  if (typeof date !== "string" || !HTTP_DATE.test(date)) fail(RULE.refusal, `Date: ${esc(raw)}`);
  if (typeof length !== "string" || !/^\d{1,6}$/.test(length)) {
    fail(RULE.refusal, `Content-Length: ${esc(raw)}`);
    return;
  }
  const body = await wire.readBytes(Number(length), Date.now() + 2000);
  if (typeof body === "string") {
    fail(
      RULE.refusal,
      `body shorter than Content-Length ${length}: ${esc(wire.buffered)} (${body})`,
    );
    return;
  }
  let reason: unknown;
  try {
    const value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(body));
    if (Object.keys(value).join() !== "error" || typeof value.error !== "string") throw new Error();
    reason = value.error;
  } catch {
    fail(RULE.refusal, `body is not {"error": string}: ${esc(body)}`);
    return;
  }
  if (!REASONS.get(head.status)?.includes(reason as string)) {
    fail(RULE.refusal, `status ${head.status} with an undocumented reason ${esc(String(reason))}`);
  }
  if (head.status === 503) { // the server may be full or draining whatever the request
    unavailable++;
    return;
  }
  const ok = expected.refusals.some(([s, why]) => s === head.status && why === reason);
  if (!ok) {
    fail(
      ruleFor(expected),
      `answered ${head.status} ${JSON.stringify(reason)}, expected ${describe(expected)}`,
    );
  }
}

/**
 * After a non-200 answer: EOF within the bound although the client keeps its side open; on
 * every {@linkcode PROBE_EVERY}-th case, in the background, the socket is released too.
 * Returns true when the wire went to the probes (which close it).
 */
async function checkClose(
  c: Case,
  wire: Wire,
  raw: Uint8Array,
  findings: Findings,
  fail: Fail,
  probes: ReleaseProbes,
): Promise<boolean> {
  findings.checked(RULE.closed);
  const ended = await wire.waitEof(Date.now() + CLOSE_BOUND_MS);
  if (ended === TIMEOUT) {
    fail(RULE.closed, `still open ${CLOSE_BOUND_MS} ms after ${esc(raw.subarray(0, 40))}...`);
    return false;
  }
  if (ended !== EOF) {
    fail(RULE.closed, `bytes after the answer: ${esc(ended)}`);
    return false;
  }
  if (c.id % PROBE_EVERY !== 0) return false;
  findings.checked(RULE.released);
  probes.add(wire, (released) => {
    if (released) return;
    fail(
      RULE.released,
      `EOF came, but ${CLOSE_BOUND_MS} ms later the server still holds the socket half open ` +
        `(writes after EOF are taken, not reset) after ${esc(raw.subarray(0, 40))}...`,
    );
  });
  return true;
}

/** A wrong answer to a head with illegal bytes breaks H4; any other wrong answer H3. */
function ruleFor(expected: Expected): string {
  return expected.illegalBytes ? RULE.bytes : RULE.status;
}

function describe(expected: Expected): string {
  const refusals = expected.refusals.map(([s, r]) => `${s} ${JSON.stringify(r)}`);
  if (expected.admit) refusals.push(`303/200 for uid ${expected.admit.uids.join(" or ")}`);
  return refusals.join(" or ");
}

// ---------------------------------------------------------------------------------------------

Deno.test("fuzz: mutated request heads on the front door and the shards", async () => {
  const daemon = await startDaemon([
    ...ONE_ADDRESS_FLAGS,
    `--max_head_bytes=${MAX_HEAD_BYTES}`,
    "--handshake_timeout_sec=1",
  ]);
  const findings = new Findings(
    `fuzz_handshake (${CASES} cases)`,
    SEED,
    `FUZZ_SEED=${SEED} FUZZ_CASES=${CASES} deno test --allow-all tests/fuzz_handshake_test.ts`,
  );
  const owners = new Map<string, Promise<number>>();
  const ownerPort = (uid: string) => {
    let owner = owners.get(uid);
    if (!owner) {
      owner = daemon.admin(`/shard?uid=${encodeURIComponent(uid)}`).then(({ body }) =>
        Number(String(body.result).split(":").at(-1))
      );
      owners.set(uid, owner);
    }
    return owner;
  };
  try {
    const cases = generate(SEED, CASES, daemon);
    const probes = new ReleaseProbes(CLOSE_BOUND_MS);
    await runPool(cases, CONCURRENCY, (c) => runCase(c, findings, ownerPort, probes));
    await probes.settle();
    console.log(
      `fuzz_handshake: seed ${SEED}, ${cases.length} cases, answers by status ${
        JSON.stringify(Object.fromEntries([...tally].sort()))
      }, ${probes.size} release probes`,
    );
    if (unavailable > cases.length / 50) {
      findings.fail(
        RULE.status,
        "the run",
        "",
        `${unavailable} of ${cases.length} cases were answered 503 (at most 2% may be)`,
      );
    }
    // The model itself must be sane: the unmutated head of PROTOCOL.md is admitted.
    assert.ok(
      expect(latin1(bin("GET /connect?uid=user001&password=pwd001 HTTP/1.1\r\n\r\n"))).admit,
      "the model admits PROTOCOL.md's own example",
    );
  } finally {
    assert.equal(await daemon.stop(), 0, "the daemon exits cleanly after the fuzz run");
  }
  findings.assertNone();
});
