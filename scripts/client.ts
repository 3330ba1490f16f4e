/**
 * A terminal client for trying ipush by hand: it connects as one user over the raw protocol
 * (following the 303 to the user's shard, as a mobile client does), prints every message it
 * gets on its own line, acks what it printed, and reads commands from the keyboard.
 *
 * ```sh
 * deno task client -- --uid=alice [--password=pw] [--host=127.0.0.1:9000] [--device=phone]
 * ```
 *
 * Commands (one a line): `send <uid> <text>`, `pub <channel> <text>`, `sub <channel>`,
 * `unsub <channel>`, `help`, `quit` (or end of input). What arrives looks like:
 *
 * ```
 * 12:00:01 bob → you: lunch?  (s=3)
 * 12:00:05 #news op: standup in 5  (s=4)
 * 12:00:06 ! server: invalid t
 * ```
 *
 * It heartbeats every 30 s, so an idle terminal stays connected. Exit code: 0 after `quit` or
 * the server's graceful close, 1 when the connection is refused or breaks, 2 for bad flags.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { ChunkDecoder, ChunkError, encodeTextChunk, LAST_CHUNK } from "../src/protocol/chunk.ts";
import { headLength } from "../src/protocol/handshake.ts";

const HEARTBEAT_MS = 30_000;
/** 303s followed at most: the front door sends one, a shard none for its own uid. */
const MAX_REDIRECTS = 3;
/** The largest message this client takes (the daemon's default --max_frame_bytes). */
const MAX_FRAME_BYTES = 65_536;

const HELP = `commands:
  send <uid> <text>       a message to one user (y=3)
  pub <channel> <text>    a message to every subscriber of a channel (y=4)
  sub <channel>           subscribe to a channel (y=1)
  unsub <channel>         unsubscribe (y=2)
  help                    this list
  quit                    close the connection and leave (end of input does too)`;

const USAGE =
  "usage: deno task client -- --uid=alice [--password=pw] [--host=127.0.0.1:9000] [--device=D]";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Where to connect and as whom. */
interface Options {
  uid: string;
  password: string;
  device: string;
  host: string;
  port: number;
}

/** A connected stream: the socket, and what arrived after the 200 head. */
interface Connected {
  conn: Deno.TcpConn;
  rest: Uint8Array;
  /** The shard it reached, `host:port`. */
  at: string;
}

/** Thrown for a refused connect: the server's answer, to show as it is. */
class Refused extends Error {}

function parseOptions(args: string[]): Options {
  const { values } = parseArgs({
    args: args.filter((arg) => arg !== "--"),
    options: {
      uid: { type: "string" },
      password: { type: "string", default: "pw" },
      device: { type: "string", default: "" },
      host: { type: "string", default: "127.0.0.1:9000" },
    },
    strict: true,
  });
  if (!values.uid) throw new Error("--uid is required");
  const match = /^(\[[^\]]+\]|[^:]+)(?::(\d{1,5}))?$/.exec(values.host);
  if (!match) throw new Error(`--host=${values.host}: expected host or host:port`);
  return {
    uid: values.uid,
    password: values.password,
    device: values.device,
    host: match[1].replace(/^\[|\]$/g, ""),
    port: Number(match[2] ?? 9000),
  };
}

/** Connects, following 303s; throws {@linkcode Refused} with the server's reason. */
async function connect(options: Options): Promise<Connected> {
  // Percent-encoding, not form encoding: ipush reads a "+" as a plus (docs/protocol-notes.md).
  const query = Object.entries({
    uid: options.uid,
    password: options.password,
    device: options.device,
  })
    .filter(([name, value]) => name !== "device" || value !== "")
    .map(([name, value]) => `${name}=${encodeURIComponent(value)}`).join("&");
  let target = { host: options.host, port: options.port, path: `/connect?${query}` };
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const conn = await Deno.connect({ hostname: target.host, port: target.port });
    await writeAll(
      conn,
      encoder.encode(
        `GET ${target.path} HTTP/1.1\r\nHost: ${target.host}:${target.port}\r\n` +
          "User-Agent: ipush-terminal-client\r\n\r\n",
      ),
    );
    const { status, headers, rest } = await readHead(conn);
    if (status === 200) return { conn, rest, at: `${target.host}:${target.port}` };
    conn.close();
    const location = headers.get("location");
    if (status === 303 && location) {
      const url = new URL(location);
      target = {
        host: url.hostname.replace(/^\[|\]$/g, ""),
        port: Number(url.port),
        path: url.pathname + url.search,
      };
      continue;
    }
    const reason = decoder.decode(rest).trim();
    throw new Refused(`refused: HTTP ${status} ${reason}`);
  }
  throw new Refused(`refused: more than ${MAX_REDIRECTS} redirects`);
}

/** Reads a response head; what came after it is `rest` (a refusal's body, first chunks). */
async function readHead(
  conn: Deno.TcpConn,
): Promise<{ status: number; headers: Map<string, string>; rest: Uint8Array }> {
  let buffer = new Uint8Array(0);
  let length = -1;
  while (length < 0) {
    const chunk = new Uint8Array(4096);
    const read = await conn.read(chunk);
    if (read === null) throw new Refused("the server closed the connection before answering");
    const joined = new Uint8Array(buffer.length + read);
    joined.set(buffer);
    joined.set(chunk.subarray(0, read), buffer.length);
    buffer = joined;
    length = headLength(buffer);
  }
  const [statusLine, ...lines] = decoder.decode(buffer.subarray(0, length)).trim().split(/\r?\n/);
  const headers = new Map(lines.map((line) => {
    const colon = line.indexOf(":");
    return [line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()];
  }));
  let rest = buffer.subarray(length);
  // A refusal's body may follow in a later read: read it to its Content-Length.
  const size = Number(headers.get("content-length") ?? 0);
  while (rest.length < size) {
    const chunk = new Uint8Array(size - rest.length);
    const read = await conn.read(chunk);
    if (read === null) break;
    const joined = new Uint8Array(rest.length + read);
    joined.set(rest);
    joined.set(chunk.subarray(0, read), rest.length);
    rest = joined;
  }
  return { status: Number(statusLine.split(" ")[1]), headers, rest };
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
}

/** `12:00:01`, local time. */
function clock(): string {
  return new Date().toTimeString().slice(0, 8);
}

/** A `b` as a person reads it: a string as it is, anything else as JSON. */
function bodyText(body: unknown): string {
  return typeof body === "string" ? body : JSON.stringify(body);
}

/** One server message as a line for the terminal; null for what needs no line (heartbeats). */
function describe(message: Record<string, unknown>, uid: string): string | null {
  const seq = typeof message.s === "number" ? `  (s=${message.s})` : "";
  if (typeof message.error === "string") return `${clock()} ! server: ${message.error}`;
  switch (message.y) {
    case 0:
      return null;
    case 3: {
      const to = message.t === uid ? "you" : String(message.t);
      return `${clock()} ${message.f} → ${to}: ${bodyText(message.b)}${seq}`;
    }
    case 4:
      return `${clock()} #${message.c} ${message.f}: ${bodyText(message.b)}${seq}`;
    default:
      return `${clock()} ? ${JSON.stringify(message)}`;
  }
}

/** A command line as the frame to send and the line to echo, or a line to show alone. */
function command(
  line: string,
): { frame?: Record<string, unknown>; echo: string } | "quit" | null {
  const [word = "", ...rest] = line.trim().split(/\s+/);
  const [name = "", ...words] = rest;
  const text = line.trim().slice(word.length).trim().slice(name.length).trim();
  switch (word.toLowerCase()) {
    case "":
      return null;
    case "send":
    case "msg":
      if (!name || words.length === 0) return { echo: "usage: send <uid> <text>" };
      return { frame: { y: 3, t: name, b: text }, echo: `${clock()} you → ${name}: ${text}` };
    case "pub":
    case "publish":
      if (!name || words.length === 0) return { echo: "usage: pub <channel> <text>" };
      return { frame: { y: 4, c: name, b: text }, echo: `${clock()} you → #${name}: ${text}` };
    case "sub":
    case "subscribe":
      if (!name || words.length > 0) return { echo: "usage: sub <channel>" };
      return { frame: { y: 1, c: name }, echo: `${clock()} subscribing to #${name}` };
    case "unsub":
    case "unsubscribe":
      if (!name || words.length > 0) return { echo: "usage: unsub <channel>" };
      return { frame: { y: 2, c: name }, echo: `${clock()} unsubscribing from #${name}` };
    case "help":
    case "?":
      return { echo: HELP };
    case "quit":
    case "exit":
      return "quit";
    default:
      return { echo: `unknown command ${JSON.stringify(word)}; type help` };
  }
}

/** Lines of standard input, as they are typed. */
async function* inputLines(): AsyncGenerator<string> {
  let pending = "";
  for await (const text of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
    pending += text;
    let end;
    while ((end = pending.indexOf("\n")) >= 0) {
      yield pending.slice(0, end).replace(/\r$/, "");
      pending = pending.slice(end + 1);
    }
  }
  if (pending !== "") yield pending;
}

async function run(options: Options): Promise<number> {
  let connected: Connected;
  try {
    connected = await connect(options);
  } catch (error) {
    console.error(error instanceof Refused ? error.message : `cannot connect: ${error}`);
    return 1;
  }
  const { conn } = connected;
  const as = options.device === "" ? options.uid : `${options.uid} (device ${options.device})`;
  console.log(`* connected as ${as} at ${connected.at}; type help for commands`);

  let quitting = false;
  const send = (frame: Record<string, unknown>) =>
    writeAll(conn, encodeTextChunk(JSON.stringify(frame)));
  // Acks are cumulative: one for the highest s of each read.
  let toAck = 0;
  const decoderOfStream = new ChunkDecoder(MAX_FRAME_BYTES);
  const onBody = (body: Uint8Array) => {
    let message: Record<string, unknown>;
    try {
      message = JSON.parse(decoder.decode(body));
    } catch {
      console.log(`${clock()} ? ${decoder.decode(body).trim()}`);
      return;
    }
    const line = describe(message, options.uid);
    if (line !== null) console.log(line);
    if (typeof message.s === "number" && message.s > toAck) toAck = message.s;
  };

  const reading = (async (): Promise<number> => {
    let bytes = connected.rest;
    try {
      for (;;) {
        if (!decoderOfStream.push(bytes, onBody)) {
          console.log(quitting ? "* closed" : "* the server closed the stream");
          return 0;
        }
        if (toAck > 0) {
          await send({ y: 5, s: toAck });
          toAck = 0;
        }
        const buffer = new Uint8Array(65_536);
        const read = await conn.read(buffer);
        if (read === null) {
          if (quitting) return 0;
          console.log("* the connection was closed");
          return 1;
        }
        bytes = buffer.subarray(0, read);
      }
    } catch (error) {
      if (quitting) return 0;
      const reason = error instanceof ChunkError ? error.reason : (error as Error).message;
      console.log(`* the connection broke: ${reason}`);
      return 1;
    }
  })();
  const heartbeat = setInterval(() => send({ y: 0 }).catch(() => {}), HEARTBEAT_MS);

  const typing = (async () => {
    for await (const line of inputLines()) {
      const parsed = command(line);
      if (parsed === null) continue;
      if (parsed === "quit") break;
      console.log(parsed.echo);
      if (parsed.frame) await send(parsed.frame);
    }
    // `quit` or the end of input: the last chunk, then the server closes its side.
    quitting = true;
    await writeAll(conn, LAST_CHUNK).catch(() => {});
  })();

  const code = await Promise.race([reading, typing.then(() => reading)]);
  clearInterval(heartbeat);
  try {
    conn.close();
  } catch { /* closed by the server already */ }
  return code;
}

if (import.meta.main) {
  let options: Options;
  try {
    options = parseOptions(Deno.args);
  } catch (error) {
    console.error(`${(error as Error).message}\n${USAGE}`);
    Deno.exit(2);
  }
  Deno.exit(await run(options));
}
