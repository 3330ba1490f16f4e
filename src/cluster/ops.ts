/**
 * The node-to-node protocol, both halves: ops for uids another node owns travel to that
 * node's admin port as `POST /cluster/ops` (a JSON array of {@linkcode OwnerOp}s, answered
 * with one {@linkcode OpResult} each). The ops for one node of a pass of the event loop (many
 * `/pub`s, each its own callback) go in one request on a kept-alive connection: a round trip
 * costs far more than an op (a request per microtask turn, so one a `/pub`, took 1.3-1.5 times
 * the CPU a delivery, docs/performance.md). A node that does not answer fails its ops with a
 * 503 that names it, never a silent drop. The receiving half checks every op as `/pub` checks
 * a back end's request before any of them runs: node-to-node input is input. Requests carry
 * the admin token, which the admin API asks of them as of any request.
 *
 * @module
 */

import { badRequest, errorAnswer, ServiceError } from "../core/errors.ts";
import { readBody } from "../core/http_body.ts";
import { BATCH_MAX_ITEMS, checkOwnerOp, type OwnerOp } from "../core/requests.ts";
import type { ShardCounters } from "../stats/counters.ts";
import { perPass } from "../thread/batch.ts";
import type { NodeInfo } from "./topology.ts";

/** The path of the cluster-internal endpoint on every node's admin port. */
export const CLUSTER_OPS_PATH = "/cluster/ops";

/** One op's outcome, as `/cluster/ops` answers it. */
export type OpResult = { value: unknown } | { error: string; status: number };

/** Largest `/cluster/ops` body: a `/pub/batch` forwarded whole, with room for its encoding. */
const MAX_BODY_BYTES = 64 << 20;
/** Most ops in one request: a turn's worth of forwards. */
const MAX_OPS = BATCH_MAX_ITEMS;

interface Pending {
  op: OwnerOp;
  resolve(value: unknown): void;
  reject(error: Error): void;
}

/** The sending half: batched request channels to the other nodes. */
export class Peers {
  #senders = new Map<string, { url: string; send: (pending: Pending) => void }>();
  #headers: Record<string, string> = { "content-type": "application/json" };
  #timeoutMs: number;
  #counters: ShardCounters;

  /**
   * `adminToken` is sent as a bearer token ("": none); `counters` count the ops sent and
   * those that did not reach their node.
   */
  constructor(
    nodes: readonly NodeInfo[],
    timeoutMs: number,
    adminToken: string,
    counters: ShardCounters,
  ) {
    if (adminToken !== "") this.#headers.authorization = `Bearer ${adminToken}`;
    this.#timeoutMs = timeoutMs;
    this.#counters = counters;
    this.setNodes(nodes);
  }

  /** The other nodes now (a Redis-managed cluster's members change; one may come back elsewhere). */
  setNodes(nodes: readonly NodeInfo[]): void {
    const known = new Map(this.#senders);
    this.#senders.clear();
    for (const node of nodes) {
      const url = `http://${node.host}:${node.adminPort}${CLUSTER_OPS_PATH}`;
      const sender = known.get(node.id);
      this.#senders.set(
        node.id,
        sender?.url === url ? sender : {
          url,
          send: perPass((batch) =>
            send(node.id, url, this.#headers, batch, this.#timeoutMs, this.#counters)
          ),
        },
      );
    }
  }

  /** Runs `op` on node `nodeId`; settles with that node's answer. */
  request(nodeId: string, op: OwnerOp): Promise<unknown> {
    const sender = this.#senders.get(nodeId);
    if (!sender) return Promise.reject(new ServiceError(`unknown node ${nodeId}`, 500));
    return new Promise((resolve, reject) => sender.send({ op, resolve, reject }));
  }
}

async function send(
  nodeId: string,
  url: string,
  headers: Record<string, string>,
  batch: Pending[],
  timeoutMs: number,
  counters: ShardCounters,
) {
  counters.cluster_forwarded_ops += batch.length;
  let results: OpResult[];
  try {
    const response = await fetch(url, {
      method: "POST",
      headers,
      body: JSON.stringify(batch.map((pending) => pending.op)),
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (response.status === 503) {
      // Overloaded or draining: it answered, and the back end should hear why, and back off.
      const reason = String((await response.json().catch(() => ({}))).error ?? "unavailable");
      throw new ServiceError(`node ${nodeId}: ${reason}`, 503);
    }
    if (!response.ok) throw new Error(`HTTP ${response.status}: ${await response.text()}`);
    results = (await response.json()).result;
    if (!Array.isArray(results) || results.length !== batch.length) {
      throw new Error(`answered ${JSON.stringify(results)?.slice(0, 80)} to ${batch.length} ops`);
    }
  } catch (error) {
    const failure = error instanceof ServiceError
      ? error
      : new ServiceError(`node ${nodeId} unreachable: ${(error as Error).message}`, 503);
    counters.cluster_forward_errors += batch.length;
    for (const pending of batch) pending.reject(failure);
    return;
  }
  batch.forEach((pending, i) => {
    const result = results[i];
    // `{value: undefined}` crosses JSON as `{}`: only an `error` key means failure.
    if (typeof result === "object" && result !== null && "error" in result) {
      pending.reject(new ServiceError(String(result.error), Number(result.status) || 500));
    } else pending.resolve((result as { value?: unknown })?.value);
  });
}

/** How much work an op is, for admission control: its messages (a hand-off: its uids). */
function sizeOf(op: OwnerOp): number {
  if (op.op === "publish_many") return op.requests.length;
  if (op.op === "import") return op.users.length;
  return 1;
}

/** What the receiving half needs: this node's limits, and a way to run an op here. */
export interface OpsServer {
  maxBodyBytes: number;
  msgLimit: number;
  /** Runs an op for a uid this node owns. */
  run(op: OwnerOp): Promise<unknown>;
}

/**
 * The receiving half: answers one `/cluster/ops` request. `count` hears how many messages it
 * carries (for admission control) before any runs.
 */
export async function serveClusterOps(
  request: Request,
  server: OpsServer,
  count: (messages: number) => void,
): Promise<OpResult[]> {
  let value: unknown;
  try {
    value = JSON.parse(await readBody(request, MAX_BODY_BYTES));
  } catch (error) {
    if (error instanceof ServiceError) throw error;
    throw badRequest("bad json");
  }
  if (!Array.isArray(value) || value.length > MAX_OPS) {
    throw badRequest(`expected a json array of at most ${MAX_OPS} ops`);
  }
  const ops = value.map((op) => checkOwnerOp(op, server.maxBodyBytes, server.msgLimit));
  count(ops.reduce((sum, op) => sum + sizeOf(op), 0));
  return await Promise.all(ops.map((op) =>
    server.run(op).then(
      (value): OpResult => ({ value }),
      (error: Error): OpResult => errorAnswer(error),
    )
  ));
}
