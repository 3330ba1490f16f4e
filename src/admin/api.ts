/**
 * The back-end (admin) HTTP API of PROTOCOL.md §3: `/pub /sub /unsub /msg /shard /stats`, and
 * `/metrics` (the same counters for Prometheus).
 * A plain `Request → Response` handler for `Deno.serve`; it reaches the shards only through
 * {@linkcode AdminRoutes}, so it does not care where a shard runs. Other parts mount their
 * own endpoints on it (`/cluster/ops`); a handler answers a value (sent as
 * `{"result": value}`) or any `Response`.
 *
 * With an admin token, every request, to any path, mounted ones included, must carry
 * `Authorization: Bearer <token>` (compared in constant time) or is answered `401
 * {"error":"unauthorized"}` before its path is looked at; only a page's own files (the
 * dashboard's HTML and script, no data) pass without, since a browser opening a page cannot
 * send the header.
 *
 * @module
 */

import { badRequest, type ErrorAnswer, errorAnswer, ServiceError } from "../core/errors.ts";
import { readBody } from "../core/http_body.ts";
import type { Log } from "../core/log.ts";
import { isValidName } from "../core/names.ts";
import { matchesDigest, secretDigest } from "../core/secret.ts";
import type { UserPresence } from "../core/presence.ts";
import {
  BATCH_MAX_ITEMS,
  type ChannelReceipt,
  type ChannelRequest,
  type PubResult,
  type Receipt,
  type UnicastRequest,
} from "../core/requests.ts";
import type { ShardAddress } from "../core/shard_map.ts";
import { METRICS_CONTENT_TYPE, renderMetrics } from "../stats/metrics.ts";
import type { StatsBook } from "../stats/report.ts";
import type { Admission, Admitted } from "./admission.ts";

/** How the API reaches shards, wherever they run. */
export interface AdminRoutes {
  /** Stores and delivers a message to one uid; its receipt. */
  publish(request: UnicastRequest): Promise<Receipt>;
  /** Many messages for uids of the shard that owns `uid`, in one journal batch. */
  publishMany(uid: string, requests: UnicastRequest[]): Promise<PubResult[]>;
  /** Stores and delivers a channel message to every member (its receipt counts this node's). */
  publishChannel(request: ChannelRequest): Promise<ChannelReceipt>;
  subscribe(uid: string, channel: string): Promise<void>;
  unsubscribe(uid: string, channel: string): Promise<void>;
  /** The offline messages of the uid's `device`, in the `/msg` form. */
  offline(uid: string, device: string, limit: number): Promise<string[]>;
  /** The shard a client with this uid should connect to. */
  shardOf(uid: string): ShardAddress;
  userPresence(uid: string): Promise<UserPresence>;
  channelPresence(channel: string): Promise<UserPresence[]>;
}

/** What the handler needs besides routes. */
export interface AdminOptions {
  routes: AdminRoutes;
  stats: StatsBook;
  /** Largest `/pub` body, in bytes. */
  maxBodyBytes: number;
  /** Most messages `/msg` lists. */
  msgLimit: number;
  /** Brings the shards' counters up to date before `/stats` and `/metrics` report. */
  refreshStats(): Promise<void>;
  /** The host `/shard` names when shards advertise none. */
  defaultHost: string;
  draining(): boolean;
  /** Hears of requests that failed with a bug rather than a {@linkcode ServiceError}. */
  log: Log;
  /** Lets work in while the shards keep up; see `admission.ts`. */
  admission: Admission;
  /** Endpoints other parts serve here, by path (`/cluster/ops`). */
  mounts?: Record<string, Endpoint>;
  /** `--admin_token`: the bearer token every request needs; "" for none. */
  adminToken: string;
}

/** What a `503` tells a back end to wait before it tries again, in seconds. */
const RETRY_AFTER_SEC = "1";

/**
 * Serves one endpoint: answers a value (sent as `{"result": value}`) or any `Response`.
 * `work` counts the messages a request carries.
 */
export type Handler = (
  request: Request,
  url: URL,
  options: AdminOptions,
  work: Admitted,
) => Promise<unknown>;

/** One path of the API. */
export interface Endpoint {
  name: string;
  methods: string[];
  handle: Handler;
  /** It hands work to the shards, so it passes admission control. */
  work?: true;
  /**
   * It serves a page's files (the dashboard), none of the node's data. A browser cannot send
   * a header when it opens a page, so an admin token check lets these through; the page sends
   * the token with its own requests for data.
   */
  page?: true;
}

const ENDPOINTS: Record<string, Endpoint> = {
  "/pub": { name: "Pub", methods: ["POST"], handle: publish, work: true },
  "/pub/batch": { name: "PubBatch", methods: ["POST"], handle: publishBatch, work: true },
  "/sub": { name: "Sub", methods: ["GET", "POST"], handle: membership("subscribe"), work: true },
  "/unsub": {
    name: "Unsub",
    methods: ["GET", "POST"],
    handle: membership("unsubscribe"),
    work: true,
  },
  "/msg": { name: "Msg", methods: ["GET"], handle: offline, work: true },
  "/shard": { name: "Shard", methods: ["GET"], handle: shard },
  "/stats": { name: "Stats", methods: ["GET"], handle: stats },
  "/metrics": { name: "Metrics", methods: ["GET"], handle: metrics },
  "/presence": { name: "Presence", methods: ["GET"], handle: presence },
};

/** What a request that is not work counts against admission: nothing. */
const NOT_WORK: Admitted = { add() {}, done() {} };

/**
 * A `Host` header that is a host and an optional port, or absent. `Deno.serve` builds
 * `request.url` as `http://<Host><target>`, so a Host of `h/msg?uid=victim#` would turn a
 * request for `/stats` into one for `/msg` (and past a path-filtering proxy).
 */
const HOST = /^(?:[A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/** Creates the handler. */
export function adminHandler(options: AdminOptions): (request: Request) => Promise<Response> {
  const token = options.adminToken === "" ? null : secretDigest(options.adminToken);
  return async (request) => {
    const host = request.headers.get("host");
    if (host !== null && host !== "" && !HOST.test(host)) {
      return reply(400, { error: "invalid host header" });
    }
    const url = URL.parse(request.url);
    if (!url) return reply(400, { error: "malformed request" });
    const endpoint = ENDPOINTS[url.pathname] ?? options.mounts?.[url.pathname];
    // Before anything about the path is told, unknown paths included; a page's files pass.
    if (
      token && !endpoint?.page &&
      !matchesDigest(token, bearerToken(request.headers.get("authorization")))
    ) {
      options.stats.count("Unauthorized");
      return reply(401, { error: "unauthorized" });
    }
    if (!endpoint) return reply(404, { error: "not found" });
    options.stats.count(endpoint.name);
    if (!endpoint.methods.includes(request.method)) {
      return reply(405, { error: "method not allowed" });
    }
    if (options.draining()) return reply(503, { error: "draining" });
    if (endpoint.work && !options.admission.admit()) {
      options.stats.count("Overloaded");
      return reply(503, { error: "overloaded" });
    }
    const work = endpoint.work ? options.admission.start() : NOT_WORK;
    try {
      const result = await endpoint.handle(request, url, options, work);
      return result instanceof Response ? result : reply(200, { result });
    } catch (error) {
      if (!(error instanceof ServiceError)) {
        options.log(
          "error",
          `${request.method} ${url.pathname}: ${(error as Error)?.stack ?? error}`,
        );
      }
      const { error: reason, status } = errorAnswer(error);
      return reply(status, { error: reason });
    } finally {
      work.done();
    }
  };
}

/** The token of an `Authorization: Bearer <token>` header (the scheme in any case); "" if none. */
function bearerToken(header: string | null): string {
  return /^bearer +(\S+) *$/i.exec(header ?? "")?.[1] ?? "";
}

async function publish(
  request: Request,
  url: URL,
  options: AdminOptions,
  work: Admitted,
): Promise<"ok" | Receipt | ChannelReceipt> {
  const params = url.searchParams;
  const pub = pubRequest({
    to: params.get("to"),
    channel: params.get("channel"),
    from: params.get("from"),
    ttl: params.get("ttl") ?? "0",
    volatile: params.get("volatile") ?? "0",
  });
  const receipt = params.get("receipt") ?? "0";
  if (receipt !== "0" && receipt !== "1") throw badRequest("invalid receipt");
  const payload = await readBody(request, options.maxBodyBytes);
  pub.body = JSON.stringify(payload);
  work.add(1);
  const answer = "to" in pub
    ? await options.routes.publish(pub)
    : await options.routes.publishChannel(pub);
  return receipt === "1" ? answer : "ok";
}

/** A `/pub`'s parameters as text, from its query or from one line of `/pub/batch`. */
interface PubParams {
  to: string | null;
  channel: string | null;
  from: string | null;
  ttl: string;
  volatile: string;
}

/** Checks a `/pub`'s parameters; the request comes back with an empty body. */
function pubRequest(p: PubParams): UnicastRequest | ChannelRequest {
  if ((p.to === null) === (p.channel === null)) throw badRequest("give exactly one of to, channel");
  if (p.to !== null && !isValidName(p.to)) throw badRequest("invalid to");
  if (p.channel !== null && !isValidName(p.channel)) throw badRequest("invalid channel");
  if (!isValidName(p.from)) throw badRequest(p.from === null ? "missing from" : "invalid from");
  if (!/^\d{1,9}$/.test(p.ttl)) throw badRequest("invalid ttl");
  if (p.volatile !== "0" && p.volatile !== "1") throw badRequest("invalid volatile");
  const message = { from: p.from, body: "", ttlSec: Number(p.ttl), volatile: p.volatile === "1" };
  return p.to !== null ? { to: p.to, ...message } : { channel: p.channel!, ...message };
}

/** Largest `/pub/batch` body; each line's `body` is also held to `--max_frame_bytes`. */
const BATCH_MAX_BYTES = 16 << 20;

/** One line's answer in `/pub/batch`: its receipt when the line asked for one. */
type BatchAnswer = "ok" | Receipt | ChannelReceipt | ErrorAnswer;

/**
 * `POST /pub/batch`: one JSON object a line, each a `/pub` (`to` or `channel`, `from`,
 * optional `ttl` and `volatile`, and the payload as the string `body`). Answers one entry a
 * line, in order: `"ok"` once that message is durable, or `{"error", "status"}`. Lines for
 * uids of one shard travel to it as one op and are stored in one journal batch, which is what
 * makes many messages a request cheaper than a request each.
 */
async function publishBatch(
  request: Request,
  _url: URL,
  options: AdminOptions,
  work: Admitted,
): Promise<BatchAnswer[]> {
  const lines = (await readBody(request, BATCH_MAX_BYTES)).split("\n").filter((line) =>
    line.trim() !== ""
  );
  if (lines.length > BATCH_MAX_ITEMS) {
    throw new ServiceError(`more than ${BATCH_MAX_ITEMS} lines`, 413);
  }
  work.add(lines.length);
  const answers: BatchAnswer[] = new Array(lines.length);
  const receipts = new Array<boolean>(lines.length);
  const pending: Promise<void>[] = [];
  const byShard = new Map<string, { indexes: number[]; requests: UnicastRequest[] }>();
  lines.forEach((line, i) => {
    let pub: UnicastRequest | ChannelRequest;
    try {
      ({ pub, receipt: receipts[i] } = batchLine(line, options.maxBodyBytes));
    } catch (error) {
      answers[i] = errorAnswer(error as Error);
      return;
    }
    if ("channel" in pub) {
      pending.push(
        options.routes.publishChannel(pub).then(
          (receipt) => void (answers[i] = receipts[i] ? receipt : "ok"),
          (error) => void (answers[i] = errorAnswer(error)),
        ),
      );
      return;
    }
    const shard = options.routes.shardOf(pub.to).id;
    let group = byShard.get(shard);
    if (!group) byShard.set(shard, group = { indexes: [], requests: [] });
    group.indexes.push(i);
    group.requests.push(pub);
  });
  for (const { indexes, requests } of byShard.values()) {
    const uid = requests[0].to;
    pending.push(
      options.routes.publishMany(uid, requests).then(
        (results) =>
          results.forEach((result, k) => {
            const i = indexes[k];
            answers[i] = "error" in result || receipts[i] ? result : "ok";
          }),
        (error) => {
          for (const i of indexes) answers[i] = errorAnswer(error);
        },
      ),
    );
  }
  await Promise.all(pending);
  // Refused whole (the store too busy for any of it): a 503 the back end can back off on.
  const refused = (a: BatchAnswer): a is ErrorAnswer =>
    typeof a === "object" && "error" in a && a.status === 503;
  const first = answers[0];
  if (refused(first) && answers.every(refused)) throw new ServiceError(first.error, 503);
  return answers;
}

/**
 * Reads one `/pub/batch` line into a request, and whether it asks for a receipt; throws a
 * {@linkcode ServiceError}.
 */
function batchLine(
  line: string,
  maxBodyBytes: number,
): { pub: UnicastRequest | ChannelRequest; receipt: boolean } {
  let fields: Record<string, unknown>;
  try {
    fields = JSON.parse(line);
  } catch {
    throw badRequest("bad json");
  }
  if (typeof fields !== "object" || fields === null || Array.isArray(fields)) {
    throw badRequest("line is not a json object");
  }
  const { body, ttl, volatile, receipt } = fields;
  const pub = pubRequest({
    to: optionalText(fields.to),
    channel: optionalText(fields.channel),
    from: optionalText(fields.from),
    ttl: ttl === undefined ? "0" : typeof ttl === "number" ? String(ttl) : "",
    volatile: volatile === undefined || volatile === false ? "0" : volatile === true ? "1" : "",
  });
  if (typeof body !== "string") {
    throw badRequest(body === undefined ? "missing body" : "invalid body");
  }
  if (body.length > maxBodyBytes && encoder.encode(body).length > maxBodyBytes) {
    throw new ServiceError(`body over ${maxBodyBytes} bytes`, 413);
  }
  if (receipt !== undefined && typeof receipt !== "boolean") throw badRequest("invalid receipt");
  pub.body = JSON.stringify(body);
  return { pub, receipt: receipt === true };
}

/** A JSON field that should be a string: null when absent, "" (invalid) when not a string. */
function optionalText(value: unknown): string | null {
  if (value === undefined || value === null) return null;
  return typeof value === "string" ? value : "";
}

function membership(op: "subscribe" | "unsubscribe"): Handler {
  return async (_request, url, options, work) => {
    const uid = validName(url, "uid");
    const channel = validName(url, "cid");
    work.add(1);
    await options.routes[op](uid, channel);
    return "ok";
  };
}

function offline(
  _request: Request,
  url: URL,
  options: AdminOptions,
  work: Admitted,
): Promise<unknown> {
  const uid = validName(url, "uid");
  const device = url.searchParams.get("device") ?? "";
  if (device !== "" && !isValidName(device)) throw badRequest("invalid device");
  const limitText = url.searchParams.get("limit");
  const limit = limitText === null ? options.msgLimit : Number(limitText);
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > options.msgLimit) {
    throw badRequest(`invalid limit (1 to ${options.msgLimit})`);
  }
  work.add(1);
  return options.routes.offline(uid, device, limit);
}

function shard(_request: Request, url: URL, options: AdminOptions): Promise<string> {
  const owner = options.routes.shardOf(validName(url, "uid"));
  return Promise.resolve(`${owner.host || options.defaultHost}:${owner.port}`);
}

async function stats(_request: Request, _url: URL, options: AdminOptions): Promise<unknown> {
  await options.refreshStats();
  return options.stats.report();
}

/** Prometheus' text format, from the same counters as `/stats`. */
async function metrics(_request: Request, _url: URL, options: AdminOptions): Promise<Response> {
  await options.refreshStats();
  return new Response(renderMetrics(options.stats), {
    headers: { "content-type": METRICS_CONTENT_TYPE },
  });
}

async function presence(_request: Request, url: URL, options: AdminOptions): Promise<unknown> {
  if (url.searchParams.has("cid")) {
    const channel = validName(url, "cid");
    return { cid: channel, online: await options.routes.channelPresence(channel) };
  }
  return await options.routes.userPresence(validName(url, "uid"));
}

function validName(url: URL, param: string): string {
  const value = url.searchParams.get(param);
  if (value === null) throw badRequest(`missing ${param}`);
  if (!isValidName(value)) throw badRequest(`invalid ${param}`);
  return value;
}

const encoder = new TextEncoder();

function reply(status: number, body: unknown): Response {
  const headers: Record<string, string> = { "content-type": "application/json; charset=utf-8" };
  // The rest of a refused body is not worth reading: closing stops the upload.
  if (status === 413) headers.connection = "close";
  // Every 503 (overloaded, storage busy or down, draining) passes: say when to try again.
  if (status === 503) headers["retry-after"] = RETRY_AFTER_SEC;
  if (status === 401) headers["www-authenticate"] = "Bearer";
  return new Response(JSON.stringify(body), { status, headers });
}
