/**
 * The link between the main thread and one shard worker: requests with replies, and
 * one-way notes, over `postMessage`. Everything posted in one pass of the event loop goes in
 * a single array: one structured clone per pass instead of one per message.
 *
 * @module
 */

import { errorAnswer, ServiceError } from "../core/errors.ts";
import { perPass } from "./batch.ts";

/** What a link posts through: a `Worker` on the main side, the worker's `self` inside. */
export interface Port {
  postMessage(message: unknown): void;
  onmessage: ((event: MessageEvent) => void) | null;
}

type Envelope =
  | { q: number; body: unknown }
  | { r: number; value: unknown }
  | { r: number; error: string; status: number }
  | { n: unknown };

interface Pending {
  resolve(value: unknown): void;
  reject(error: Error): void;
}

/** One end of a link. */
export class Link {
  #port: Port;
  #next = 1;
  #pending = new Map<number, Pending>();
  #closed: Error | null = null;
  #post: (envelope: Envelope) => void;

  /**
   * `handle` answers the other end's requests (a rejection carries its `status` across when
   * it is a {@linkcode ServiceError}, 500 otherwise); `onNote` receives its notes.
   */
  constructor(
    port: Port,
    handle: (body: unknown) => Promise<unknown>,
    onNote: (note: unknown) => void,
  ) {
    this.#port = port;
    this.#post = perPass((batch) => {
      if (!this.#closed) this.#port.postMessage(batch);
    });
    port.onmessage = (event) => {
      // A closed link (a replaced worker) is deaf: its late notes must not count twice.
      if (this.#closed) return;
      for (const envelope of event.data as Envelope[]) {
        if ("q" in envelope) this.#answer(envelope.q, handle, envelope.body);
        else if ("n" in envelope) onNote(envelope.n);
        else this.#settle(envelope);
      }
    };
  }

  /** Sends a request; settles with the other end's answer. */
  request(body: unknown): Promise<unknown> {
    if (this.#closed) return Promise.reject(this.#closed);
    const q = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(q, { resolve, reject });
      this.#post({ q, body });
    });
  }

  /** Sends a note that has no reply. */
  notify(note: unknown): void {
    if (!this.#closed) this.#post({ n: note });
  }

  /** Fails every request still waiting, and every later one, with `error`. */
  close(error: Error): void {
    this.#closed = error;
    for (const pending of this.#pending.values()) pending.reject(error);
    this.#pending.clear();
  }

  #answer(q: number, handle: (body: unknown) => Promise<unknown>, body: unknown): void {
    // Through a promise, so a handler that throws synchronously still answers the request
    // instead of dropping the rest of the batch.
    Promise.resolve().then(() => handle(body)).then(
      (value) => this.#post({ r: q, value }),
      (error: unknown) => this.#post({ r: q, ...errorAnswer(error) }),
    );
  }

  #settle(envelope: { r: number; value: unknown } | { r: number; error: string; status: number }) {
    const pending = this.#pending.get(envelope.r);
    if (!pending) return;
    this.#pending.delete(envelope.r);
    if ("error" in envelope) pending.reject(new ServiceError(envelope.error, envelope.status));
    else pending.resolve(envelope.value);
  }
}
