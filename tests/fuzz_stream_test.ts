/**
 * Fuzz, seeded and bounded: mutated chunk streams (PROTOCOL.md §2, docs/protocol-notes.md
 * "The chunk stream") sent by raw clients after their `200`, each case a fresh uid connecting
 * through the front door (following the 303), 24 at a time, while a well-behaved "victim"
 * client stays connected for the whole run. Cases are valid frames (heartbeats, subscribes,
 * messages to the victim, to themselves and to offline uids, channel messages, acks, bad
 * fields) with mutated bodies (byte flips, control bytes, invalid UTF-8, truncation,
 * duplication, JSON that is not an object) and framing (sizes wrong, uppercase, zero-padded,
 * over 8 digits, over `--max_frame_bytes`, not hex, with extensions; CR/LF missing, bare or
 * doubled), and payloads `b` whose JSON text a parse and re-serialise would change
 * (`12345678901234567890`, `9007199254740993`, `1e400`, `{"a":1,"a":2}`, escapes).
 *
 * A model of the documented decoder and frame rules predicts each case's answers; checked:
 *
 * - every server frame is a well-formed chunk (lowercase hex size = body bytes) or the last
 *   chunk, and its body is `{"y":0}`, a delivery addressed to this uid from a valid name, or
 *   `{"error": <documented reason>}`;
 * - the heartbeat answers and error frames are the ones the model gives, in order;
 * - a client's messages to itself arrive with `f` = its uid, `s` = 1, 2, … and `b` as written;
 * - a fatal error (bad chunk size, frame too large, missing CRLF, bad json, not an object,
 *   unknown type) is followed by a close within 5 s while the client keeps its half open, and
 *   `0\r\n\r\n` from the client by the server's last chunk and a close; the server then
 *   releases the socket (checked on every 4th case, in the background: a byte written after
 *   the EOF is answered with a reset within 5 s);
 * - the victim gets only well-formed deliveries to itself, `s` rising by 1, and exactly the
 *   messages the cases legitimately sent it, each `b` as the sender wrote it (compared as raw
 *   JSON text; only white space outside strings may differ);
 * - afterwards `/stats` `user.connection_number` falls to 1 (the victim) within 5 s, although
 *   the test still holds open a few sockets the server closed (one case in 50), and to 0 once
 *   the victim leaves.
 *
 * Reproduce with `FUZZ_SEED=<seed>` (`FUZZ_CASES=<n>`). Bound (2 cores, 2000 cases, 28 of
 * them fixed): about 8 s of test time when the rules hold, ~20 s when they fail (the release
 * probes and the `/stats` checks then wait out their 5 s), at most ~30 s.
 */

import assert from "node:assert/strict";
import { type Daemon, startDaemon } from "./harness.ts";
import { prng } from "../src/testing/support.ts";
import {
  casesFromEnv,
  classifyServerFrame,
  compactJson,
  connectionNumber,
  connectWire,
  EOF,
  esc,
  Findings,
  fromUtf8Bin,
  isName,
  isObject,
  Listener,
  mutateBytes,
  ONE_ADDRESS_FLAGS,
  Rand,
  rawMembers,
  ReleaseProbes,
  runPool,
  seedFromEnv,
  tryJson,
  until,
  utf8Bin,
  Wire,
} from "./fuzz_support.ts";

const SEED = seedFromEnv(0x5eed0002);
const CASES = casesFromEnv(2000);
const CONCURRENCY = 24;
const MAX_FRAME_BYTES = 2048;
const CLOSE_BOUND_MS = 5000;
/** The release check (which waits for the server to let go) runs on every n-th case. */
const PROBE_EVERY = 4;
/** Of every this many cases, one the server closes is kept open until the `/stats` check. */
const HOLD_EVERY = 50;
const VICTIM = "victim";
const HEARTBEAT = '7\r\n{"y":0}\r\n';

// ---------------------------------------------------------------------------------------------
// The model: the documented decoder (framing) and frame rules.

interface Frame {
  /** Offset of the body. */
  start: number;
  body: string;
  /** Offset just past the frame's CRLF. */
  end: number;
}

type Final =
  | { kind: "idle" }
  | { kind: "partial"; need: string }
  | { kind: "fatal"; reasons: string[]; at: number }
  | { kind: "ended"; at: number; clean: boolean };

function isHex(c: string | undefined): boolean {
  return c !== undefined && /^[0-9a-fA-F]$/.test(c);
}

/** Decodes a client stream as protocol-notes.md says: frames until the end or an error. */
function decodeStream(bytes: string): { frames: Frame[]; final: Final } {
  const frames: Frame[] = [];
  const n = bytes.length;
  let i = 0;
  for (;;) {
    if (i >= n) return { frames, final: { kind: "idle" } };
    let j = i;
    while (j < n && isHex(bytes[j])) j++;
    const digits = j - i;
    const value = digits > 0 ? parseInt(bytes.slice(i, j), 16) : 0;
    const tooMany = digits > 8;
    const tooBig = value > MAX_FRAME_BYTES;
    const lf = bytes.indexOf("\n", i);
    const lineEnd = Math.min(n, lf < 0 ? n : lf + 1, i + 64);
    const fatal = (reasons: string[], at = lineEnd) => ({
      frames,
      final: { kind: "fatal" as const, reasons, at },
    });
    if (j >= n) {
      if (tooMany) {
        return fatal(tooBig ? ["bad chunk size", "frame too large"] : ["bad chunk size"], n);
      }
      if (tooBig) return fatal(["frame too large"], n);
      return { frames, final: { kind: "partial", need: "\r\n" } };
    }
    let k = j;
    let terminator: "ok" | "bad" | "partial" = "bad";
    if (bytes[k] === "\n") {
      k++;
      terminator = "ok";
    } else if (bytes[k] === "\r") {
      if (k + 1 >= n) terminator = "partial";
      else if (bytes[k + 1] === "\n") {
        k += 2;
        terminator = "ok";
      }
    }
    if (digits === 0) return fatal(["bad chunk size"]);
    if (tooMany) return fatal(tooBig ? ["bad chunk size", "frame too large"] : ["bad chunk size"]);
    if (tooBig) {
      return fatal(
        terminator === "bad" ? ["frame too large", "bad chunk size"] : ["frame too large"],
      );
    }
    if (terminator === "bad") return fatal(["bad chunk size"]);
    if (terminator === "partial") return { frames, final: { kind: "partial", need: "\n" } };
    if (value === 0) {
      // The last chunk: `0\r\n` ends the stream; a trailer section is not part of the
      // protocol, so only `0\r\n\r\n` (or with bare LFs) is a clean end.
      const rest = bytes.slice(k, k + 2);
      const clean = rest === "\r\n" || rest[0] === "\n";
      return {
        frames,
        final: { kind: "ended", at: clean ? k + (rest[0] === "\n" ? 1 : 2) : n, clean },
      };
    }
    const m = k + value;
    if (m > n) return { frames, final: { kind: "partial", need: " ".repeat(m - n) + "\r\n" } };
    if (m === n) return { frames, final: { kind: "partial", need: "\r\n" } };
    let end: number;
    if (bytes[m] === "\n") end = m + 1;
    else if (bytes[m] === "\r") {
      if (m + 1 >= n) return { frames, final: { kind: "partial", need: "\n" } };
      if (bytes[m + 1] !== "\n") return fatal(["missing CRLF after chunk"], m + 2);
      end = m + 2;
    } else return fatal(["missing CRLF after chunk"], m + 1);
    frames.push({ start: k, body: bytes.slice(k, m), end });
    i = end;
  }
}

/** What a case's frames must cause. */
interface Effects {
  /** The synchronous answers, in order: "hb" or an error reason (alternatives each). */
  answers: string[][];
  /** `b` of each message to itself, compacted raw JSON text (its `s` is the index + 1). */
  self: string[];
  /** `b` of each message to the victim. */
  victim: string[];
  fatal?: { reasons: string[]; at: number };
}

function applyFrames(frames: Frame[], self: string): Effects {
  const effects: Effects = { answers: [], self: [], victim: [] };
  let lastSeq = 0;
  for (const frame of frames) {
    const fatal = (reason: string) => {
      effects.fatal = { reasons: [reason], at: frame.end };
      return effects;
    };
    const text = fromUtf8Bin(frame.body);
    const parsed = text === undefined ? undefined : tryJson(text);
    if (text === undefined || !parsed) return fatal("bad json");
    const value = parsed.value;
    if (!isObject(value)) return fatal("frame is not a json object");
    const errors: string[] = [];
    switch (value.y) {
      case 0:
        effects.answers.push(["hb"]);
        continue;
      case 1:
      case 2:
        if (!isName(value.c)) effects.answers.push(["invalid c"]);
        continue;
      case 3:
      case 4: {
        if (value.y === 3 && !isName(value.t)) errors.push("invalid t");
        if (value.y === 4 && !isName(value.c)) errors.push("invalid c");
        if (!Object.hasOwn(value, "b")) errors.push("missing b");
        if (errors.length > 0) {
          effects.answers.push(errors);
          continue;
        }
        if (value.y === 4) continue; // nobody is subscribed to the cases' channels
        const b = compactJson(rawMembers(text).get("b")!);
        if (value.t === self) {
          effects.self.push(b);
          lastSeq++;
        } else if (value.t === VICTIM) effects.victim.push(b);
        continue;
      }
      case 5: {
        const s = value.s;
        if (!Number.isSafeInteger(s) || (s as number) < 1) effects.answers.push(["invalid s"]);
        else if ((s as number) > lastSeq) effects.answers.push(["ack beyond last seq"]);
        continue;
      }
      default:
        return fatal("unknown type");
    }
  }
  return effects;
}

/** What the client sends and what it must see. */
interface Plan {
  send: string;
  end: "idle" | "fatal" | "ended" | "unclear";
  effects: Effects;
}

/**
 * Completes a case's stream so that its answers can be awaited: pads an unfinished frame,
 * then appends a heartbeat, whose answer marks the end of the answers.
 */
function plan(bytes: string, self: string): Plan {
  let hbAt = -1;
  for (let round = 0; round < 10; round++) {
    const { frames, final } = decodeStream(bytes);
    const effects = applyFrames(frames, self);
    if (effects.fatal) {
      effects.answers.push(effects.fatal.reasons);
      return { send: bytes.slice(0, effects.fatal.at), end: "fatal", effects };
    }
    if (final.kind === "fatal") {
      effects.answers.push(final.reasons);
      return { send: bytes.slice(0, final.at), end: "fatal", effects };
    }
    if (final.kind === "ended") {
      return { send: bytes.slice(0, final.at), end: final.clean ? "ended" : "unclear", effects };
    }
    if (final.kind === "partial") {
      bytes += final.need;
      continue;
    }
    const last = frames.at(-1);
    if (hbAt >= 0 && last && last.start === hbAt + 3 && last.end === bytes.length) {
      return { send: bytes, end: "idle", effects };
    }
    hbAt = bytes.length;
    bytes += HEARTBEAT;
  }
  return { send: bytes, end: "unclear", effects: applyFrames(decodeStream(bytes).frames, self) };
}

// ---------------------------------------------------------------------------------------------
// Generation

/** Payloads whose JSON text must survive the relay as written. */
const PAYLOADS = [
  '"hello"',
  "12345678901234567890",
  "9007199254740993",
  "1e400",
  "-0",
  "0.1e-7",
  "1E+2",
  "-1.5e-300",
  '{"a":1,"a":2}',
  '"\\u00e9\\ud83d\\ude00"',
  utf8Bin('"é😀 ünïcödé"'),
  '"tab\\tnl\\n\\"q\\" \\\\ \\/"',
  "[1, 2 ,3]",
  '{ "x" : [ true , false , null ] }',
  "null",
  "true",
  '""',
  '"</script>"',
  "[]",
  "{}",
  "[[[[[[1]]]]]]",
  '"\\u0000"',
  '"\\ud800"',
  `"${"x".repeat(300)}"`,
  '{"y":99,"t":"victim","s":1}',
  '"\\r\\n0\\r\\n\\r\\n"',
  "0",
  '{"b":{"b":"}"}}',
];

const ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789";

function bodyTemplates(r: Rand, self: string, id: number): string[] {
  const b = () => r.pick(PAYLOADS);
  const to = (t: string) =>
    r.pick([
      `{"y":3,"f":"${self}","t":"${t}","b":${b()}}`,
      `{"t":"${t}","b":${b()},"y":3}`,
      `{ "y" : 3 , "t" : "${t}" , "b" : ${b()} }`,
      `{"y":3.0,"t":"${t.replace(/m$/, "\\u006d")}","b":${b()}}`,
      `{"y":3,"t":"${t}","f":"admin","b":${b()}}`,
      `{"y":3,"t":"${t}","b":${b()},"x":[1,{"y":9}]}`,
    ]);
  const templates = [
    '{"y":0}',
    '{"y":0}',
    to(VICTIM),
    to(VICTIM),
    to(VICTIM),
    to(self),
    to(self),
    to(`nobody${r.int(20)}`),
    `{"y":1,"f":"${self}","c":"sc${id}"}`,
    `{"y":2,"c":"sc${id}"}`,
    `{"y":4,"c":"cc${id}","b":${b()}}`,
    `{"y":5,"f":"${self}","s":${r.range(1, 3)}}`,
    `{"y":5,"s":${r.range(1, 3)}}`,
    `{"s":1,"y":5}`,
    r.pick([
      '{"y":3,"t":"not a uid!","b":1}',
      '{"y":3,"t":"victim"}',
      '{"y":3,"b":1}',
      '{"y":5,"s":0}',
      '{"y":5,"s":1.5}',
      '{"y":5,"s":"1"}',
      '{"y":1,"c":""}',
      `{"y":4,"c":"cc${id}"}`,
      '{"y":4,"c":"a b","b":1}',
    ]),
  ];
  // A frame that is fatal as it stands, in a few cases only (mutations make more).
  if (r.chance(0.2)) {
    templates.push(
      r.pick(["{nope", "[1,2]", '{"y":9}', '{"y":"3"}', "null", "{}", '"str"', '{"y":0}}']),
    );
  }
  return templates;
}

interface Piece {
  size: string;
  sep1: string;
  body: string;
  sep2: string;
}

function framed(body: string): Piece {
  return { size: body.length.toString(16), sep1: "\r\n", body, sep2: "\r\n" };
}

const pieceMutations: ((r: Rand, p: Piece) => void)[] = [
  (r, p) => {
    p.body = mutateBytes(r, p.body);
    p.size = p.body.length.toString(16);
  },
  (r, p) => {
    p.body = mutateBytes(r, p.body); // size left as it was: the framing is off
  },
  (r, p) => {
    p.body = p.body.slice(0, r.int(p.body.length + 1));
    p.size = p.body.length.toString(16);
  },
  (r, p) => {
    const size = parseInt(p.size, 16);
    p.size = r.pick([
      p.size.toUpperCase(),
      `0${p.size}`,
      p.size.padStart(8, "0"),
      p.size.padStart(9, "0"),
      (size + 1).toString(16),
      Math.max(0, size - 1).toString(16),
      "zz",
      "",
      `${p.size};ext=1`,
      `${p.size} `,
      `0x${p.size}`,
      `-${p.size}`,
      "fffff",
      (MAX_FRAME_BYTES + 1).toString(16),
      MAX_FRAME_BYTES.toString(16),
      "ffffffffff",
    ]);
  },
  (r, p) => {
    p.sep1 = r.pick(["\n", "\r", "", "\r\r\n", " \r\n", "\r\n\r\n"]);
  },
  (r, p) => {
    p.sep2 = r.pick(["\n", "\r", "", "XX", "\r\n\r\n", "\n\n", "\r\r\n"]);
  },
  (r, p) => {
    // a frame over the limit, correctly sized
    p.body = `{"y":0,"pad":"${"x".repeat(MAX_FRAME_BYTES + r.int(200) - 12)}"}`;
    p.size = p.body.length.toString(16);
  },
  (r, p) => {
    // a control byte or a byte that is not UTF-8 inside a string or between tokens
    const at = r.int(p.body.length + 1);
    p.body = p.body.slice(0, at) + r.pick([r.control(), r.high(), "\xc3", "\xed\xa0\x80"]) +
      p.body.slice(at);
    p.size = p.body.length.toString(16);
  },
];

interface Case {
  id: number;
  uid: string;
  bytes: string;
  plan: Plan;
  /** Write boundaries (offsets into `plan.send`). */
  cuts: number[];
}

function generate(seed: number, count: number): Case[] {
  const r = new Rand(prng(seed));
  const cases: Case[] = [];
  // First, whatever the seed, each payload once to the victim and once to the sender itself,
  // unmutated: the relay must keep every one as written.
  for (const b of PAYLOADS) {
    const id = cases.length;
    const uid = `fz${id}x${r.text(ALNUM, 6)}`;
    const bytes = [`{"y":3,"t":"${VICTIM}","b":${b}}`, `{"y":3,"t":"${uid}","b":${b}}`]
      .map((body) => {
        const p = framed(body);
        return p.size + p.sep1 + p.body + p.sep2;
      }).join("");
    cases.push({ id, uid, bytes, plan: plan(bytes, uid), cuts: [] });
  }
  for (let id = cases.length; id < count; id++) {
    const uid = `fz${id}x${r.text(ALNUM, 6)}`;
    const templates = bodyTemplates(r, uid, id);
    const pieces: Piece[] = [];
    const frames = r.range(1, 6);
    for (let k = 0; k < frames; k++) pieces.push(framed(r.pick(templates)));
    const mutations = r.chance(0.4) ? 0 : r.range(1, 2);
    for (let k = 0; k < mutations; k++) r.pick(pieceMutations)(r, r.pick(pieces));
    if (r.chance(0.05)) pieces.splice(r.int(pieces.length + 1), 0, framed(""));
    let bytes = pieces.map((p) => p.size + p.sep1 + p.body + p.sep2).join("");
    if (r.chance(0.3)) bytes += "0\r\n\r\n";
    const planned = plan(bytes, uid);
    const cuts: number[] = [];
    const length = planned.send.length;
    if (length < 120 && r.chance(0.05)) {
      for (let at = 1; at < length; at++) cuts.push(at);
    } else if (r.chance(0.25)) {
      for (let k = r.range(1, 4); k > 0; k--) cuts.push(r.int(length));
      cuts.sort((a, b) => a - b);
    }
    cases.push({ id, uid, bytes, plan: planned, cuts });
  }
  return cases;
}

// ---------------------------------------------------------------------------------------------
// Checking

const RULE = {
  connect: "S0 a fuzz client connects (303 then 200)",
  frame:
    'S1 every server frame is a well-formed chunk whose body is {"y":0}, a delivery or {"error": documented reason}',
  addressed:
    "S2 deliveries to a client are addressed to it (t = its uid) and from it (f = its uid)",
  selfBody: "S3 a client's messages to itself arrive, s = 1, 2, ..., with b as it wrote it",
  answers: "S4 the heartbeat answers and error frames are the documented ones, in order",
  closed:
    "S5 a fatal error is followed by a close within 5 s (client half open); 0\\r\\n\\r\\n by the last chunk and a close",
  released: "S6 after closing a stream the server releases the socket (a write after EOF is reset)",
  victimFrame:
    "V1 the victim gets only well-formed deliveries to itself (no injected frames), s rising by 1",
  victimBody:
    "V2 the victim gets exactly the messages legitimately sent to it, b as the sender wrote it",
  connections: "C1 /stats user.connection_number falls to the clients still open (1, then 0)",
};

async function runCase(
  c: Case,
  daemon: Daemon,
  findings: Findings,
  held: Wire[],
  probes: ReleaseProbes,
): Promise<void> {
  const id = `case #${c.id} (uid ${c.uid})`;
  const fail = (rule: string, detail: string) => findings.fail(rule, id, c.plan.send, detail);
  const wire = await connectWire(daemon.clientPort, c.uid);
  if (typeof wire === "string") return fail(RULE.connect, wire);
  let keep = false;
  try {
    let from = 0;
    for (const cut of [...c.cuts, c.plan.send.length]) {
      if (cut <= from) continue;
      if (!await wire.write(c.plan.send.slice(from, cut))) break;
      from = cut;
    }
    const { effects, end } = c.plan;
    const answers: string[] = [];
    const self: { s: number; text: string }[] = [];
    let last = false;
    let closed = false;
    const deadline = Date.now() + CLOSE_BOUND_MS;
    for (;;) {
      if (
        end === "idle" && answers.length >= effects.answers.length &&
        self.length >= effects.self.length
      ) break;
      const read = await wire.readChunk(deadline);
      if (read.kind === "chunk") {
        const frame = classifyServerFrame(read.body);
        if (frame.kind === "invalid") fail(RULE.frame, frame.detail);
        else if (frame.kind === "heartbeat") answers.push("hb");
        else if (frame.kind === "error") {
          if (!frame.reason.startsWith("storage")) answers.push(frame.reason);
        } else {
          if (frame.t !== c.uid || frame.f !== c.uid) {
            fail(RULE.addressed, `delivery ${esc(frame.text)} to ${c.uid}`);
          }
          self.push({ s: frame.s ?? 0, text: frame.text });
        }
      } else if (read.kind === "last") {
        last = true;
      } else if (read.kind === "malformed") {
        fail(RULE.frame, read.detail);
        break;
      } else if (read.kind === EOF) {
        closed = true;
        break;
      } else break;
    }
    // The answers, in order.
    findings.checked(RULE.answers);
    const wanted = effects.answers;
    const order = answers.length === wanted.length &&
      answers.every((answer, k) => wanted[k].includes(answer));
    if (!order && end !== "unclear") {
      fail(
        RULE.answers,
        `answers ${JSON.stringify(answers)}, expected ${
          JSON.stringify(wanted.map((w) => w.join("|")))
        }${closed ? " (the server closed)" : ""}`,
      );
    }
    // Messages to itself: each as written, with its s.
    findings.checked(RULE.selfBody);
    for (const { s, text } of self) {
      const b = effects.self[s - 1];
      const want = `{"y":3,"f":"${c.uid}","t":"${c.uid}","b":${b},"s":${s}}`;
      if (b === undefined || compactJson(text) !== want) {
        fail(
          RULE.selfBody,
          `got ${esc(text)}, expected ${b === undefined ? "no such s" : esc(want)}`,
        );
      }
    }
    if (end === "idle" && self.length < effects.self.length) {
      fail(RULE.selfBody, `${self.length} of ${effects.self.length} messages to itself arrived`);
    }
    if (end === "idle" || end === "unclear") return;
    // The close.
    findings.checked(RULE.closed);
    if (end === "ended" && !last) {
      fail(
        RULE.closed,
        `no last chunk after the client's 0\\r\\n\\r\\n (${closed ? "EOF" : "open"})`,
      );
    }
    if (!closed) {
      fail(
        RULE.closed,
        `still open ${CLOSE_BOUND_MS} ms after ${
          end === "fatal" ? "a fatal error" : "the last chunk"
        }`,
      );
      return;
    }
    if (c.id % HOLD_EVERY === 1) {
      held.push(wire);
      keep = true;
    } else if (c.id % PROBE_EVERY === 0) {
      findings.checked(RULE.released);
      keep = true;
      probes.add(wire, (released) => {
        if (released) return;
        fail(
          RULE.released,
          `after ${end === "fatal" ? `{"error":"${wanted.at(-1)}"}` : "the last chunk"} and EOF, ` +
            `the server still holds the socket half open ${CLOSE_BOUND_MS} ms later`,
        );
      });
    }
  } finally {
    if (!keep) wire.close();
  }
}

function checkVictim(victim: Listener, cases: Case[], findings: Findings): void {
  const byUid = new Map(cases.map((c) => [c.uid, c]));
  const pending = new Map(cases.map((c) => [c.uid, [...c.plan.effects.victim]]));
  /** Per sender, messages that arrived but matched nothing it sent (reported already). */
  const unmatched = new Map<string, number>();
  let seq = 0;
  for (const problem of victim.problems) {
    findings.fail(RULE.victimFrame, "the victim", "", problem);
  }
  for (const { raw, frame } of victim.frames) {
    findings.checked(RULE.victimFrame);
    if (frame.kind !== "delivery" || frame.t !== VICTIM || frame.y !== 3) {
      findings.fail(
        RULE.victimFrame,
        "the victim",
        raw,
        `frame ${esc(raw)}: ${JSON.stringify(frame)}`,
      );
      continue;
    }
    if (frame.s !== seq + 1) {
      findings.fail(RULE.victimFrame, "the victim", raw, `s ${frame.s} after ${seq}: ${esc(raw)}`);
    }
    seq = frame.s ?? seq;
    const sender = byUid.get(frame.f);
    const left = pending.get(frame.f) ?? [];
    const text = compactJson(frame.text);
    const at = left.findIndex((b) =>
      text === `{"y":3,"f":"${frame.f}","t":"${VICTIM}","b":${b},"s":${frame.s}}`
    );
    findings.checked(RULE.victimBody);
    if (at >= 0) {
      left.splice(at, 1);
      continue;
    }
    unmatched.set(frame.f, (unmatched.get(frame.f) ?? 0) + 1);
    findings.fail(
      RULE.victimBody,
      sender ? `case #${sender.id} (uid ${sender.uid})` : `unknown sender ${frame.f}`,
      sender?.plan.send ?? "",
      `the victim got ${esc(raw)}; that sender's messages to it: ${
        left.map((b) => esc(b)).join(", ") || "none"
      }`,
    );
  }
  for (const [uid, left] of pending) {
    const missing = left.length - (unmatched.get(uid) ?? 0);
    if (missing <= 0) continue;
    const c = byUid.get(uid)!;
    findings.fail(
      RULE.victimBody,
      `case #${c.id} (uid ${uid})`,
      c.plan.send,
      `${missing} message(s) to the victim never arrived: ${left.map((b) => esc(b)).join(", ")}`,
    );
  }
}

Deno.test("fuzz: mutated chunk streams after a 200, with a victim listening", async () => {
  const daemon = await startDaemon([...ONE_ADDRESS_FLAGS, `--max_frame_bytes=${MAX_FRAME_BYTES}`]);
  const findings = new Findings(
    `fuzz_stream (${CASES} cases)`,
    SEED,
    `FUZZ_SEED=${SEED} FUZZ_CASES=${CASES} deno test --allow-all tests/fuzz_stream_test.ts`,
  );
  const held: Wire[] = [];
  let victim: Listener | undefined;
  try {
    const cases = generate(SEED, CASES);
    const wire = await connectWire(daemon.clientPort, VICTIM);
    assert.ok(typeof wire !== "string", `the victim connects: ${wire}`);
    victim = new Listener(VICTIM, wire);
    const probes = new ReleaseProbes(CLOSE_BOUND_MS);
    await runPool(cases, CONCURRENCY, (c) => runCase(c, daemon, findings, held, probes));
    await probes.settle();
    const expected = cases.reduce((n, c) => n + c.plan.effects.victim.length, 0);
    await until(10_000, () => Promise.resolve(victim!.deliveries >= expected));
    assert.ok(await victim.settle(), "the victim's heartbeat is answered");
    checkVictim(victim, cases, findings);
    findings.checked(RULE.connections);
    const openNow = await until(5000, async () => await connectionNumber(daemon.adminPort) === 1);
    if (!openNow) {
      findings.fail(
        RULE.connections,
        "after the run",
        "",
        `connection_number is ${await connectionNumber(daemon.adminPort)}, expected 1 (the ` +
          `victim): the ${held.length} sockets the server closed (still open on the client's ` +
          `side) are still counted`,
      );
    }
    for (const w of held.splice(0)) w.close();
    await victim.close();
    victim = undefined;
    if (!await until(5000, async () => await connectionNumber(daemon.adminPort) === 0)) {
      findings.fail(
        RULE.connections,
        "after every client closed",
        "",
        `connection_number is ${await connectionNumber(daemon.adminPort)}, expected 0`,
      );
    }
    console.log(
      `fuzz_stream: seed ${SEED}, ${cases.length} cases (${
        cases.filter((c) => c.plan.end === "fatal").length
      } fatal, ${cases.filter((c) => c.plan.end === "ended").length} closed by the client), ` +
        `${expected} messages to the victim`,
    );
  } finally {
    for (const w of held) w.close();
    await victim?.close();
    assert.equal(await daemon.stop(), 0, "the daemon exits cleanly after the fuzz run");
  }
  findings.assertNone();
});
