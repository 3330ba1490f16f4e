/**
 * One client on `node:net`: a raw-socket one (PROTOCOL.md §1–2: the `GET /connect`
 * handshake, following 303s to the owning shard, then the duplex chunk stream with acks), a
 * WebSocket (§6: the same after a 101, in frames), or a long-poll (§6: one poll after
 * another on a kept-alive socket, each acking what the one before returned). What the first
 * request is and what a stream message means come from the {@linkcode StreamTarget}, so the
 * same client is also a peer's subscriber (an nchan http-chunked one: a chunk stream that
 * only reads).
 *
 * Clients of one process share a {@linkcode ClientContext} (counters, histograms,
 * callbacks) so that each connection costs only its socket and a few fields.
 *
 * @module
 */

import net from "node:net";
import { Buffer } from "node:buffer";
import type { Histogram } from "./histogram.ts";
import { type AckMode, type ClientTransport, type Counters, nowMs } from "./ipc.ts";
import { dialAddress, isLoopback } from "./loopback.ts";
import type { StreamTarget } from "./target.ts";
import {
  ChunkReader,
  encodeFrame,
  encodeWsFrame,
  type Frame,
  parseHead,
  pollRequest,
  WsReader,
} from "./wire.ts";

/** What all clients of a process share. */
export interface ClientContext {
  host: string;
  transport: ClientTransport;
  /** How a stream opens and what its messages are (ipush over `transport`, or a peer). */
  stream: StreamTarget;
  ack: AckMode;
  connectTimeoutMs: number;
  maxRedirects: number;
  counters: Counters;
  /** Time from starting a client to its 200, 303 hops included. */
  connectHist: Histogram;
  /** Counts a failure or drop reason. */
  reason(text: string): void;
  /** The client got its 200. */
  onOpen(client: Client): void;
  /** The client will not open (it never got a 200). */
  onFail(client: Client): void;
  /** An open client closed; `wanted` is false when the server or network closed it. */
  onClosed(client: Client, wanted: boolean): void;
  /** A parsed frame arrived (acks are already queued). */
  onFrame(client: Client, frame: Frame): void;
}

const LAST_CHUNK = "0\r\n\r\n";
const CLOSE_FRAME = String.fromCharCode(0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8); // 1000, masked
/** Larger heads are not what an ipush server sends; stop buffering. */
const MAX_HEAD = 16384;

/** One connection for one uid. */
export class Client {
  /** Position in the owner's list of open clients (kept by the owner). */
  slot = -1;
  #socket: net.Socket | null = null;
  #reader: ChunkReader | WsReader;
  /** A long-poll's answer read so far (its head and body). */
  #answer: Buffer | null = null;
  #open = false;
  #closing = false;
  #done = false;
  #startedAt = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #acks = "";
  /** The last `{"error": …}` the server sent: the reason it closes, when it does. */
  #serverError: string | null = null;
  #maxSeq = -1;

  /**
   * @param port the front door it dials first (of `ctx.host`), whose 303 it follows to the
   *   owner
   */
  constructor(
    readonly ctx: ClientContext,
    readonly uid: string,
    readonly password: string,
    readonly port: number,
    readonly localAddress: string | undefined,
  ) {
    const encoding = ctx.stream.binary ? "latin1" : "utf8";
    this.#reader = ctx.transport === "ws" ? new WsReader(encoding) : new ChunkReader(encoding);
  }

  /** True between the 200 and the close. */
  get open(): boolean {
    return this.#open;
  }

  /** Bytes queued in the socket but not yet handed to the kernel. */
  get writableLength(): number {
    return this.#socket?.writableLength ?? 0;
  }

  /** Dials the front door; ends in exactly one of `onOpen` or `onFail`. */
  start(): void {
    this.#startedAt = nowMs();
    this.ctx.counters.attempts++;
    this.#timer = setTimeout(() => this.#fail("connect timeout"), this.ctx.connectTimeoutMs);
    this.#dial(this.ctx.host, this.port, this.ctx.stream.path(this.uid, this.password), 0);
  }

  /** Sends one frame with the given JSON body (a read-only stream sends nothing). */
  send(body: string): void {
    if (this.ctx.stream.duplex) this.#socket?.write(this.#frame(body), "latin1");
  }

  /** Sends a heartbeat; false for a read-only stream (a long-poll's, a peer's). */
  heartbeat(): boolean {
    const transport = this.ctx.transport;
    if (!this.ctx.stream.duplex || transport === "poll") return false;
    this.#socket?.write(this.#frame(this.ctx.stream.heartbeat), "latin1");
    return true;
  }

  /** Closes gracefully (the last chunk or a close frame, then FIN); `onClosed` follows. */
  close(): void {
    this.#closing = true;
    if (this.#open) {
      const transport = this.ctx.transport;
      if (transport === "poll") this.#socket?.end();
      else this.#socket?.end(transport === "ws" ? CLOSE_FRAME : LAST_CHUNK, "latin1");
    } else if (!this.#done) {
      this.#fail("closed by load generator");
    }
  }

  /** Drops the socket without ceremony (end of run, stragglers). */
  destroy(): void {
    this.#closing = true;
    this.#socket?.destroy();
  }

  #dial(host: string, port: number, path: string, hops: number): void {
    const address = dialAddress(host);
    const socket = net.connect({
      host: address,
      port,
      localAddress: net.isIPv4(address) ? this.localAddress : undefined,
    });
    this.#socket = socket;
    socket.setNoDelay(true);
    const transport = this.ctx.transport;
    socket.write(this.ctx.stream.request(path));
    let head: Buffer | null = null;
    let error = "";
    socket.on("data", (data: Buffer) => {
      if (this.#socket !== socket) return;
      if (transport === "poll") {
        this.#onPollData(socket, data, hops, path);
        return;
      }
      if (this.#open) {
        this.#onData(data);
        return;
      }
      head = head === null ? data : Buffer.concat([head, data]);
      this.#onHead(socket, head, hops);
    });
    socket.on("error", (e: Error & { code?: string }) => {
      error = e.code ?? e.message;
    });
    socket.on("close", () => {
      if (this.#socket !== socket) return;
      this.#socket = null;
      if (this.#open) {
        this.#open = false;
        if (!this.#closing) {
          this.ctx.reason(`dropped: ${this.#serverError ?? (error || "closed by server")}`);
        }
        this.ctx.onClosed(this, this.#closing);
      } else {
        this.#fail(error || "closed before response");
      }
    });
  }

  #onHead(socket: net.Socket, head: Buffer, hops: number): void {
    let parsed;
    try {
      parsed = parseHead(head);
    } catch (e) {
      this.#fail((e as Error).message);
      return;
    }
    if (parsed === null) {
      if (head.length > MAX_HEAD) this.#fail("response head too long");
      return;
    }
    if (parsed.status === (this.ctx.transport === "ws" ? 101 : 200)) {
      this.#opened();
      if (head.length > parsed.length) this.#onData(head.subarray(parsed.length));
      return;
    }
    if (parsed.status === 303) {
      this.#follow(socket, parsed.headers.get("location"), hops);
      return;
    }
    const body = head.toString("utf8", parsed.length, parsed.length + 80);
    this.#fail(`HTTP ${parsed.status} ${body}`.trim());
  }

  #follow(socket: net.Socket, location: string | undefined, hops: number): void {
    // The server closes after a 303; do not wait for it.
    this.#socket = null;
    socket.destroy();
    if (location === undefined) return this.#fail("303 without Location");
    if (hops >= this.ctx.maxRedirects) return this.#fail("too many redirects");
    let url: URL;
    try {
      url = new URL(location, `http://${this.ctx.host}:${this.port}`);
    } catch {
      return this.#fail("303 with a bad Location");
    }
    if (!isLoopback(url.hostname)) return this.#fail("303 to a non-loopback host (refused)");
    this.ctx.counters.redirects++;
    const port = url.port === "" ? 80 : Number(url.port);
    this.#dial(url.hostname, port, url.pathname + url.search, hops + 1);
  }

  #opened(): void {
    clearTimeout(this.#timer);
    this.#open = true;
    this.#done = true;
    this.ctx.connectHist.recordMs(nowMs() - this.#startedAt);
    this.ctx.onOpen(this);
  }

  /**
   * A long-poll's bytes: whole answers (head and `Content-Length` body) are taken as they
   * complete; each one's messages go to `onFrame`, then the next poll goes out on the same
   * socket with `since` the highest `s` seen, which acks them.
   */
  #onPollData(socket: net.Socket, data: Buffer, hops: number, path: string): void {
    const buf = this.#answer === null ? data : Buffer.concat([this.#answer, data]);
    this.#answer = null;
    let parsed;
    try {
      parsed = parseHead(buf);
    } catch (e) {
      return this.#fail((e as Error).message);
    }
    if (parsed === null) {
      if (buf.length > MAX_HEAD) return this.#fail("response head too long");
      this.#answer = Buffer.from(buf);
      return;
    }
    if (parsed.status === 303) return this.#follow(socket, parsed.headers.get("location"), hops);
    const end = parsed.length + Number(parsed.headers.get("content-length") ?? 0);
    if (buf.length < end) {
      this.#answer = Buffer.from(buf);
      return;
    }
    const body = buf.toString("utf8", parsed.length, end);
    if (parsed.status !== 200) return this.#fail(`HTTP ${parsed.status} ${body.slice(0, 80)}`);
    if (!this.#open) this.#opened();
    let messages: Frame[];
    try {
      messages = JSON.parse(body).result;
    } catch {
      this.ctx.counters.badFrames++;
      this.ctx.reason("bad poll answer: not JSON");
      return void socket.destroy();
    }
    for (const frame of messages) {
      if (typeof frame.s === "number" && frame.s > this.#maxSeq) this.#maxSeq = frame.s;
      this.ctx.onFrame(this, frame);
    }
    if (messages.length > 0) this.ctx.counters.acksOut++;
    const since = Math.max(this.#maxSeq, 0);
    socket.write(pollRequest(path.replace(/&wait=0&since=\d+$/, `&since=${since}`)));
  }

  #fail(reason: string): void {
    if (this.#done) return;
    this.#done = true;
    clearTimeout(this.#timer);
    this.#socket?.destroy();
    this.#socket = null;
    this.ctx.reason(reason);
    this.ctx.onFail(this);
  }

  #onData(data: Buffer): void {
    let ended: boolean;
    try {
      ended = this.#reader.push(data, this.#onFrame);
    } catch (e) {
      this.ctx.counters.badFrames++;
      this.ctx.reason(`bad frame: ${(e as Error).message}`);
      this.#socket?.destroy();
      return;
    }
    this.#flushAcks();
    if (ended) this.#socket?.end();
  }

  #onFrame = (body: string): void => {
    let frame: Frame;
    try {
      frame = this.ctx.stream.frame(body);
    } catch {
      this.ctx.counters.badFrames++;
      this.ctx.reason(`bad frame: not ${this.ctx.stream.binary ? "MessagePack" : "JSON"}`);
      return;
    }
    if (typeof frame.error === "string") this.#serverError = JSON.stringify({ error: frame.error });
    const s = frame.s;
    if (typeof s === "number" && this.ctx.ack !== "none") {
      if (this.ctx.ack === "each") {
        this.#acks += this.#frame(this.ctx.stream.ack(this.uid, s));
        this.ctx.counters.acksOut++;
      } else if (s > this.#maxSeq) {
        this.#maxSeq = s;
      }
    }
    this.ctx.onFrame(this, frame);
  };

  /** One write per read: every ack of the read (`each`) or the highest seq (`read`). */
  #flushAcks(): void {
    if (this.#maxSeq >= 0) {
      this.#acks += this.#frame(this.ctx.stream.ack(this.uid, this.#maxSeq));
      this.ctx.counters.acksOut++;
      this.#maxSeq = -1;
    }
    if (this.#acks !== "") {
      this.#socket?.write(this.#acks, "latin1");
      this.#acks = "";
    }
  }

  /** One message as this client's stream frames it (a WebSocket frame or a chunk). */
  #frame(body: string): string {
    const binary = this.ctx.stream.binary;
    return this.ctx.transport === "ws"
      ? encodeWsFrame(body, binary ? 2 : 1)
      : encodeFrame(body, binary ? "latin1" : "utf8");
  }
}
