/**
 * `--auth=http` (PROTOCOL.md §8), as `rabbitmq-auth-backend-http`: a connect asks
 * `GET <url>/user?uid=&password=&device=&transport=`, a client's subscribe or channel message
 * `GET <url>/channel?uid=&cid=&action=subscribe|publish`; a `200` whose body is `allow`
 * allows, a `5xx`, a refused connection or no answer within the timeout is `unavailable`,
 * anything else denies.
 *
 * Invariants:
 * - never a silent allow: what the backend did not allow is denied or unavailable;
 * - an answer is cached (an allow `cacheMs`, a denial at most {@linkcode DENY_CACHE_MS}, so
 *   that a user who just fixed a password is not locked out for long); `unavailable` never is;
 * - at most `maxInFlight` requests are at the backend at once, on kept-alive connections;
 *   the same question asked again while it is in flight waits for that answer instead of
 *   asking twice, and a question that waited for a free slot for half its timeout gives up
 *   (`unavailable`) without asking, as the backend is evidently slow: a slow backend makes
 *   connects fail, not pile up;
 * - the cache holds at most {@linkcode MAX_CACHED} answers, keyed by a digest of the
 *   password (never the password itself, whose length the client chooses).
 *
 * @module
 */

import { createHash } from "node:crypto";
import type { AccessAnswer, ChannelAccess, ChannelAction } from "../core/access.ts";
import type { Log } from "../core/log.ts";
import type { Authenticator, ConnectAttempt, Verdict } from "./auth.ts";

/** How long a denial is cached at most. */
export const DENY_CACHE_MS = 5_000;
/** Answers cached at most; the oldest go first. */
export const MAX_CACHED = 100_000;
/** The log says the backend is not answering at most this often. */
const REPORT_EVERY_MS = 10_000;

/** What the backend said. */
type Answer = "allow" | "deny" | "unavailable";

/** How the backend is reached and its answers kept. */
export interface HttpBackendOptions {
  /** The base URL; `/user` and `/channel` are appended. */
  url: string;
  /** How long an allow is cached; 0: answers are not cached. */
  cacheMs: number;
  /** A question not answered this long after it was asked is `unavailable`. */
  timeoutMs: number;
  /** Requests at the backend at once, at most. */
  maxInFlight: number;
  /** Hears when the backend stops answering (every 10 s at most), and when it is back. */
  log: Log;
}

/** One waiting for a free slot. */
interface Waiter {
  grant(): void;
}

/** An HTTP auth backend, for connects and, as the sessions' {@linkcode ChannelAccess}, for channels. */
export class HttpBackend implements ChannelAccess {
  #options: HttpBackendOptions;
  #base: string;
  #cache = new Map<string, { answer: "allow" | "deny"; until: number }>();
  #asking = new Map<string, Promise<Answer>>();
  #inFlight = 0;
  #waiting = new Set<Waiter>();
  /** Questions it did not answer since the log last said so, and when that was. */
  #unanswered = 0;
  #reportedAt = -Infinity;
  #reported = false;

  constructor(options: HttpBackendOptions) {
    let url: URL;
    try {
      url = new URL(options.url);
    } catch {
      throw new Error(`--auth=http needs --auth_http_url (an http:// or https:// URL)`);
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new Error(`--auth_http_url=${options.url}: not an http:// or https:// URL`);
    }
    this.#options = options;
    this.#base = options.url.replace(/\/+$/, "");
  }

  /** The connect check; an allow carries this backend as the session's channel access. */
  readonly authenticate: Authenticator = (attempt: ConnectAttempt): Promise<Verdict> => {
    const { uid, device, transport, password } = attempt;
    const digest = createHash("sha256").update(password).digest("base64");
    return this.#ask(`u\n${uid}\n${device}\n${transport}\n${digest}`, "user", {
      uid,
      password,
      device,
      transport,
    }).then((answer) => answer === "allow" ? { allow: this } : answer);
  };

  check(uid: string, channel: string, action: ChannelAction): AccessAnswer | Promise<AccessAnswer> {
    const key = `c\n${uid}\n${channel}\n${action}`;
    const cached = this.#cached(key);
    if (cached) return cached === "deny" ? "forbidden" : cached;
    return this.#ask(key, "channel", { uid, cid: channel, action }).then((answer) =>
      answer === "deny" ? "forbidden" : answer
    );
  }

  #cached(key: string): "allow" | "deny" | undefined {
    const entry = this.#cache.get(key);
    if (!entry) return undefined;
    if (entry.until > Date.now()) return entry.answer;
    this.#cache.delete(key);
    return undefined;
  }

  #ask(key: string, path: string, params: Record<string, string>): Promise<Answer> {
    const cached = this.#cached(key);
    if (cached) return Promise.resolve(cached);
    let asking = this.#asking.get(key);
    if (!asking) {
      asking = this.#request(`${this.#base}/${path}?${new URLSearchParams(params)}`)
        .then((answer) => {
          this.#remember(key, answer);
          return answer;
        })
        .finally(() => this.#asking.delete(key));
      this.#asking.set(key, asking);
    }
    return asking;
  }

  #remember(key: string, answer: Answer): void {
    const { cacheMs } = this.#options;
    if (answer === "unavailable" || cacheMs === 0) return;
    const keepMs = answer === "allow" ? cacheMs : Math.min(cacheMs, DENY_CACHE_MS);
    const cache = this.#cache;
    cache.delete(key);
    cache.set(key, { answer, until: Date.now() + keepMs });
    if (cache.size > MAX_CACHED) cache.delete(cache.keys().next().value!);
  }

  async #request(url: string): Promise<Answer> {
    const { timeoutMs } = this.#options;
    const deadline = Date.now() + timeoutMs;
    if (!await this.#slot(deadline - timeoutMs / 2)) return this.#unavailable("all requests slow");
    try {
      const response = await fetch(url, {
        signal: AbortSignal.timeout(Math.max(1, deadline - Date.now())),
      });
      // Read to the end, so the connection is kept for the next request.
      const body = await response.text();
      if (response.status >= 500) return this.#unavailable(`HTTP ${response.status}`);
      this.#up();
      return response.status === 200 && body.trim() === "allow" ? "allow" : "deny";
    } catch (error) {
      return this.#unavailable((error as Error).message);
    } finally {
      this.#release();
    }
  }

  /** Waits for a request slot; false if none is free before `by`. */
  #slot(by: number): Promise<boolean> | boolean {
    if (this.#inFlight < this.#options.maxInFlight) {
      this.#inFlight++;
      return true;
    }
    return new Promise((resolve) => {
      const waiter: Waiter = {
        grant() {
          clearTimeout(timer);
          resolve(true);
        },
      };
      const timer = setTimeout(() => {
        this.#waiting.delete(waiter);
        resolve(false);
      }, by - Date.now());
      this.#waiting.add(waiter);
    });
  }

  /** A request is done: its slot goes to the longest waiting, if any. */
  #release(): void {
    const next = this.#waiting.values().next();
    if (next.done) {
      this.#inFlight--;
      return;
    }
    this.#waiting.delete(next.value);
    next.value.grant();
  }

  #unavailable(why: string): "unavailable" {
    this.#unanswered++;
    const now = Date.now();
    if (now - this.#reportedAt >= REPORT_EVERY_MS) {
      this.#options.log(
        "warn",
        `auth backend ${this.#base} unavailable: ${why} (${this.#unanswered} unanswered)`,
      );
      this.#reportedAt = now;
      this.#unanswered = 0;
      this.#reported = true;
    }
    return "unavailable";
  }

  #up(): void {
    if (!this.#reported) return;
    this.#reported = false;
    this.#options.log("info", `auth backend ${this.#base} answers again`);
  }
}
