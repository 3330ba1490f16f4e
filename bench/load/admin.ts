/**
 * The back end's side of the admin API (PROTOCOL.md §3), and of a peer's publisher
 * (`target.ts`): HTTP/1.1 requests on kept-alive `node:net` sockets, one request a socket at a
 * time, as many sockets as requests are in flight.
 *
 * Written on the socket rather than with `node:http` because the publisher's own cost bounds
 * what a fast server can be shown to do: 32 requests in flight to nchan on this machine,
 * interleaved, `node:http` with a keep-alive Agent 8,700 / 15,300 req/s, these sockets 25,400 /
 * 44,100, `wrk` 35,700 (earlier, `node:http` had measured ~38k req/s against a trivial
 * `Deno.serve` and `fetch` ~24k). Answers are read by `Content-Length`; a chunked or unframed
 * answer is read to its end and its socket not reused.
 *
 * @module
 */

import net from "node:net";
import { Buffer } from "node:buffer";
import { ChunkReader, parseHead } from "./wire.ts";

/** An answer of the admin API. */
export interface AdminResponse {
  status: number;
  body: string;
  /** The `Retry-After` header; null when absent. A refusal should carry it (PROTOCOL.md §3). */
  retryAfter: string | null;
}

/** A request waiting for its answer on a {@linkcode Connection}. */
interface Waiter {
  resolve(res: AdminResponse): void;
  reject(e: Error): void;
  deadline: number;
}

/** How often requests past their time-out are looked for (one timer for all). */
const SWEEP_MS = 250;

/** One kept-alive socket: one request at a time. */
class Connection {
  readonly socket: net.Socket;
  waiter: Waiter | null = null;
  #buf: Buffer | null = null;
  /** A chunked answer's body, once its head is read. */
  #chunks: { head: AdminResponse; reader: ChunkReader; body: string[] } | null = null;

  constructor(host: string, port: number, readonly done: (c: Connection, reuse: boolean) => void) {
    this.socket = net.connect({ host, port });
    this.socket.setNoDelay(true);
    this.socket.on("data", (data: Buffer) => this.#read(data));
    this.socket.on("error", (e: Error) => this.fail(e));
    this.socket.on("close", () => this.fail(new Error("connection closed before the answer")));
  }

  send(request: string, waiter: Waiter): void {
    this.waiter = waiter;
    this.socket.write(request);
  }

  /** Ends the socket; a request waiting on it fails with `e`. */
  fail(e: Error): void {
    const waiter = this.waiter;
    this.waiter = null;
    this.socket.destroy();
    this.done(this, false);
    waiter?.reject(e);
  }

  #read(data: Buffer): void {
    if (this.#chunks !== null) return this.#readChunks(data);
    const buf = this.#buf === null ? data : Buffer.concat([this.#buf, data]);
    this.#buf = null;
    let head;
    try {
      head = parseHead(buf);
    } catch (e) {
      return this.fail(e as Error);
    }
    if (head === null) {
      this.#buf = buf;
      return;
    }
    const answer = (body: string) => ({
      status: head.status,
      body,
      retryAfter: head.headers.get("retry-after") ?? null,
    });
    const length = head.headers.get("content-length");
    if (head.headers.get("transfer-encoding")?.includes("chunked")) {
      this.#chunks = { head: answer(""), reader: new ChunkReader(), body: [] };
      return this.#readChunks(buf.subarray(head.length));
    }
    if (length === undefined) {
      // Unframed: the body runs to the close.
      this.#buf = buf;
      this.socket.removeAllListeners("close");
      this.socket.on(
        "close",
        () => this.#answered(answer(this.#buf!.toString("utf8", head.length)), false),
      );
      return;
    }
    const end = head.length + Number(length);
    if (buf.length < end) {
      this.#buf = buf;
      return;
    }
    if (buf.length > end) return this.fail(new Error("bytes after the answer"));
    const close = head.headers.get("connection")?.toLowerCase() === "close";
    this.#answered(answer(buf.toString("utf8", head.length, end)), !close);
  }

  #readChunks(data: Buffer): void {
    const chunks = this.#chunks!;
    let ended;
    try {
      ended = chunks.reader.push(data, (body) => chunks.body.push(body));
    } catch (e) {
      return this.fail(e as Error);
    }
    if (ended) this.#answered({ ...chunks.head, body: chunks.body.join("") }, false);
  }

  #answered(res: AdminResponse, reuse: boolean): void {
    const waiter = this.waiter;
    this.waiter = null;
    if (reuse) this.done(this, true);
    else {
      this.socket.removeAllListeners("close");
      this.socket.destroy();
      this.done(this, false);
    }
    waiter?.resolve(res);
  }
}

/**
 * Keep-alive HTTP client for one admin endpoint. It opens as many sockets as requests are in
 * flight: callers bound that (the `--concurrency` flag), not the client.
 */
export class AdminClient {
  #idle: Connection[] = [];
  #all = new Set<Connection>();
  #sweeper: ReturnType<typeof setInterval> | undefined;

  constructor(readonly host: string, readonly port: number, readonly timeoutMs = 10_000) {}

  /** `POST /pub?to=uid&from=name` with the payload as body. */
  pubTo(uid: string, from: string, payload: string): Promise<AdminResponse> {
    return this.request("POST", `/pub?to=${enc(uid)}&from=${enc(from)}`, payload);
  }

  /** `POST /pub/batch`: one line per message to `uids[i]`, each with its own payload. */
  pubBatch(uids: string[], from: string, payloads: string[]): Promise<AdminResponse> {
    const fromJson = JSON.stringify(from);
    const lines = uids.map((uid, i) =>
      `{"to":${JSON.stringify(uid)},"from":${fromJson},"body":${JSON.stringify(payloads[i])}}\n`
    );
    return this.request("POST", "/pub/batch", lines.join(""));
  }

  /** `POST /pub?channel=cid&from=name` with the payload as body. */
  pubChannel(channel: string, from: string, payload: string): Promise<AdminResponse> {
    return this.request("POST", `/pub?channel=${enc(channel)}&from=${enc(from)}`, payload);
  }

  /** True when a publish's answer says the server took the message. */
  accepted(res: AdminResponse): boolean {
    return isOk(res);
  }

  /** `GET /sub?uid=uid&cid=cid`. */
  sub(uid: string, channel: string): Promise<AdminResponse> {
    return this.request("GET", `/sub?uid=${enc(uid)}&cid=${enc(channel)}`);
  }

  /** `GET /stats`, parsed; null when the server does not answer with JSON. */
  async stats(): Promise<unknown> {
    try {
      const res = await this.request("GET", "/stats");
      return res.status === 200 ? JSON.parse(res.body) : null;
    } catch {
      return null;
    }
  }

  /** One request; rejects on socket errors and after `timeoutMs`. */
  request(method: string, path: string, body?: string): Promise<AdminResponse> {
    const head = `${method} ${path} HTTP/1.1\r\nHost: ${this.host}:${this.port}\r\n` +
      (body === undefined ? "\r\n" : "Content-Type: text/plain; charset=utf-8\r\n" +
        `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    const connection = this.#idle.pop() ?? this.#open();
    this.#sweeper ??= setInterval(() => this.#sweep(), SWEEP_MS);
    return new Promise((resolve, reject) => {
      connection.send(head, { resolve, reject, deadline: performance.now() + this.timeoutMs });
    });
  }

  /** Closes every socket; requests still waiting fail. */
  close(): void {
    clearInterval(this.#sweeper);
    this.#sweeper = undefined;
    for (const c of [...this.#all]) c.fail(new Error("admin client closed"));
    this.#idle = [];
  }

  #open(): Connection {
    const connection = new Connection(this.host, this.port, (c, reuse) => {
      if (reuse) this.#idle.push(c);
      else {
        this.#all.delete(c);
        const at = this.#idle.indexOf(c);
        if (at >= 0) this.#idle.splice(at, 1);
      }
    });
    this.#all.add(connection);
    return connection;
  }

  /** Fails the requests past their time-out (closing their sockets). */
  #sweep(): void {
    const now = performance.now();
    for (const c of this.#all) {
      if (c.waiter !== null && c.waiter.deadline < now) c.fail(new Error("admin request timeout"));
    }
  }
}

/** True for the API's success answer `{"result":"ok"}` (whitespace tolerated). */
export function isOk(res: AdminResponse): boolean {
  return res.status === 200 && /"result"\s*:\s*"ok"/.test(res.body);
}

function enc(value: string): string {
  return encodeURIComponent(value);
}
