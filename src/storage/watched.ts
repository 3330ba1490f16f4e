/**
 * A store whose calls are watched, for readiness and metrics: whether its last call failed
 * (and why), how many failed, and how long each `append` (a journal batch becoming durable)
 * took. Every method of the {@linkcode Store} interface passes through unchanged, whatever the
 * interface grows to: the watch is a proxy, not a copy of the method list.
 *
 * A shard that makes no store call for a while asks the store something cheap
 * ({@linkcode StoreWatch.probe}), so an idle shard still notices its store going and coming
 * back.
 *
 * @module
 */

import type { Store } from "./store.ts";

/** A uid whose state is read by a probe: reading it changes nothing, whoever it is. */
const PROBE_UID = "ipush.readiness-probe";

/** What the watch tells its owner besides its own state. */
export interface WatchListener {
  /** A store call failed. */
  failed(error: Error): void;
  /** An `append` became durable after `seconds`. */
  committed(seconds: number): void;
}

/** Watches one store's calls. */
export class StoreWatch {
  /** The store to call instead of the one watched. */
  readonly store: Store;
  #listener: WatchListener;
  #error: string | null = null;
  #inFlight = 0;
  #lastSettled = performance.now();

  constructor(store: Store, listener: WatchListener) {
    this.#listener = listener;
    this.store = new Proxy(store, {
      // The store itself as `this`: its methods and getters may use private fields.
      get: (target, name) => {
        const value = Reflect.get(target, name, target);
        if (typeof value !== "function") return value;
        return (...args: unknown[]) => this.#track(name, value.apply(target, args));
      },
    });
  }

  /** Why the last call that settled failed; null when it succeeded. */
  get error(): string | null {
    return this.#error;
  }

  /** Reads something cheap unless a call is under way or one settled within `idleMs`. */
  probe(idleMs: number): void {
    if (this.#inFlight > 0 || performance.now() - this.#lastSettled < idleMs) return;
    // The outcome is recorded by the watch; nobody waits for it.
    this.store.userState(PROBE_UID).catch(() => {});
  }

  #track(name: string | symbol, result: unknown): unknown {
    if (!(result instanceof Promise)) return result;
    const started = performance.now();
    this.#inFlight++;
    return result.then((value) => {
      const now = this.#settled();
      this.#error = null;
      if (name === "append") this.#listener.committed((now - started) / 1000);
      return value;
    }, (error) => {
      this.#settled();
      this.#error = (error as Error)?.message ?? String(error);
      this.#listener.failed(error);
      throw error;
    });
  }

  #settled(): number {
    this.#inFlight--;
    return this.#lastSettled = performance.now();
  }
}
