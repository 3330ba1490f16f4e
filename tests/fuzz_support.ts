/**
 * Shared parts of the seeded fuzz tests (`fuzz_*_test.ts`): a byte-exact TCP client, a strict
 * reader of response heads and chunks, random mutation helpers over binary strings, a JSON
 * scanner that keeps members' raw text, a bounded worker pool, and {@linkcode Findings}, which
 * collects rule violations with the first and the shortest reproducing case of each rule.
 *
 * Cases are binary strings: one character per byte (char codes 0–255), so that any byte,
 * including invalid UTF-8, can be written, escaped and compared exactly.
 *
 * @module
 */

import assert from "node:assert/strict";

const utf8 = new TextEncoder();

/**
 * Daemon flags every fuzz test starts with. All its clients come from 127.0.0.1, and on a fast
 * box they send more heads a second than one address may (`--max_heads_per_sec_per_address`,
 * 429); that limit is `limits_test.ts`'s subject, not the fuzzers'.
 */
export const ONE_ADDRESS_FLAGS = [
  "--max_heads_per_sec_per_address=1000000",
  "--max_handshakes_per_address=100000",
];

/** The bytes of a binary string (each char code is one byte). */
export function bin(text: string): Uint8Array {
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i) & 0xff;
  return bytes;
}

/** The binary string of some bytes. */
export function latin1(bytes: Uint8Array): string {
  let text = "";
  for (let i = 0; i < bytes.length; i += 4096) {
    text += String.fromCharCode(...bytes.subarray(i, i + 4096));
  }
  return text;
}

/** The binary string of a text's UTF-8 encoding. */
export function utf8Bin(text: string): string {
  return latin1(utf8.encode(text));
}

/** A text decoded from a binary string holding UTF-8; undefined if it is not valid UTF-8. */
export function fromUtf8Bin(text: string): string | undefined {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bin(text));
  } catch {
    return undefined;
  }
}

/** A binary string escaped for a failure message: printable ASCII as is, the rest `\xNN`. */
export function esc(data: string | Uint8Array, max = 700): string {
  const text = typeof data === "string" ? data : latin1(data);
  let out = "";
  for (let i = 0; i < text.length && i < max; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x5c) out += "\\\\";
    else if (c === 0x22) out += '\\"';
    else if (c === 0x0d) out += "\\r";
    else if (c === 0x0a) out += "\\n";
    else if (c === 0x09) out += "\\t";
    else if (c >= 0x20 && c < 0x7f) out += text[i];
    else out += `\\x${c.toString(16).padStart(2, "0")}`;
  }
  if (text.length > max) out += `...(${text.length} bytes in all)`;
  return `"${out}"`;
}

/** The uid and channel id rule (docs/protocol-notes.md). */
export const NAME = /^[A-Za-z0-9_.@-]{1,64}$/;

/** True when `value` is a valid uid or channel id. */
export function isName(value: unknown): value is string {
  return typeof value === "string" && NAME.test(value);
}

/** IMF-fixdate, as HTTP's `Date` header. */
export const HTTP_DATE =
  /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT$/;

// ---------------------------------------------------------------------------------------------
// Randomness

/** Helpers over a seeded PRNG (`prng` of support.ts). */
export class Rand {
  constructor(readonly next: () => number) {}
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  /** An integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  /** True with probability p. */
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }
  /** A random string of `length` characters from `alphabet`. */
  text(alphabet: string, length: number): string {
    let out = "";
    for (let i = 0; i < length; i++) out += alphabet[this.int(alphabet.length)];
    return out;
  }
  /** A control byte: 0x00–0x1f or 0x7f. */
  control(): string {
    const c = this.int(33);
    return String.fromCharCode(c === 32 ? 0x7f : c);
  }
  /** A byte that is not ASCII (0x80–0xff). */
  high(): string {
    return String.fromCharCode(0x80 + this.int(128));
  }
}

/** `text` with `insert` at `at`. */
export function insertAt(text: string, at: number, insert: string): string {
  return text.slice(0, at) + insert + text.slice(at);
}

/** Byte-level mutations of a binary string; each returns the mutated string. */
export const byteMutations: ((r: Rand, text: string) => string)[] = [
  // flip one bit of one byte
  (r, t) => {
    if (t.length === 0) return t;
    const at = r.int(t.length);
    return t.slice(0, at) + String.fromCharCode(t.charCodeAt(at) ^ (1 << r.int(8))) +
      t.slice(at + 1);
  },
  // insert a control byte
  (r, t) => insertAt(t, r.int(t.length + 1), r.control()),
  // insert a byte that is not ASCII
  (r, t) => insertAt(t, r.int(t.length + 1), r.high()),
  // delete one byte
  (r, t) => {
    const at = r.int(Math.max(1, t.length));
    return t.slice(0, at) + t.slice(at + 1);
  },
  // duplicate a segment
  (r, t) => {
    const from = r.int(t.length + 1);
    const to = Math.min(t.length, from + r.range(1, 12));
    return t.slice(0, to) + t.slice(from, to) + t.slice(to);
  },
  // replace one byte with any byte
  (r, t) => {
    if (t.length === 0) return t;
    const at = r.int(t.length);
    return t.slice(0, at) + String.fromCharCode(r.int(256)) + t.slice(at + 1);
  },
  // insert CR, LF or CRLF
  (r, t) => insertAt(t, r.int(t.length + 1), r.pick(["\r", "\n", "\r\n"])),
];

/** One random byte-level mutation. */
export function mutateBytes(r: Rand, text: string): string {
  return r.pick(byteMutations)(r, text);
}

/** Percent-encodes one random character of `text` (in `[from, text.length)`). */
export function percentOne(r: Rand, text: string, from = 0): string {
  if (text.length <= from) return text;
  const at = r.range(from, text.length - 1);
  const code = text.charCodeAt(at);
  const hex = code.toString(16).padStart(2, "0");
  return text.slice(0, at) + "%" + (r.chance(0.5) ? hex.toUpperCase() : hex) + text.slice(at + 1);
}

// ---------------------------------------------------------------------------------------------
// Findings

interface Example {
  caseId: string;
  input: string;
  detail: string;
}

/** A case's number, from `case #N` in its id (others sort last). */
function order(example: Example): number {
  const match = /#(\d+)/.exec(example.caseId);
  return match ? Number(match[1]) : Number.MAX_SAFE_INTEGER;
}

interface RuleRecord {
  count: number;
  first: Example;
  shortest: Example;
}

/**
 * Rule violations found in a run. Each rule keeps its count, its first case and its shortest
 * case (the best minimal reproduction), so one run reports every broken rule at once.
 */
export class Findings {
  #rules = new Map<string, RuleRecord>();
  #checked = new Map<string, number>();
  #all: (Example & { rule: string })[] = [];

  constructor(readonly title: string, readonly seed: number, readonly env: string) {}

  /** Counts a check of `rule` (for the report). */
  checked(rule: string): void {
    this.#checked.set(rule, (this.#checked.get(rule) ?? 0) + 1);
  }

  /**
   * Records a violation of `rule` by `input` (bytes as sent). The rule keeps its lowest
   * numbered case (`case #N` in `caseId`) as "first" and its shortest input, so the report
   * does not depend on which of the concurrent cases finished first.
   */
  fail(rule: string, caseId: string, input: string | Uint8Array, detail: string): void {
    const text = typeof input === "string" ? input : latin1(input);
    const example = { caseId, input: text, detail };
    this.#all.push({ rule, ...example });
    const record = this.#rules.get(rule);
    if (!record) {
      this.#rules.set(rule, { count: 1, first: example, shortest: example });
      return;
    }
    record.count++;
    if (order(example) < order(record.first)) record.first = example;
    const shorter = text.length - record.shortest.input.length;
    if (shorter < 0 || (shorter === 0 && order(example) < order(record.shortest))) {
      record.shortest = example;
    }
  }

  /** Violations of `rule` so far. */
  count(rule: string): number {
    return this.#rules.get(rule)?.count ?? 0;
  }

  /** The broken rules, sorted. */
  rules(): string[] {
    return [...this.#rules.keys()].sort();
  }

  /** A readable report of every broken rule. */
  report(): string {
    const lines = [
      `${this.title}: ${this.#rules.size} rule(s) broken (seed ${this.seed}; ` +
      `reproduce with ${this.env})`,
    ];
    for (const rule of this.rules()) {
      const record = this.#rules.get(rule)!;
      const checks = this.#checked.get(rule);
      lines.push(
        `\n* ${rule}\n  ${record.count} case(s) failed${checks ? ` of ${checks} checked` : ""}`,
      );
      const show = (label: string, e: Example) =>
        lines.push(`  ${label} ${e.caseId}: sent ${esc(e.input)}\n    -> ${e.detail}`);
      show("first (lowest case number)", record.first);
      if (record.shortest !== record.first) show("shortest", record.shortest);
    }
    return lines.join("\n");
  }

  /**
   * Fails the test with the report if any rule was broken. With `FUZZ_DUMP=<file>` set, every
   * violation is first written there, one JSON object a line (for triage).
   */
  assertNone(): void {
    const dump = Deno.env.get("FUZZ_DUMP");
    if (dump) {
      Deno.writeTextFileSync(dump, this.#all.map((e) => JSON.stringify(e) + "\n").join(""));
    }
    if (this.#rules.size > 0) assert.fail(this.report());
  }
}

// ---------------------------------------------------------------------------------------------
// A byte-exact TCP client

/** A read that did not finish before its deadline. */
export const TIMEOUT = "timeout" as const;
/** The peer closed (or reset) the connection. */
export const EOF = "eof" as const;

/** One TCP connection, read and written as bytes. */
export class Wire {
  #conn: Deno.Conn;
  #buffer = new Uint8Array(0);
  #reading: Promise<Uint8Array | null> | null = null;
  #closed = false;
  /** True once the peer closed its side (or reset). */
  eof = false;
  /** True if the connection was reset rather than closed. */
  reset = false;

  private constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }

  /** Connects to `port` on loopback. */
  static async open(port: number): Promise<Wire> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.setNoDelay(true);
    return new Wire(conn);
  }

  /** Bytes read and not yet taken. */
  get buffered(): Uint8Array {
    return this.#buffer;
  }

  /** Takes `n` bytes off the front of the buffer. */
  take(n: number): Uint8Array {
    const out = this.#buffer.slice(0, n);
    this.#buffer = this.#buffer.subarray(n);
    return out;
  }

  /** Writes bytes; false if the write failed (the peer is gone). */
  async write(data: string | Uint8Array): Promise<boolean> {
    const bytes = typeof data === "string" ? bin(data) : data;
    try {
      for (let at = 0; at < bytes.length;) at += await this.#conn.write(bytes.subarray(at));
      return true;
    } catch {
      return false;
    }
  }

  /** Reads once into the buffer: true on data, EOF, or TIMEOUT (the read stays pending). */
  async fill(deadline: number): Promise<true | typeof EOF | typeof TIMEOUT> {
    if (this.eof) return EOF;
    const wait = deadline - Date.now();
    if (wait <= 0) return TIMEOUT;
    this.#reading ??= this.#read();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<typeof TIMEOUT>((resolve) => {
      timer = setTimeout(() => resolve(TIMEOUT), wait);
    });
    const bytes = await Promise.race([this.#reading, timeout]);
    clearTimeout(timer);
    if (bytes === TIMEOUT) return TIMEOUT;
    this.#reading = null;
    if (bytes === null) {
      this.eof = true;
      return EOF;
    }
    const joined = new Uint8Array(this.#buffer.length + bytes.length);
    joined.set(this.#buffer);
    joined.set(bytes, this.#buffer.length);
    this.#buffer = joined;
    return true;
  }

  /** Reads a response head through its blank line (CRLF CRLF). */
  async readHead(deadline: number): Promise<Uint8Array | typeof EOF | typeof TIMEOUT> {
    for (;;) {
      const end = indexOf(this.#buffer, CRLFCRLF);
      if (end >= 0) return this.take(end + 4);
      const got = await this.fill(deadline);
      if (got !== true) return got;
    }
  }

  /** Reads exactly `n` bytes. */
  async readBytes(n: number, deadline: number): Promise<Uint8Array | typeof EOF | typeof TIMEOUT> {
    while (this.#buffer.length < n) {
      const got = await this.fill(deadline);
      if (got !== true) return got;
    }
    return this.take(n);
  }

  /**
   * Reads one chunk of a chunked stream, strictly: the size in lowercase hex without leading
   * zeros, CRLF, exactly that many bytes, CRLF; or the last chunk `0\r\n\r\n`.
   */
  async readChunk(deadline: number): Promise<ChunkRead> {
    for (;;) {
      const buffer = this.#buffer;
      const lf = buffer.indexOf(0x0a);
      const line = latin1(buffer.subarray(0, lf < 0 ? Math.min(buffer.length, 12) : lf + 1));
      if (lf < 0 && !/^[0-9a-f]{0,8}\r?$/.test(line)) {
        return { kind: "malformed", detail: `not a chunk size line: ${esc(latin1(buffer))}` };
      }
      if (lf >= 0) {
        if (!/^[0-9a-f]{1,8}\r\n$/.test(line) || (line.length > 3 && line[0] === "0")) {
          return { kind: "malformed", detail: `bad chunk size line ${esc(line)}` };
        }
        const size = parseInt(line, 16);
        const need = line.length + size + 2;
        if (buffer.length >= need) {
          const tail = latin1(buffer.subarray(line.length + size, need));
          if (tail !== "\r\n") {
            return {
              kind: "malformed",
              detail: `chunk of ${size} bytes not followed by CRLF: ${esc(latin1(buffer))}`,
            };
          }
          const body = buffer.slice(line.length, line.length + size);
          this.take(need);
          return size === 0 ? { kind: "last" } : { kind: "chunk", body };
        }
      }
      const got = await this.fill(deadline);
      if (got === TIMEOUT) return { kind: TIMEOUT, pending: latin1(this.#buffer) };
      if (got === EOF) {
        return this.#buffer.length === 0
          ? { kind: EOF }
          : { kind: "malformed", detail: `closed inside a chunk: ${esc(latin1(this.#buffer))}` };
      }
    }
  }

  /** Waits for EOF: EOF, TIMEOUT, or the unexpected bytes that arrived instead. */
  async waitEof(deadline: number): Promise<typeof EOF | typeof TIMEOUT | Uint8Array> {
    for (;;) {
      if (this.#buffer.length > 0) return this.take(this.#buffer.length);
      const got = await this.fill(deadline);
      if (got !== true) return got;
    }
  }

  /**
   * After EOF: has the peer released the socket (closed it, not only shut down its sending
   * side)? A socket the peer has closed answers data with a reset, so the second write fails;
   * one it still holds half open takes the bytes. Probes until `deadline`.
   */
  async released(deadline: number): Promise<boolean> {
    while (Date.now() < deadline) {
      if (!await this.write("\n")) return true;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return !await this.write("\n");
  }

  /** Closes the connection (idempotent); a pending read is settled. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch { /* already closed */ }
  }

  async #read(): Promise<Uint8Array | null> {
    const chunk = new Uint8Array(65536);
    try {
      const read = await this.#conn.read(chunk);
      return read === null ? null : chunk.subarray(0, read);
    } catch (error) {
      if (error instanceof Deno.errors.ConnectionReset) this.reset = true;
      return null;
    }
  }
}

/**
 * Release probes ({@linkcode Wire.released}) run in the background, so that a server that
 * lingers (or never lets go) costs the run no time, only open sockets until the bound.
 */
export class ReleaseProbes {
  #pending: Promise<void>[] = [];

  constructor(readonly boundMs: number) {}

  /** Probes `wire` (after its EOF); `done` hears whether it was released; then closes it. */
  add(wire: Wire, done: (released: boolean) => void, close = true): void {
    this.#pending.push(
      wire.released(Date.now() + this.boundMs).then((released) => {
        if (close) wire.close();
        done(released);
      }),
    );
  }

  /** Probes started. */
  get size(): number {
    return this.#pending.length;
  }

  /** Waits for every probe. */
  async settle(): Promise<void> {
    await Promise.all(this.#pending);
  }
}

/** What {@linkcode Wire.readChunk} read. */
export type ChunkRead =
  | { kind: "chunk"; body: Uint8Array }
  | { kind: "last" }
  | { kind: "malformed"; detail: string }
  | { kind: typeof EOF }
  | { kind: typeof TIMEOUT; pending: string };

const CRLFCRLF = bin("\r\n\r\n");

function indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let k = 0; k < needle.length; k++) if (haystack[i + k] !== needle[k]) continue outer;
    return i;
  }
  return -1;
}

// ---------------------------------------------------------------------------------------------
// Response heads

/** A response head, read strictly. */
export interface ResponseHead {
  status: number;
  statusLine: string;
  /** Header lines in order, names lower-cased. */
  headers: { name: string; value: string }[];
  /** What is wrong with the head's syntax (empty when it is well formed). */
  problems: string[];
}

const FIELD_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/**
 * Parses a response head (through its blank line) strictly: lines end in CRLF, every byte of
 * every line is printable ASCII (0x20–0x7e), the status line is `HTTP/1.1 NNN reason` (or
 * another of `versions`), each header line is `name: value`.
 */
export function parseResponseHead(raw: Uint8Array, versions = ["1.1"]): ResponseHead {
  const text = latin1(raw);
  const problems: string[] = [];
  const lines = text.slice(0, -4).split("\r\n");
  for (const line of lines) {
    const bad = /[^\x20-\x7e]/.exec(line);
    if (bad) {
      problems.push(
        `byte ${esc(bad[0])} in head line ${esc(line)} (a bare CR/LF or a control byte: ` +
          `the line breaks or smuggles headers)`,
      );
    }
  }
  const statusLine = lines[0];
  const match = /^HTTP\/(\d\.\d) (\d{3}) [\x20-\x7e]*$/.exec(statusLine);
  if (!match || !versions.includes(match[1])) {
    problems.push(`status line ${esc(statusLine)} is not "HTTP/${versions.join("|")} NNN reason"`);
  }
  const headers: { name: string; value: string }[] = [];
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    const name = line.slice(0, Math.max(colon, 0));
    if (colon <= 0 || !FIELD_NAME.test(name)) {
      problems.push(`header line ${esc(line)} is not "name: value"`);
      continue;
    }
    headers.push({ name: name.toLowerCase(), value: line.slice(colon + 1).trim() });
  }
  return { status: match ? Number(match[2]) : 0, statusLine, headers, problems };
}

/** The single value of header `name`, or an error message if it is missing or repeated. */
export function single(head: ResponseHead, name: string): string | { error: string } {
  const values = head.headers.filter((h) => h.name === name);
  if (values.length !== 1) return { error: `${values.length} ${name} header(s)` };
  return values[0].value;
}

// ---------------------------------------------------------------------------------------------
// JSON text

/** True for JSON white space. */
function isJsonSpace(c: string): boolean {
  return c === " " || c === "\t" || c === "\n" || c === "\r";
}

/** A JSON text without the white space outside its strings (all else byte for byte). */
export function compactJson(text: string): string {
  let out = "";
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      const end = stringEnd(text, i);
      out += text.slice(i, end);
      i = end - 1;
    } else if (!isJsonSpace(c)) out += c;
  }
  return out;
}

function stringEnd(text: string, i: number): number {
  for (i++; i < text.length; i++) {
    if (text[i] === "\\") i++;
    else if (text[i] === '"') return i + 1;
  }
  return i;
}

function valueEnd(text: string, i: number): number {
  const first = text[i];
  if (first === '"') return stringEnd(text, i);
  if (first !== "{" && first !== "[") {
    while (i < text.length && !/[\s,}\]]/.test(text[i])) i++;
    return i;
  }
  let depth = 0;
  for (; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      i = stringEnd(text, i) - 1;
    } else if (c === "{" || c === "[") depth++;
    else if ((c === "}" || c === "]") && --depth === 0) return i + 1;
  }
  return i;
}

function skipSpace(text: string, i: number): number {
  while (i < text.length && isJsonSpace(text[i])) i++;
  return i;
}

/**
 * The raw text of each top-level member of a JSON object text that `JSON.parse` accepted,
 * by decoded name; of duplicate names the last wins (as with `JSON.parse`).
 */
export function rawMembers(text: string): Map<string, string> {
  const members = new Map<string, string>();
  let i = skipSpace(text, 0) + 1;
  for (;;) {
    i = skipSpace(text, i);
    if (text[i] === "}" || i >= text.length) return members;
    const keyEnd = stringEnd(text, i);
    const name = JSON.parse(text.slice(i, keyEnd)) as string;
    i = skipSpace(text, skipSpace(text, keyEnd) + 1);
    const end = valueEnd(text, i);
    members.set(name, text.slice(i, end));
    i = skipSpace(text, end);
    if (text[i] === "}") return members;
    i++;
  }
}

/** `JSON.parse`, or undefined if the text is not JSON. */
export function tryJson(text: string): { value: unknown } | undefined {
  try {
    return { value: JSON.parse(text) };
  } catch {
    return undefined;
  }
}

/** True for a plain JSON object (not an array, not null). */
export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

// ---------------------------------------------------------------------------------------------
// Running

/** Runs `work` over `items`, `concurrency` at a time, in index order of start. */
export async function runPool<T>(
  items: readonly T[],
  concurrency: number,
  work: (item: T, index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(concurrency, items.length) }, async () => {
    while (next < items.length) {
      const index = next++;
      await work(items[index], index);
    }
  });
  await Promise.all(lanes);
}

/** A promise that resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `probe` every 50 ms until it returns true or `ms` pass; resolves with the last result. */
export async function until(ms: number, probe: () => Promise<boolean>): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await probe()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(50);
  }
}

/** A seed from `FUZZ_SEED` (decimal or 0x hex), else `fallback`. */
export function seedFromEnv(fallback: number): number {
  const text = Deno.env.get("FUZZ_SEED");
  return text ? Number(text) >>> 0 : fallback;
}

/** A case count from `FUZZ_CASES`, else `fallback`. */
export function casesFromEnv(fallback: number): number {
  const text = Deno.env.get("FUZZ_CASES");
  return text ? Math.max(1, Number(text)) : fallback;
}

// ---------------------------------------------------------------------------------------------
// Stream clients

/**
 * Connects as `uid` through `port` (the front door), following one 303 as a raw client does;
 * resolves with the open stream after its 200 head, or an error text.
 */
export async function connectWire(
  port: number,
  uid: string,
  deadlineMs = 5000,
): Promise<Wire | string> {
  const query = `uid=${encodeURIComponent(uid)}&password=pw`;
  const deadline = Date.now() + deadlineMs;
  let wire = await Wire.open(port);
  await wire.write(`GET /connect?${query} HTTP/1.1\r\nAccept: */*\r\n\r\n`);
  let raw = await wire.readHead(deadline);
  if (typeof raw === "string") return `no head from the front door (${raw})`;
  let head = parseResponseHead(raw);
  if (head.status === 303) {
    wire.close();
    const location = single(head, "location");
    if (typeof location !== "string") return `303 without one Location: ${esc(raw)}`;
    const url = new URL(location);
    wire = await Wire.open(Number(url.port));
    await wire.write(`GET ${url.pathname}${url.search} HTTP/1.1\r\n\r\n`);
    raw = await wire.readHead(deadline);
    if (typeof raw === "string") return `no head from the shard (${raw})`;
    head = parseResponseHead(raw);
  }
  if (head.status !== 200) {
    wire.close();
    return `connect ${uid}: ${esc(raw)}`;
  }
  return wire;
}

/** `JSON.parse` of a server chunk body (UTF-8, trailing white space allowed). */
export function chunkJson(body: Uint8Array): { text: string; value: unknown } | undefined {
  const text = fromUtf8Bin(latin1(body));
  if (text === undefined) return undefined;
  const parsed = tryJson(text);
  return parsed && { text: text.replace(/\s+$/, ""), value: parsed.value };
}

/** The stream's error reasons (docs/protocol-notes.md), fatal ones first. */
export const FATAL_REASONS = [
  "bad chunk size",
  "frame too large",
  "missing CRLF after chunk",
  "bad json",
  "frame is not a json object",
  "unknown type",
];
/** Every reason a stream error frame may carry. */
export const STREAM_REASONS = [
  ...FATAL_REASONS,
  "invalid t",
  "invalid c",
  "missing b",
  "invalid s",
  "ack beyond last seq",
  "storage unavailable",
  "storage busy",
  "heartbeat timeout",
];

/** What a server chunk on a client stream is, by PROTOCOL.md §2. */
export type ServerFrame =
  | { kind: "heartbeat" }
  | { kind: "delivery"; y: 3 | 4; f: string; t: string; s?: number; text: string }
  | { kind: "error"; reason: string }
  | { kind: "invalid"; detail: string };

/** Classifies one server chunk body; `invalid` says why it is none of the allowed frames. */
export function classifyServerFrame(body: Uint8Array): ServerFrame {
  const parsed = chunkJson(body);
  if (!parsed) return { kind: "invalid", detail: `body is not UTF-8 JSON: ${esc(body)}` };
  const value = parsed.value;
  if (!isObject(value)) return { kind: "invalid", detail: `body is not an object: ${esc(body)}` };
  const keys = Object.keys(value).join(",");
  if (keys === "y" && value.y === 0 && compactJson(parsed.text) === '{"y":0}') {
    return { kind: "heartbeat" };
  }
  if (keys === "error") {
    if (typeof value.error === "string" && STREAM_REASONS.includes(value.error)) {
      return { kind: "error", reason: value.error };
    }
    return { kind: "invalid", detail: `error frame with an undocumented reason: ${esc(body)}` };
  }
  const stored = keys === "y,f,t,b,s" || keys === "y,f,t,c,b,s";
  const volatile = keys === "y,f,t,b" || keys === "y,f,t,c,b";
  const y = value.y;
  if (
    (stored || volatile) && (y === 3 || y === 4) && (y === 4) === keys.includes(",c,") &&
    isName(value.f) && isName(value.t) && (y === 3 || isName(value.c)) &&
    (volatile || (Number.isSafeInteger(value.s) && (value.s as number) >= 1))
  ) {
    return {
      kind: "delivery",
      y,
      f: value.f,
      t: value.t,
      s: value.s as number | undefined,
      text: parsed.text,
    };
  }
  return { kind: "invalid", detail: `not a heartbeat, delivery or error frame: ${esc(body)}` };
}

/**
 * A well-behaved client that stays connected for a whole run and records every frame the
 * server sends it, checking each as it comes.
 */
export class Listener {
  readonly frames: { raw: Uint8Array; frame: ServerFrame }[] = [];
  readonly problems: string[] = [];
  #heartbeats = 0;
  #done: Promise<void>;
  #stop = false;

  constructor(readonly uid: string, readonly wire: Wire) {
    this.#done = this.#loop();
  }

  async #loop(): Promise<void> {
    while (!this.#stop) {
      const read = await this.wire.readChunk(Date.now() + 1000);
      if (read.kind === TIMEOUT) continue;
      if (read.kind === "chunk") {
        const frame = classifyServerFrame(read.body);
        if (frame.kind === "heartbeat") this.#heartbeats++;
        else this.frames.push({ raw: read.body, frame });
        continue;
      }
      if (!this.#stop) {
        this.problems.push(
          read.kind === "malformed"
            ? read.detail
            : `the server ended ${this.uid}'s stream (${
              read.kind === "last" ? "last chunk" : "EOF"
            })`,
        );
      }
      return;
    }
  }

  /** Deliveries so far. */
  get deliveries(): number {
    return this.frames.filter((f) => f.frame.kind === "delivery").length;
  }

  /** Sends a heartbeat and waits for its answer (everything sent before it has arrived). */
  async settle(ms = 5000): Promise<boolean> {
    const before = this.#heartbeats;
    await this.wire.write('7\r\n{"y":0}\r\n');
    return await until(ms, () => Promise.resolve(this.#heartbeats > before));
  }

  /** Stops reading and closes. */
  async close(): Promise<void> {
    this.#stop = true;
    this.wire.close();
    await this.#done;
  }
}

/** `/stats` `user.connection_number`, fetched from the admin port. */
export async function connectionNumber(adminPort: number): Promise<number> {
  const response = await fetch(`http://127.0.0.1:${adminPort}/stats`);
  const body = await response.json();
  return body.result.user.connection_number;
}
