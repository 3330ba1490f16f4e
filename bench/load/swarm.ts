/**
 * The parent's handle on its client processes: spawns them, sends commands, waits for
 * phases to end, and merges their counters and latency histograms.
 *
 * @module
 */

import { DAEMON_ENV, DAEMON_V8_FLAGS } from "../../scripts/runtime.ts";
import { Histogram } from "./histogram.ts";
import {
  addCounters,
  type Command,
  type Counters,
  type Event,
  jsonLines,
  newCounters,
  type Phase,
  type WorkerConfig,
} from "./ipc.ts";

/** A `done` event. */
export type Done = Extract<Event, { ev: "done" }>;

interface Child {
  index: number;
  process: Deno.ChildProcess;
  stdin: WritableStreamDefaultWriter<Uint8Array>;
  counters: Counters;
  reasons: Record<string, number>;
  waiters: Map<Phase, (done: Done) => void>;
  exited: boolean;
  /** Ends when the child's stdout closes. */
  reading: Promise<void>;
}

const encoder = new TextEncoder();
const WORKER_URL = new URL("./worker_process.ts", import.meta.url);

/** All client processes of a run. */
export class Swarm {
  readonly connectHist = new Histogram();
  readonly latencyHist = new Histogram();
  readonly lagHist = new Histogram();
  readonly answerHist = new Histogram();
  readonly refusalHist = new Histogram();
  /** Latency and lag samples since the last {@linkcode Swarm.takeInterval}. */
  #interval = { latency: new Histogram(), lag: new Histogram() };
  #children: Child[] = [];
  #failure: Error | null = null;
  #onFailure: ((e: Error) => void)[] = [];

  /** Starts one process per config and waits until each is ready. */
  static async start(configs: WorkerConfig[]): Promise<Swarm> {
    const swarm = new Swarm();
    const ready = configs.map((config) => swarm.#spawn(config));
    await swarm.#guard(Promise.all(ready));
    return swarm;
  }

  /** Number of client processes. */
  get size(): number {
    return this.#children.length;
  }

  /** Sum of the children's latest counters. */
  totals(): Counters {
    return this.#children.reduce((sum, c) => addCounters(sum, c.counters), newCounters());
  }

  /** Failure and drop reasons over all children, most frequent first. */
  reasons(): Record<string, number> {
    const all: Record<string, number> = {};
    for (const c of this.#children) {
      for (const [k, n] of Object.entries(c.reasons)) all[k] = (all[k] ?? 0) + n;
    }
    return Object.fromEntries(Object.entries(all).sort((a, b) => b[1] - a[1]));
  }

  /** Latency and lag samples since the previous call, as histograms of their own. */
  takeInterval(): { latency: Histogram; lag: Histogram } {
    const h = this.#interval;
    this.#interval = { latency: new Histogram(), lag: new Histogram() };
    return h;
  }

  /**
   * Sends `command(childIndex)` to the chosen children (all by default) and resolves with
   * their `done` events for `phase`. Rejects if any child fails meanwhile.
   */
  phase(
    phase: Phase,
    command: (index: number) => Command,
    only?: (index: number) => boolean,
  ): Promise<Done[]> {
    const chosen = this.#children.filter((c) => only?.(c.index) ?? true);
    const dones = chosen.map((c) => new Promise<Done>((resolve) => c.waiters.set(phase, resolve)));
    for (const c of chosen) this.#send(c, command(c.index));
    return this.#guard(Promise.all(dones));
  }

  /** Resolves after `ms`, or rejects earlier if a child fails. */
  sleep(ms: number): Promise<void> {
    return this.#guard(new Promise((r) => setTimeout(r, ms)));
  }

  /** Polls `done()` every 100 ms until it is true or `ms` passed; true if it became true. */
  async waitFor(done: () => boolean, ms: number): Promise<boolean> {
    const until = performance.now() + ms;
    while (!done()) {
      if (performance.now() >= until) return false;
      await this.sleep(100);
    }
    return true;
  }

  /** Asks every child to close its connections and exit; kills those that do not. */
  async close(graceMs: number): Promise<void> {
    const live = this.#children.filter((c) => !c.exited);
    for (const c of live) this.#send(c, { cmd: "close" });
    let timeoutId: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      // Their last lines (final tick, done) are read before the output closes.
      Promise.all(live.map((c) => Promise.all([c.process.status, c.reading]))),
      new Promise<void>((r) => timeoutId = setTimeout(r, graceMs)),
    ]);
    clearTimeout(timeoutId);
    this.kill();
  }

  /** Kills every child still running. */
  kill(): void {
    for (const c of this.#children) {
      if (c.exited) continue;
      try {
        c.process.kill("SIGKILL");
      } catch {
        // It exited between the check and the kill.
      }
    }
  }

  #spawn(config: WorkerConfig): Promise<void> {
    const process = new Deno.Command(Deno.execPath(), {
      // The daemon's memory settings: a large idle run's clients then leave room for its servers
      // on one box (19,000 clients: 169 MB against 223 without them).
      args: ["run", DAEMON_V8_FLAGS, "--allow-all", WORKER_URL.href],
      env: DAEMON_ENV,
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const child: Child = {
      index: config.index,
      process,
      stdin: process.stdin.getWriter(),
      counters: newCounters(),
      reasons: {},
      waiters: new Map(),
      exited: false,
      reading: Promise.resolve(),
    };
    this.#children.push(child);
    const ready = new Promise<void>((resolve) => {
      child.reading = this.#read(child, resolve);
    });
    process.status.then((status) => {
      child.exited = true;
      if (!status.success && this.#failure === null) {
        this.#fail(new Error(`client process ${child.index} exited with code ${status.code}`));
      }
    });
    this.#send(child, { cmd: "init", config });
    return ready;
  }

  async #read(child: Child, ready: () => void): Promise<void> {
    try {
      for await (const event of jsonLines<Event>(child.process.stdout)) {
        switch (event.ev) {
          case "ready":
            ready();
            break;
          case "tick":
            child.counters = event.counters;
            child.reasons = event.reasons;
            this.connectHist.merge(event.connect);
            this.latencyHist.merge(event.latency);
            this.lagHist.merge(event.lag);
            this.answerHist.merge(event.answer);
            this.refusalHist.merge(event.refusal);
            this.#interval.latency.merge(event.latency);
            this.#interval.lag.merge(event.lag);
            break;
          case "done":
            child.counters = event.counters;
            child.waiters.get(event.phase)?.(event);
            child.waiters.delete(event.phase);
            break;
          case "fatal":
            this.#fail(new Error(event.message));
            break;
        }
      }
    } catch (e) {
      this.#fail(new Error(`client process ${child.index}: bad output: ${(e as Error).message}`));
    }
  }

  #send(child: Child, command: Command): void {
    child.stdin.write(encoder.encode(JSON.stringify(command) + "\n")).catch(() => {
      // The child is gone; its exit status reports why.
    });
  }

  #fail(e: Error): void {
    if (this.#failure !== null) return;
    this.#failure = e;
    for (const f of this.#onFailure) f(e);
  }

  /** `p`, but rejecting as soon as any child fails. */
  #guard<T>(p: Promise<T>): Promise<T> {
    if (this.#failure !== null) return Promise.reject(this.#failure);
    return new Promise<T>((resolve, reject) => {
      const onFail = (e: Error) => reject(e);
      this.#onFailure.push(onFail);
      p.then(resolve, reject).finally(() => {
        this.#onFailure = this.#onFailure.filter((f) => f !== onFail);
      });
    });
  }
}
