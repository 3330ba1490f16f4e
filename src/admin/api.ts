/**
 * The back-end (admin) HTTP API of PROTOCOL.md §3: `/pub /sub /unsub /msg /shard /stats`.
 * A plain `Request → Response` handler for `Deno.serve`; it reaches the shards only through
 * {@linkcode AdminRoutes}, so it does not care where a shard runs.
 *
 * @module
 */

import type { OpResult } from "../cluster/peers.ts";
import type { UserPresence } from "../cluster/presence.ts";
import type { UnicastOp } from "../cluster/router.ts";
import { isValidName } from "../protocol/names.ts";
import type { ShardAddress } from "../routing/hash.ts";
import { ServiceError } from "../routing/link.ts";
import type { ShardOp } from "../shard/ops.ts";
import type { StatsBook } from "../stats/report.ts";

/** How the API reaches shards. */
export interface AdminRoutes {
  /** Sends an op to the shard that owns `uid`. */
  toOwner(uid: string, op: ShardOp): Promise<unknown>;
  /** Sends an op to every shard (channel messages). */
  toAll(op: ShardOp): Promise<unknown[]>;
  /** The shard a client with this uid should connect to. */
  shardOf(uid: string): ShardAddress;
  /** Runs an op another node forwarded, for a uid this node owns. */
  toLocalOwner(op: UnicastOp): Promise<unknown>;
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
  /** `--debug_api`: crashes local shard `k`; absent otherwise. */
  crashShard?: (k: number) => Promise<unknown>;
  /** Brings the shards' counters up to date before `/stats` reports. */
  refreshStats(): Promise<void>;
  /** The host `/shard` names when shards advertise none. */
  defaultHost: string;
  draining(): boolean;
}

type Handler = (request: Request, url: URL, options: AdminOptions) => Promise<unknown>;

const ENDPOINTS: Record<string, { name: string; methods: string[]; handle: Handler }> = {
  "/pub": { name: "Pub", methods: ["POST"], handle: publish },
  "/sub": { name: "Sub", methods: ["GET", "POST"], handle: membership("sub") },
  "/unsub": { name: "Unsub", methods: ["GET", "POST"], handle: membership("unsub") },
  "/msg": { name: "Msg", methods: ["GET"], handle: offline },
  "/shard": { name: "Shard", methods: ["GET"], handle: shard },
  "/stats": { name: "Stats", methods: ["GET"], handle: stats },
  "/presence": { name: "Presence", methods: ["GET"], handle: presence },
  "/cluster/ops": { name: "ClusterOps", methods: ["POST"], handle: clusterOps },
  "/debug/crash": { name: "DebugCrash", methods: ["POST"], handle: crash },
};

/** Creates the handler. */
export function adminHandler(options: AdminOptions): (request: Request) => Promise<Response> {
  return async (request) => {
    const url = new URL(request.url);
    const endpoint = ENDPOINTS[url.pathname];
    if (!endpoint) return reply(404, { error: "not found" });
    options.stats.count(endpoint.name);
    if (!endpoint.methods.includes(request.method)) {
      return reply(405, { error: "method not allowed" });
    }
    if (options.draining()) return reply(503, { error: "draining" });
    try {
      return reply(200, { result: await endpoint.handle(request, url, options) });
    } catch (error) {
      if (error instanceof ServiceError) return reply(error.status, { error: error.message });
      throw error;
    }
  };
}

async function publish(request: Request, url: URL, options: AdminOptions): Promise<string> {
  const params = url.searchParams;
  const to = params.get("to");
  const channel = params.get("channel");
  const from = params.get("from");
  if ((to === null) === (channel === null)) throw badRequest("give exactly one of to, channel");
  if (to !== null && !isValidName(to)) throw badRequest("invalid to");
  if (channel !== null && !isValidName(channel)) throw badRequest("invalid channel");
  if (!isValidName(from)) throw badRequest(from === null ? "missing from" : "invalid from");
  const ttlText = params.get("ttl") ?? "0";
  if (!/^\d{1,9}$/.test(ttlText)) throw badRequest("invalid ttl");
  const volatileText = params.get("volatile") ?? "0";
  if (volatileText !== "0" && volatileText !== "1") throw badRequest("invalid volatile");
  const payload = await readBody(request, options.maxBodyBytes);
  const message = {
    from,
    body: JSON.stringify(payload),
    ttlSec: Number(ttlText),
    volatile: volatileText === "1",
  };
  if (to !== null) await options.routes.toOwner(to, { op: "pub", request: { to, ...message } });
  else await options.routes.toAll({ op: "cpub", request: { channel: channel!, ...message } });
  return "ok";
}

function membership(op: "sub" | "unsub"): Handler {
  return async (_request, url, options) => {
    const uid = validName(url, "uid");
    const channel = validName(url, "cid");
    await options.routes.toOwner(uid, { op, uid, channel });
    return "ok";
  };
}

function offline(_request: Request, url: URL, options: AdminOptions): Promise<unknown> {
  const uid = validName(url, "uid");
  const limitText = url.searchParams.get("limit");
  const limit = limitText === null ? options.msgLimit : Number(limitText);
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > options.msgLimit) {
    throw badRequest(`invalid limit (1 to ${options.msgLimit})`);
  }
  return options.routes.toOwner(uid, { op: "msg", uid, limit });
}

function shard(_request: Request, url: URL, options: AdminOptions): Promise<string> {
  const owner = options.routes.shardOf(validName(url, "uid"));
  return Promise.resolve(`${owner.host || options.defaultHost}:${owner.port}`);
}

async function stats(_request: Request, _url: URL, options: AdminOptions): Promise<unknown> {
  await options.refreshStats();
  return options.stats.report();
}

async function presence(_request: Request, url: URL, options: AdminOptions): Promise<unknown> {
  if (url.searchParams.has("cid")) {
    const channel = validName(url, "cid");
    return { cid: channel, online: await options.routes.channelPresence(channel) };
  }
  return await options.routes.userPresence(validName(url, "uid"));
}

const FORWARDED_OPS = new Set(["pub", "sub", "unsub", "msg"]);

/** Cluster-internal: ops from another node for uids this node owns, answered one by one. */
async function clusterOps(request: Request, _url: URL, options: AdminOptions): Promise<OpResult[]> {
  let ops: UnicastOp[];
  try {
    ops = await request.json();
    if (!Array.isArray(ops) || !ops.every((op) => FORWARDED_OPS.has(op?.op))) throw new Error();
  } catch {
    throw badRequest("expected a json array of pub, sub, unsub or msg ops");
  }
  return await Promise.all(ops.map((op) =>
    options.routes.toLocalOwner(op).then(
      (value): OpResult => ({ value }),
      (error: Error): OpResult => ({
        error: error.message,
        status: error instanceof ServiceError ? error.status : 500,
      }),
    )
  ));
}

async function crash(_request: Request, url: URL, options: AdminOptions): Promise<string> {
  if (!options.crashShard) throw new ServiceError("not found", 404);
  const shard = Number(url.searchParams.get("shard"));
  if (!Number.isSafeInteger(shard) || shard < 0) throw badRequest("invalid shard");
  await options.crashShard(shard);
  return "ok";
}

function validName(url: URL, param: string): string {
  const value = url.searchParams.get(param);
  if (value === null) throw badRequest(`missing ${param}`);
  if (!isValidName(value)) throw badRequest(`invalid ${param}`);
  return value;
}

async function readBody(request: Request, maxBytes: number): Promise<string> {
  const declared = Number(request.headers.get("content-length") ?? "0");
  if (declared > maxBytes) throw new ServiceError(`body over ${maxBytes} bytes`, 413);
  const bytes = new Uint8Array(await request.arrayBuffer());
  if (bytes.length > maxBytes) throw new ServiceError(`body over ${maxBytes} bytes`, 413);
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw badRequest("body is not utf-8");
  }
}

function badRequest(reason: string): ServiceError {
  return new ServiceError(reason, 400);
}

function reply(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json; charset=utf-8" },
  });
}
