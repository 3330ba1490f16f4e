/**
 * One client process of the load generator. File descriptors are per process (20,000 at
 * most here), so the parent spreads connections over several of these. Reads commands
 * (JSON lines) on stdin, writes events (JSON lines) on stdout, and exits when stdin closes,
 * on `close`, or at its deadline, whichever comes first.
 *
 * @module
 */

import { type AdminClient, type AdminResponse, isOk } from "./admin.ts";
import { Client, type ClientContext } from "./client.ts";
import { Histogram } from "./histogram.ts";
import {
  type Command,
  type Counters,
  type Event,
  jsonLines,
  type Load,
  newCounters,
  nowMs,
  parseStamp,
  type Phase,
  stamp,
  type WorkerConfig,
} from "./ipc.ts";
import type { Frame } from "./wire.ts";
import { Pacer } from "./pacer.ts";
import { publisherFor, streamFor } from "./target.ts";
import { HeartbeatQueue } from "./heartbeats.ts";

const TICK_MS = 500;
/** How often the heartbeats that fell due go out. */
const HEARTBEAT_TICK_MS = 100;
/** Distinct failure reasons kept; the rest are lumped together. */
const MAX_REASONS = 30;
/** Name the back end publishes as. */
const PUBLISHER = "load";
const encoder = new TextEncoder();

/** Writes one event line to the parent; a blocking write keeps lines whole and in order. */
function emit(event: Event): void {
  const bytes = encoder.encode(JSON.stringify(event) + "\n");
  let off = 0;
  while (off < bytes.length) off += Deno.stdout.writeSync(bytes.subarray(off));
}

/** The state of this process: its clients, counters and the current workload. */
class Worker {
  readonly counters: Counters = newCounters();
  readonly reasons = new Map<string, number>();
  readonly connectHist = new Histogram();
  readonly latencyHist = new Histogram();
  readonly lagHist = new Histogram();
  readonly answerHist = new Histogram();
  readonly refusalHist = new Histogram();
  readonly clients: Client[] = [];
  /** Open clients, for picking random senders and targets (swap-remove via `slot`). */
  readonly online: Client[] = [];
  /** Outstanding unicast/chat sends: id → due time (see `pacer.ts`); Map order is send order. */
  readonly pending = new Map<number, number>();
  readonly admin: AdminClient;
  readonly ctx: ClientContext;
  nextId = 1;
  #pacer: Pacer | null = null;
  #connectWaiter: (() => void) | null = null;
  #settled = 0;
  readonly #heartbeats: HeartbeatQueue<Client> | null;

  constructor(readonly config: WorkerConfig) {
    this.#heartbeats = config.heartbeatSec > 0
      ? new HeartbeatQueue(config.heartbeatSec * 1000)
      : null;
    this.admin = publisherFor(config.target, config.adminHost, config.adminPort);
    this.ctx = {
      host: config.host,
      transport: config.transport,
      stream: streamFor(config.target, config.transport, config.codec, config.subscribeTo),
      ack: config.ack,
      connectTimeoutMs: config.connectTimeoutMs,
      maxRedirects: config.maxRedirects,
      counters: this.counters,
      connectHist: this.connectHist,
      reason: (text) => this.reason(text),
      onOpen: (client) => {
        this.counters.connected++;
        this.counters.open++;
        client.slot = this.online.length;
        this.online.push(client);
        this.#heartbeats?.add(client, nowMs());
        this.#settle();
      },
      onFail: (client) => {
        this.counters.failed++;
        client.slot = -1;
        this.#settle();
      },
      onClosed: (client, wanted) => {
        this.counters.open--;
        if (!wanted) this.counters.dropped++;
        const last = this.online.pop()!;
        if (last !== client) {
          this.online[client.slot] = last;
          last.slot = client.slot;
        }
        client.slot = -1;
      },
      onFrame: (client, frame) => this.#onFrame(client, frame),
    };
    // Each uid's own password (a token each, say), where a file gives one.
    const given = new Map(
      config.passwordFile === "" ? [] : Deno.readTextFileSync(config.passwordFile).split("\n")
        .map((line) => line.trim().split(/\s+/)).filter((fields) => fields.length === 2)
        .map(([uid, password]) => [uid, password]),
    );
    for (let i = 0; i < config.count; i++) {
      const n = config.first + i;
      const uid = config.uidPrefix + n;
      const password = given.get(uid) ??
        config.password.replaceAll("{uid}", uid).replaceAll("{n}", String(n));
      const sources = config.sources;
      const local = sources.length === 0 ? undefined : sources[n % sources.length];
      const port = config.clientPorts[n % config.clientPorts.length];
      this.clients.push(new Client(this.ctx, uid, password, port, local));
    }
    if (config.heartbeatSec > 0) setInterval(() => this.#heartbeat(), HEARTBEAT_TICK_MS);
    setInterval(() => this.#sweep(), 1000);
  }

  /** Counts `n` failures (connections or messages) for one reason. */
  reason(text: string, n = 1): void {
    const key = this.reasons.has(text) || this.reasons.size < MAX_REASONS ? text : "(other)";
    this.reasons.set(key, (this.reasons.get(key) ?? 0) + n);
  }

  tick(): void {
    emit({
      ev: "tick",
      counters: this.counters,
      reasons: Object.fromEntries(this.reasons),
      connect: this.connectHist.toData(),
      latency: this.latencyHist.toData(),
      lag: this.lagHist.toData(),
      answer: this.answerHist.toData(),
      refusal: this.refusalHist.toData(),
    });
    this.connectHist.reset();
    this.latencyHist.reset();
    this.lagHist.reset();
    this.answerHist.reset();
    this.refusalHist.reset();
  }

  /** `/sub` every owned uid, `concurrency` requests at a time. */
  async subscribe(channel: string, concurrency: number): Promise<void> {
    let next = 0;
    const lane = async () => {
      while (next < this.clients.length) {
        const uid = this.clients[next++].uid;
        try {
          const res = await this.admin.sub(uid, channel);
          if (isOk(res)) this.counters.subOk++;
          else {
            this.counters.subFailed++;
            this.reason(`sub: HTTP ${res.status} ${res.body.slice(0, 80)}`);
          }
        } catch (e) {
          this.counters.subFailed++;
          this.reason(`sub: ${(e as Error).message}`);
        }
      }
    };
    await Promise.all(Array.from({ length: concurrency }, lane));
  }

  /** Starts every client, at most `concurrency` handshakes in flight; resolves when all settle. */
  connect(concurrency: number): Promise<void> {
    let next = 0;
    const settled = new Promise<void>((resolve) => {
      this.#connectWaiter = () => {
        if (this.#settled === this.clients.length) resolve();
        else if (next < this.clients.length) this.clients[next++].start();
      };
    });
    if (this.clients.length === 0) return Promise.resolve();
    const first = Math.min(concurrency, this.clients.length);
    while (next < first) this.clients[next++].start();
    return settled;
  }

  #settle(): void {
    this.#settled++;
    this.#connectWaiter?.();
  }

  /** Publishes the fanout probe (id 0) once. */
  async probe(channel: string): Promise<void> {
    try {
      const res = await this.admin.pubChannel(channel, PUBLISHER, stamp(0));
      if (this.admin.accepted(res)) this.counters.pubOk++;
      else if (!this.#refused(res, 1)) this.#pubFailed(res.status, res.body);
    } catch (e) {
      this.#pubFailed(0, (e as Error).message);
    }
  }

  /**
   * Runs a workload for `durationMs`. Requests still in flight at the end finish on their
   * own; the parent's drain phase waits for them and their deliveries.
   */
  async run(load: Load, durationMs: number): Promise<void> {
    if (load.kind === "none") {
      await sleep(durationMs);
      return;
    }
    const track = (request: Promise<void>) => {
      this.counters.pubInFlight++;
      request.finally(() => {
        this.counters.pubInFlight--;
        this.#pacer?.wake();
      });
    };
    // Every message is stamped with the time it was due, which latency is measured from.
    let issue: (dueMs: number) => number;
    let outstanding = () => this.counters.pubInFlight;
    if (load.kind === "unicast" && load.batch > 1) {
      issue = (dueMs) => this.#pubBatch(load.batch, dueMs, track);
    } else if (load.kind === "unicast") {
      issue = (dueMs) => {
        const target = this.#randomOnline();
        if (target === undefined) return 0;
        const id = this.nextId++;
        this.pending.set(id, dueMs);
        track(this.#pub(this.admin.pubTo(target.uid, PUBLISHER, stamp(id, dueMs)), dueMs, id));
        return 1;
      };
    } else if (load.kind === "channel") {
      issue = (dueMs) => {
        const id = this.nextId++;
        track(this.#pub(this.admin.pubChannel(load.channel, PUBLISHER, stamp(id, dueMs)), dueMs));
        return 1;
      };
    } else {
      // Chat: sender and target are both ours, so a delivery frees its in-flight slot here.
      outstanding = () => this.pending.size;
      issue = (dueMs) => this.#chat(dueMs) ? 1 : 0;
    }
    const paced = (dueMs: number) => {
      const n = issue(dueMs);
      if (n > 0) this.lagHist.recordMs(nowMs() - dueMs);
      return n;
    };
    const pacer = this.#pacer = new Pacer(load.rate, load.maxInFlight, paced, outstanding);
    await pacer.run(performance.now() + durationMs);
    this.counters.unsent += pacer.unsent;
    this.#pacer = null;
  }

  /** Counts a publish's outcome (never rejects); a failed one is no longer outstanding. */
  async #pub(request: Promise<AdminResponse>, dueMs: number, id?: number): Promise<void> {
    try {
      const res = await request;
      const accepted = this.admin.accepted(res);
      if (accepted || res.status === 200) this.#answered(dueMs);
      if (accepted) {
        this.counters.pubOk++;
        return;
      }
      if (!this.#refused(res, 1, dueMs)) this.#pubFailed(res.status, res.body);
    } catch (e) {
      this.#pubFailed(0, (e as Error).message);
    }
    if (id !== undefined) this.pending.delete(id);
  }

  /** One `/pub/batch` of `size` messages due at `dueMs` to random online users; returns how many. */
  #pubBatch(size: number, dueMs: number, track: (request: Promise<void>) => void): number {
    if (this.online.length === 0) return 0;
    const uids: string[] = [];
    const payloads: string[] = [];
    const ids: number[] = [];
    for (let i = 0; i < size; i++) {
      const id = this.nextId++;
      uids.push(this.#randomOnline()!.uid);
      payloads.push(stamp(id, dueMs));
      ids.push(id);
      this.pending.set(id, dueMs);
    }
    track(this.#batchAnswered(this.admin.pubBatch(uids, PUBLISHER, payloads), dueMs, ids));
    return size;
  }

  /** Counts each line's outcome (never rejects); failed lines are no longer outstanding. */
  async #batchAnswered(
    request: Promise<AdminResponse>,
    dueMs: number,
    ids: number[],
  ): Promise<void> {
    let answers: unknown[] = [];
    let failure = "";
    try {
      const res = await request;
      if (res.status === 200) {
        this.#answered(dueMs);
        answers = JSON.parse(res.body).result;
      } else if (this.#refused(res, ids.length, dueMs)) {
        for (const id of ids) this.pending.delete(id);
        return;
      } else failure = `pub: HTTP ${res.status} ${res.body.slice(0, 80)}`;
    } catch (e) {
      failure = `pub: ${(e as Error).message.slice(0, 80)}`;
    }
    ids.forEach((id, i) => {
      const answer = answers[i];
      if (answer === "ok") {
        this.counters.pubOk++;
        return;
      }
      this.counters.pubFailed++;
      this.reason(failure || `pub: ${JSON.stringify(answer).slice(0, 80)}`);
      this.pending.delete(id);
    });
  }

  /** A publish request due at `dueMs` was answered HTTP 200 (nchan: 201 or 202). */
  #answered(dueMs: number): void {
    this.counters.requestsOk++;
    this.answerHist.recordMs(nowMs() - dueMs);
  }

  /**
   * Counts a publish request of `messages` refused whole at the HTTP level (503 or 429: the
   * back end should wait and retry, and `Retry-After` says how long); false for other answers.
   */
  #refused(res: AdminResponse, messages: number, dueMs?: number): boolean {
    if (res.status !== 503 && res.status !== 429) return false;
    if (dueMs !== undefined) this.refusalHist.recordMs(nowMs() - dueMs);
    const c = this.counters;
    if (res.status === 503) c.refused503++;
    else c.refused429++;
    if (res.retryAfter !== null) c.refusedRetryAfter++;
    c.pubRefused += messages;
    const retry = res.retryAfter === null ? "no Retry-After" : `Retry-After ${res.retryAfter}`;
    this.reason(`pub refused: HTTP ${res.status} ${res.body.slice(0, 80)} (${retry})`, messages);
    return true;
  }

  #pubFailed(status: number, text: string): void {
    this.counters.pubFailed++;
    this.reason(`pub: ${status ? `HTTP ${status} ` : ""}${text.slice(0, 80)}`);
  }

  /** One y=3 due at `dueMs` from a random open client to another; false when fewer than two are open. */
  #chat(dueMs: number): boolean {
    const n = this.online.length;
    if (n < 2) return false;
    const i = Math.floor(Math.random() * n);
    const j = (i + 1 + Math.floor(Math.random() * (n - 1))) % n;
    const from = this.online[i];
    // A sender whose socket backs up is skipped, so "max" measures the server, not our queue.
    if (from.writableLength > 65536) return false;
    const id = this.nextId++;
    this.pending.set(id, dueMs);
    from.send(
      `{"y":3,"f":${JSON.stringify(from.uid)},"t":${JSON.stringify(this.online[j].uid)},` +
        `"b":"${stamp(id, dueMs)}"}`,
    );
    this.counters.chatSent++;
    return true;
  }

  #randomOnline(): Client | undefined {
    return this.online[Math.floor(Math.random() * this.online.length)];
  }

  #onFrame(_client: Client, frame: Frame): void {
    const c = this.counters;
    if (frame.y === 0) {
      c.hbIn++;
      return;
    }
    if (frame.y !== 3 && frame.y !== 4) {
      c.otherIn++;
      return;
    }
    const st = parseStamp(frame.b);
    if (st === null) {
      c.unparsed++;
      return;
    }
    if (st.ts < this.config.epochMs) {
      c.backlog++;
      return;
    }
    // From the time the message was due (pacer.ts), or sent for the unpaced fanout probe.
    const latency = nowMs() - st.ts;
    if (frame.y === 4 && st.id === 0) {
      c.probeReceived++;
      if (latency > c.probeMaxMs) c.probeMaxMs = latency;
      return;
    }
    c.received++;
    this.latencyHist.recordMs(latency);
    if (frame.y === 3) {
      if (this.pending.delete(st.id)) this.#pacer?.wake();
      else c.unmatched++;
    }
  }

  /** Sends the heartbeats that fell due; a closed client leaves the schedule. */
  #heartbeat(): void {
    this.#heartbeats?.drain(nowMs(), (client) => {
      if (client.slot === -1) return false;
      if (client.heartbeat()) this.counters.hbOut++;
      return true;
    });
  }

  /** Counts sends undelivered a message time-out after they were due, oldest first. */
  #sweep(): void {
    const limit = nowMs() - this.config.msgTimeoutMs;
    for (const [id, dueMs] of this.pending) {
      if (dueMs >= limit) break;
      this.pending.delete(id);
      this.counters.timedOut++;
    }
    this.#pacer?.wake();
  }

  /** Closes every client gracefully; destroys stragglers after `graceMs`. */
  async close(graceMs: number): Promise<void> {
    this.#connectWaiter = null;
    for (const client of [...this.online]) client.close();
    for (const client of this.clients) if (!client.open) client.close();
    const until = performance.now() + graceMs;
    while (this.counters.open > 0 && performance.now() < until) await sleep(50);
    for (const client of this.clients) client.destroy();
    this.admin.close();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, Math.max(0, ms)));
}

/** Sleeps until an epoch-ms instant shared with the other children. */
function until(epochMs: number): Promise<void> {
  return sleep(epochMs - nowMs());
}

async function main(): Promise<void> {
  let worker: Worker | null = null;
  const done = (phase: Phase, startMs: number, before?: Counters) => {
    emit({ ev: "done", phase, counters: worker!.counters, before, atMs: nowMs(), startMs });
  };
  for await (const command of jsonLines<Command>(Deno.stdin.readable)) {
    switch (command.cmd) {
      case "init": {
        const w = worker = new Worker(command.config);
        setTimeout(() => {
          emit({ ev: "fatal", message: `child ${w.config.index}: deadline reached` });
          Deno.exit(3);
        }, command.config.deadlineMs - nowMs());
        setInterval(() => w.tick(), TICK_MS);
        emit({ ev: "ready" });
        break;
      }
      case "subscribe": {
        const startMs = nowMs();
        worker!.subscribe(command.channel, command.concurrency).then(() => {
          done("subscribe", startMs);
        });
        break;
      }
      case "connect": {
        const w = worker!;
        until(command.startAt).then(() => w.connect(command.concurrency)).then(() => {
          w.tick();
          done("connect", command.startAt);
        });
        break;
      }
      case "probe": {
        const startMs = nowMs();
        worker!.probe(command.channel).then(() => done("probe", startMs));
        break;
      }
      case "run": {
        const w = worker!;
        let before: Counters;
        until(command.startAt).then(() => {
          before = { ...w.counters };
          return w.run(command.load, command.durationMs);
        }).then(() => done("run", command.startAt, before));
        break;
      }
      case "close": {
        const w = worker!;
        await w.close(3000);
        w.tick();
        done("close", nowMs());
        Deno.exit(0);
      }
    }
  }
  // The parent went away: do not linger holding sockets.
  Deno.exit(0);
}

if (import.meta.main) {
  main().catch((e) => {
    emit({ ev: "fatal", message: `child: ${(e as Error).stack ?? e}` });
    Deno.exit(1);
  });
}
