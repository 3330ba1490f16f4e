// @ts-check
/**
 * ipush.js — the JavaScript client of the ipush push server: one ES module without
 * dependencies, for browsers, Deno and Node 20. Every client port of the daemon serves it at
 * `GET /ipush.js`.
 *
 * ```js
 * import { connect } from "http://push.example.com:9000/ipush.js";
 * const client = connect({ uid: "alice", password: "secret" });
 * client.on("message", (m) => console.log(m.f, "says", m.b));
 * client.on("state", (e) => console.log(e.state, e.transport ?? ""));
 * await client.send("bob", "hello");
 * await client.subscribe("news");
 * await client.publish("news", { title: "ipush in the browser" });
 * ```
 *
 * What it does for you:
 *
 * - Asks the front door where the uid lives (`GET /shard`), remembers it, and connects there
 *   (a WebSocket cannot follow the front door's 303); forgets it when a connection fails.
 * - Picks the first transport that works, in `transports` order: a WebSocket, then server-sent
 *   events (read with `fetch`, so Node 20 without `EventSource` can too) with `POST /send` for
 *   what it sends, then long-poll with `POST /send`. The one that worked is tried first on the
 *   next reconnect.
 * - Reconnects with jittered exponential backoff (0.5 s doubling to 30 s, each delay drawn
 *   between half and all of it), forever, unless the server refuses the client for good (a
 *   wrong password or token: state `failed`).
 * - Resumes from the last `s` it saw (`since=`), and hands each message to you once: a
 *   replayed `s` it already delivered is dropped.
 * - Acks what you got automatically (over the WebSocket, or by `/send`; a long-poll's next
 *   `since` is its ack), or only when you call `ack(s)` (`autoAck: false`). With long-poll, a
 *   poll's `since` is always an ack (PROTOCOL.md §6): unacked messages come back on each poll
 *   until acked, so polls are then spaced by a second.
 *
 * Events: `message` (a §2 message: `{y, f, t, c?, b, s?}`), `state` (`{state, transport?,
 * delayMs?, error?}`; `connecting`, `open`, `reconnecting`, `failed`, `closed`), `error` (an
 * `{"error"}` the server sent, or a refused message: the client carries on).
 *
 * `send`, `publish`, `subscribe` and `unsubscribe` resolve once the message is on its way
 * over an open WebSocket, or once the server has stored (or forwarded) it when it goes by
 * `/send`; they reject with the server's reason (`forbidden`, `invalid t`, …).
 *
 * In Node, a `WebSocket` implementation may be passed (`{ WebSocket }`, as npm `ws`'s);
 * without one the client starts with server-sent events.
 *
 * @module
 */

/** The transports, in the order they are tried. */
export const TRANSPORTS = /** @type {const} */ (["ws", "sse", "poll"]);

/** @typedef {(typeof TRANSPORTS)[number]} TransportName */

/**
 * @typedef {object} Options
 * @property {string} uid
 * @property {string} [password] the password (or, under `--auth=token`, the token)
 * @property {string} [token] the same as `password`, by its other name
 * @property {string} [device] the device (PROTOCOL.md §7); "" for the default one
 * @property {string} [url] the front door, as `http://host:port` (in a browser, default: where
 *   this module was loaded from)
 * @property {readonly TransportName[]} [transports] which to try, in order (default: all)
 * @property {boolean} [autoAck] ack every message as it arrives (default: true)
 * @property {number} [since] resume after this `s` (say, one the app kept from a last visit)
 * @property {{ initialMs?: number, maxMs?: number }} [backoff] reconnect delays
 * @property {number} [heartbeatMs] WebSocket heartbeat (`{"y":0}`) period (default: 30 s)
 * @property {number} [pollWaitSec] how long a poll is held (default: 25)
 * @property {typeof WebSocket} [WebSocket] a WebSocket implementation (default: the global)
 * @property {typeof fetch} [fetch] a fetch implementation (default: the global)
 * @property {() => number} [random] for the backoff's jitter (default: Math.random)
 */

/**
 * A message as the server sends it (PROTOCOL.md §2).
 * @typedef {{ y: number, f?: string, t?: string, c?: string, b?: unknown, s?: number,
 *   error?: string }} Message
 */

/**
 * @typedef {object} StateEvent
 * @property {"connecting" | "open" | "reconnecting" | "failed" | "closed"} state
 * @property {TransportName} [transport]
 * @property {number} [delayMs] before the next attempt (`reconnecting`)
 * @property {Error} [error] why (`reconnecting`, `failed`)
 */

/** @typedef {{ message: Message, state: StateEvent, error: Error }} Events */

/** A refusal or failure; `fatal` when trying again cannot help (a wrong password). */
export class IpushError extends Error {
  /**
   * @param {string} message
   * @param {{ status?: number, fatal?: boolean, retryAfterMs?: number }} [details]
   */
  constructor(message, details = {}) {
    super(message);
    this.name = "IpushError";
    /** The HTTP status of a refusal, if it was one. */
    this.status = details.status;
    this.fatal = details.fatal ?? false;
    /** How long the server asked to wait before trying again (its `Retry-After`), if it did. */
    this.retryAfterMs = details.retryAfterMs;
  }
}

/** A connection held open this long resets the backoff. */
const STABLE_MS = 10_000;
/** How long a transport may take to open. */
const OPEN_TIMEOUT_MS = 10_000;
/** Silence on an event stream past this means it is dead (the server comments every 15 s). */
const STREAM_SILENCE_MS = 45_000;
/** Most lines one `/send` carries (the server's limit). */
const SEND_MAX_LINES = 1000;
/** With manual acks, a poll that brought messages waits this long before the next. */
const UNACKED_POLL_PAUSE_MS = 1000;

/**
 * The delay before reconnect attempt `attempt` (0 first): `initialMs` doubling up to
 * `maxMs`, drawn between half and all of that.
 * @param {number} attempt
 * @param {{ initialMs?: number, maxMs?: number }} [options]
 * @param {() => number} [random]
 */
export function backoffDelay(attempt, options = {}, random = Math.random) {
  const initial = options.initialMs ?? 500;
  const max = options.maxMs ?? 30_000;
  const ceiling = Math.min(max, initial * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + (ceiling / 2) * random());
}

/**
 * An incremental `text/event-stream` parser (WHATWG HTML §9.2.6, as far as ipush uses it):
 * feed it text as it arrives; it returns each event's data (multi-line data joined with LF).
 */
export class EventStreamParser {
  #buffer = "";
  /** @type {string[]} */
  #data = [];

  /**
   * @param {string} text
   * @returns {string[]} the data of the events completed by `text`
   */
  push(text) {
    this.#buffer += text;
    /** @type {string[]} */
    const events = [];
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.#buffer);
      // A CR at the very end may be the first half of a CRLF.
      if (!match || (match[0] === "\r" && match.index === this.#buffer.length - 1)) break;
      const line = this.#buffer.slice(0, match.index);
      this.#buffer = this.#buffer.slice(match.index + match[0].length);
      if (line === "") {
        if (this.#data.length > 0) events.push(this.#data.join("\n"));
        this.#data = [];
      } else if (!line.startsWith(":")) {
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "data") this.#data.push(value);
      }
    }
    return events;
  }
}

/**
 * One connection over one transport: `opened` settles when it is up (or could not be),
 * `ended` resolves with why it went down, `write` sends a line on it if it carries the
 * client's messages.
 * @typedef {object} Link
 * @property {TransportName} transport
 * @property {Promise<void>} opened
 * @property {Promise<Error>} ended
 * @property {(line: string) => boolean} write
 * @property {() => void} close
 */

/** A client of one uid; see the module comment. */
export class IpushClient {
  /** @type {Options} */
  #options;
  /** @type {URL} */
  #frontDoor;
  #password;
  /** @type {TransportName[]} */
  #order;
  /** Listeners by event; `on` is what keeps each one's type. */
  /** @type {Map<keyof Events, Set<(event: any) => void>>} */
  #listeners = new Map();
  /** @type {StateEvent["state"]} */
  #state = "connecting";
  /** @type {Link | null} */
  #link = null;
  /** The shard's `host:port`, once looked up. */
  /** @type {string | null} */
  #shard = null;
  #closed = false;
  /** Highest `s` handed to the app. */
  #lastSeq;
  /** Highest `s` to ack, and the highest acked. */
  #ackWanted;
  #acked;
  #ackScheduled = false;
  /** Lines waiting for `/send`. */
  /** @type {{ line: string, resolve: () => void, reject: (error: Error) => void }[]} */
  #outbox = [];
  #sending = false;
  /** @type {(() => void) | null} */
  #wake = null;

  /** @param {Options} options */
  constructor(options) {
    if (typeof options?.uid !== "string" || options.uid === "") {
      throw new TypeError("ipush: a uid is needed");
    }
    this.#options = options;
    this.#password = options.password ?? options.token ?? "";
    this.#frontDoor = new URL(options.url ?? defaultUrl());
    this.#order = [...(options.transports ?? TRANSPORTS)];
    const unknown = this.#order.find((name) => !TRANSPORTS.includes(name));
    if (unknown !== undefined || this.#order.length === 0) {
      throw new TypeError(`ipush: transports are ${TRANSPORTS.join(", ")}`);
    }
    this.#lastSeq = options.since ?? 0;
    this.#ackWanted = this.#lastSeq;
    this.#acked = this.#lastSeq;
    // Listeners attached right after `connect` hear the first state.
    setTimeout(() => this.#run());
  }

  /** `connecting`, `open`, `reconnecting`, `failed` or `closed`. */
  get state() {
    return this.#state;
  }

  /** The transport of the open connection, if there is one. */
  get transport() {
    return this.#state === "open" ? this.#link?.transport : undefined;
  }

  /** The highest `s` handed to the app: where a later connect resumes. */
  get lastSeq() {
    return this.#lastSeq;
  }

  /**
   * Listens to `event`; returns what stops it.
   * @template {keyof Events} K
   * @param {K} event
   * @param {(event: Events[K]) => void} listener
   * @returns {() => void}
   */
  on(event, listener) {
    let listeners = this.#listeners.get(event);
    if (!listeners) this.#listeners.set(event, listeners = new Set());
    listeners.add(listener);
    return () => void listeners.delete(listener);
  }

  /**
   * Sends `body` (any JSON value) to one user.
   * @param {string} to
   * @param {unknown} body
   */
  send(to, body) {
    return this.#submit({ y: 3, t: to, b: body });
  }

  /**
   * Sends `body` to every subscriber of `channel`.
   * @param {string} channel
   * @param {unknown} body
   */
  publish(channel, body) {
    return this.#submit({ y: 4, c: channel, b: body });
  }

  /** @param {string} channel */
  subscribe(channel) {
    return this.#submit({ y: 1, c: channel });
  }

  /** @param {string} channel */
  unsubscribe(channel) {
    return this.#submit({ y: 2, c: channel });
  }

  /**
   * Acks every message up to `s` (with `autoAck: false`; automatic acks need no call).
   * @param {number} s
   */
  ack(s) {
    if (s > this.#ackWanted && s <= this.#lastSeq) {
      this.#ackWanted = s;
      this.#scheduleAck();
    }
  }

  /** Closes for good. */
  close() {
    if (this.#closed) return;
    this.#closed = true;
    this.#link?.close();
    this.#wake?.();
    for (const { reject } of this.#outbox.splice(0)) reject(new IpushError("closed"));
    this.#setState({ state: "closed" });
  }

  /**
   * @template {keyof Events} K
   * @param {K} event
   * @param {Events[K]} value
   */
  #emit(event, value) {
    for (const listener of this.#listeners.get(event) ?? []) {
      try {
        listener(value);
      } catch (error) {
        // A listener's bug must not stop the client.
        setTimeout(() => {
          throw error;
        });
      }
    }
  }

  /** @param {StateEvent} event */
  #setState(event) {
    this.#state = event.state;
    this.#emit("state", event);
  }

  /** Connects, and connects again whenever the connection goes, until closed or refused. */
  async #run() {
    let attempt = 0;
    while (!this.#closed) {
      /** @type {Error} */
      let error;
      try {
        const link = await this.#open();
        const openedAt = Date.now();
        error = await link.ended;
        this.#link = null;
        if (Date.now() - openedAt >= STABLE_MS) attempt = 0;
      } catch (failure) {
        error = failure instanceof Error ? failure : new Error(String(failure));
      }
      if (this.#closed) return;
      if (error instanceof IpushError && error.fatal) {
        return this.#setState({ state: "failed", error });
      }
      const delayMs = Math.max(
        backoffDelay(attempt++, this.#options.backoff, this.#options.random),
        error instanceof IpushError ? error.retryAfterMs ?? 0 : 0,
      );
      this.#setState({ state: "reconnecting", delayMs, error });
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, delayMs);
        this.#wake = () => {
          clearTimeout(timer);
          resolve(undefined);
        };
      });
      this.#wake = null;
    }
  }

  /** Opens the first transport that works; throws the last one's failure. */
  async #open() {
    const shard = await this.#shardAddress();
    /** @type {Error} */
    let failure = new IpushError("no transport available");
    for (const transport of [...this.#order]) {
      if (this.#closed) throw new IpushError("closed");
      if (transport === "ws" && !this.#webSocket()) continue;
      this.#setState({ state: "connecting", transport });
      const link = this.#connect(transport, shard);
      this.#link = link;
      try {
        await link.opened;
      } catch (error) {
        this.#link = null;
        failure = error instanceof Error ? error : new Error(String(error));
        if (failure instanceof IpushError && failure.fatal) throw failure;
        continue;
      }
      // The one that worked goes first next time.
      this.#order = [transport, ...this.#order.filter((name) => name !== transport)];
      this.#setState({ state: "open", transport });
      this.#flushAcks();
      return link;
    }
    // The shard may have moved: ask again next time.
    this.#shard = null;
    throw failure;
  }

  /** @returns {typeof WebSocket | undefined} */
  #webSocket() {
    return this.#options.WebSocket ?? globalThis.WebSocket;
  }

  /** @returns {typeof fetch} */
  #fetch() {
    return this.#options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  /** The shard's `host:port`, asked of the front door once and then remembered. */
  async #shardAddress() {
    if (this.#shard !== null) return this.#shard;
    const url = new URL("/shard", this.#frontDoor);
    url.searchParams.set("uid", this.#options.uid);
    const response = await this.#fetch()(url, { cache: "no-store" });
    if (!response.ok) throw await refusalOf(response);
    const { result } = await response.json();
    if (typeof result !== "string") throw new IpushError("bad /shard answer");
    return this.#shard = result;
  }

  /**
   * The URL of `path` at the shard, with the client's credentials.
   * @param {string} shard
   * @param {string} path
   * @param {Record<string, string | number>} [extra]
   */
  #url(shard, path, extra = {}) {
    const url = new URL(`${this.#frontDoor.protocol}//${shard}${path}`);
    url.searchParams.set("uid", this.#options.uid);
    url.searchParams.set("password", this.#password);
    if (this.#options.device) url.searchParams.set("device", this.#options.device);
    for (const [name, value] of Object.entries(extra)) url.searchParams.set(name, String(value));
    return url;
  }

  /** Where a connection resumes: what was seen (and so acked), or what the app acked. */
  #since() {
    return this.#options.autoAck === false ? this.#ackWanted : this.#lastSeq;
  }

  /**
   * @param {TransportName} transport
   * @param {string} shard
   * @returns {Link}
   */
  #connect(transport, shard) {
    /** @param {Message} message */
    const deliver = (message) => this.#receive(message);
    const since = this.#since();
    if (transport === "ws") {
      const url = this.#url(shard, "/connect", { since });
      url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
      const heartbeatMs = this.#options.heartbeatMs ?? 30_000;
      return webSocketLink(
        /** @type {typeof WebSocket} */ (this.#webSocket()),
        url,
        heartbeatMs,
        deliver,
      );
    }
    if (transport === "sse") {
      return eventStreamLink(this.#fetch(), this.#url(shard, "/sse", { since }), deliver);
    }
    return pollLink(
      this.#fetch(),
      (wait) => this.#url(shard, "/poll", { since: this.#since(), wait }),
      this.#options.pollWaitSec ?? 25,
      this.#options.autoAck === false ? UNACKED_POLL_PAUSE_MS : 0,
      deliver,
    );
  }

  /** @param {Message} message */
  #receive(message) {
    if (message.error !== undefined) {
      this.#emit("error", new IpushError(message.error));
      return;
    }
    if (message.y === 0) return;
    const s = message.s;
    if (typeof s === "number") {
      if (s <= this.#lastSeq) return;
      this.#lastSeq = s;
    }
    this.#emit("message", message);
    if (typeof s === "number" && this.#options.autoAck !== false) {
      this.#ackWanted = s;
      this.#scheduleAck();
    }
  }

  #scheduleAck() {
    if (this.#ackScheduled) return;
    this.#ackScheduled = true;
    // The acks of one burst of messages go as one.
    setTimeout(() => {
      this.#ackScheduled = false;
      this.#flushAcks();
    });
  }

  /** Sends the highest ack due: on the WebSocket, or by `/send`; a poll's `since` does it. */
  #flushAcks() {
    if (this.#ackWanted <= this.#acked || this.#closed) return;
    const link = this.#link;
    if (this.#state !== "open" || !link) return;
    if (link.transport === "poll" && this.#options.autoAck !== false) return;
    const s = this.#ackWanted;
    if (link.write(JSON.stringify({ y: 5, s }))) this.#acked = s;
    else this.#sendSoon();
  }

  /**
   * @param {Record<string, unknown>} message
   * @returns {Promise<void>}
   */
  #submit(message) {
    if (this.#closed) return Promise.reject(new IpushError("closed"));
    const line = JSON.stringify(message);
    if (this.#state === "open" && this.#link?.write(line)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.#outbox.push({ line, resolve, reject });
      this.#sendSoon();
    });
  }

  #sendSoon() {
    if (!this.#sending) setTimeout(() => this.#sendBatch());
  }

  /** One `/send` at a time, so that what is sent keeps its order. */
  async #sendBatch() {
    if (this.#sending || this.#closed) return;
    const ackDue = this.#ackWanted > this.#acked && this.#link?.transport !== "ws";
    if (this.#outbox.length === 0 && !ackDue) return;
    this.#sending = true;
    const batch = this.#outbox.splice(0, SEND_MAX_LINES - 1);
    const lines = batch.map((item) => item.line);
    const ack = this.#ackWanted;
    if (ackDue) lines.push(JSON.stringify({ y: 5, s: ack }));
    try {
      const shard = await this.#shardAddress();
      const response = await this.#fetch()(this.#url(shard, "/send"), {
        method: "POST",
        // A simple request: no preflight.
        headers: { "content-type": "text/plain;charset=UTF-8" },
        body: lines.join("\n"),
        cache: "no-store",
      });
      if (!response.ok) throw await refusalOf(response);
      const { result } = await response.json();
      batch.forEach((item, i) => {
        const answer = result?.[i];
        if (answer === "ok") item.resolve();
        else {
          const error = new IpushError(answer?.error ?? "no answer");
          this.#emit("error", error);
          item.reject(error);
        }
      });
      if (ackDue && result?.[batch.length] === "ok") this.#acked = Math.max(this.#acked, ack);
    } catch (failure) {
      // Not sent again by itself: a message that did arrive would arrive twice.
      const error = failure instanceof Error ? failure : new Error(String(failure));
      for (const item of batch) item.reject(error);
    } finally {
      this.#sending = false;
    }
    if (this.#outbox.length > 0 || (this.#ackWanted > this.#acked && this.#state === "open")) {
      this.#sendSoon();
    }
  }
}

/**
 * Connects a client (see {@linkcode IpushClient}).
 * @param {Options} options
 */
export function connect(options) {
  return new IpushClient(options);
}

/** In a browser, the daemon this module was loaded from. */
function defaultUrl() {
  const here = new URL(import.meta.url);
  if (here.protocol === "http:" || here.protocol === "https:") return here.origin;
  throw new TypeError("ipush: give the front door's url");
}

/**
 * The error a refused request carries: the server's `{"error"}` and its status. A 4xx is
 * fatal: trying again gets the same answer (a wrong password, a bad uid, an origin not let in).
 * But not a 429: a limit (too many connections of the uid, too many handshakes from an
 * address) that waiting can clear; it is tried again after the backoff, or the `Retry-After`
 * when that is longer.
 * @param {Response} response
 */
async function refusalOf(response) {
  let reason = `HTTP ${response.status}`;
  try {
    const body = await response.json();
    if (typeof body?.error === "string") reason = body.error;
  } catch {
    // No JSON: the status says it.
  }
  const fatal = response.status >= 400 && response.status < 500 && response.status !== 429;
  const retryAfter = Number(response.headers.get("retry-after") ?? "");
  const retryAfterMs = Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : 0;
  return new IpushError(reason, { status: response.status, fatal, retryAfterMs });
}

/** A promise and its resolvers (`Promise.withResolvers` is newer than Node 20). */
function deferred() {
  /** @type {(value?: any) => void} */
  let resolve = () => {};
  /** @type {(error: Error) => void} */
  let reject = () => {};
  const promise = new Promise((yes, no) => {
    resolve = yes;
    reject = no;
  });
  return { promise, resolve, reject };
}

/**
 * A WebSocket to the shard: a message a text frame; `{"y":0}` every `heartbeatMs`, and closed
 * when nothing at all was heard for two and a half of those.
 * @param {typeof WebSocket} WebSocketImpl
 * @param {URL} url
 * @param {number} heartbeatMs
 * @param {(message: Message) => void} deliver
 * @returns {Link}
 */
function webSocketLink(WebSocketImpl, url, heartbeatMs, deliver) {
  const opened = deferred();
  const ended = deferred();
  const ws = new WebSocketImpl(url.href);
  let heard = Date.now();
  /** @type {ReturnType<typeof setInterval> | undefined} */
  let heartbeat;
  const timeout = setTimeout(() => ws.close(), OPEN_TIMEOUT_MS);
  ws.onopen = () => {
    clearTimeout(timeout);
    heard = Date.now();
    opened.resolve();
    heartbeat = setInterval(() => {
      if (Date.now() - heard > heartbeatMs * 2.5) ws.close(4000, "server silent");
      else ws.send('{"y":0}');
    }, heartbeatMs);
  };
  ws.onmessage = (event) => {
    heard = Date.now();
    if (typeof event.data !== "string") return;
    try {
      deliver(JSON.parse(event.data));
    } catch {
      // Not JSON: not ipush's.
    }
  };
  ws.onclose = (event) => {
    clearTimeout(timeout);
    clearInterval(heartbeat);
    const why = `websocket closed (${event.code}${event.reason ? `: ${event.reason}` : ""})`;
    opened.reject(new IpushError(why));
    ended.resolve(new IpushError(why));
  };
  opened.promise.catch(() => {});
  return {
    transport: "ws",
    opened: opened.promise,
    ended: ended.promise,
    write(line) {
      if (ws.readyState !== 1) return false;
      ws.send(line);
      return true;
    },
    close: () => ws.close(1000),
  };
}

/**
 * Server-sent events read with `fetch` (which, unlike `EventSource`, shows why a request was
 * refused); the client's messages go by `/send`.
 * @param {typeof fetch} fetchImpl
 * @param {URL} url
 * @param {(message: Message) => void} deliver
 * @returns {Link}
 */
function eventStreamLink(fetchImpl, url, deliver) {
  const opened = deferred();
  const ended = deferred();
  const abort = new AbortController();
  let heard = Date.now();
  const timeout = setTimeout(() => abort.abort(), OPEN_TIMEOUT_MS);
  const watchdog = setInterval(() => {
    if (Date.now() - heard > STREAM_SILENCE_MS) abort.abort();
  }, STREAM_SILENCE_MS / 3);
  (async () => {
    const response = await fetchImpl(url, {
      headers: { accept: "text/event-stream" },
      cache: "no-store",
      signal: abort.signal,
    });
    clearTimeout(timeout);
    if (!response.ok || !response.body) throw await refusalOf(response);
    opened.resolve();
    const parser = new EventStreamParser();
    const decoder = new TextDecoder();
    const reader = response.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      heard = Date.now();
      for (const data of parser.push(decoder.decode(value, { stream: true }))) {
        try {
          deliver(JSON.parse(data));
        } catch {
          // Not JSON: not ipush's.
        }
      }
    }
    return new IpushError("event stream ended");
  })().then(
    (why) => ended.resolve(why),
    (error) => {
      const why = error instanceof IpushError ? error : new IpushError(`event stream: ${error}`);
      opened.reject(why);
      ended.resolve(why);
    },
  ).finally(() => {
    clearTimeout(timeout);
    clearInterval(watchdog);
  });
  opened.promise.catch(() => {});
  return {
    transport: "sse",
    opened: opened.promise,
    ended: ended.promise,
    write: () => false,
    close: () => abort.abort(),
  };
}

/**
 * Long-poll: one poll after another, each held up to `waitSec` (the first one not at all, so
 * that it is known at once whether polling works); the client's messages go by `/send`.
 * @param {typeof fetch} fetchImpl
 * @param {(wait: number) => URL} urlFor
 * @param {number} waitSec
 * @param {number} pauseMs between polls that brought messages (with manual acks, they come back
 *   until the app acks them)
 * @param {(message: Message) => void} deliver
 * @returns {Link}
 */
function pollLink(fetchImpl, urlFor, waitSec, pauseMs, deliver) {
  const opened = deferred();
  const ended = deferred();
  const abort = new AbortController();
  (async () => {
    for (let first = true; !abort.signal.aborted; first = false) {
      const wait = first ? 0 : waitSec;
      const timeout = setTimeout(() => abort.abort(), (wait * 1000) + OPEN_TIMEOUT_MS);
      let answer;
      try {
        const response = await fetchImpl(urlFor(wait), { cache: "no-store", signal: abort.signal });
        if (!response.ok) throw await refusalOf(response);
        answer = await response.json();
      } finally {
        clearTimeout(timeout);
      }
      if (first) opened.resolve();
      const messages = Array.isArray(answer?.result) ? answer.result : [];
      for (const message of messages) deliver(message);
      // Unacked messages come back at once: do not spin on them.
      if (pauseMs > 0 && messages.length > 0) {
        await new Promise((resolve) => setTimeout(resolve, pauseMs));
      }
    }
    return new IpushError("closed");
  })().then(
    (why) => ended.resolve(why),
    (error) => {
      const why = error instanceof IpushError ? error : new IpushError(`poll: ${error}`);
      opened.reject(why);
      ended.resolve(why);
    },
  );
  opened.promise.catch(() => {});
  return {
    transport: "poll",
    opened: opened.promise,
    ended: ended.promise,
    write: () => false,
    close: () => abort.abort(),
  };
}
