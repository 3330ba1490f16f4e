/**
 * Requests to other nodes: ops for uids they own, over their admin port's `/cluster/ops`.
 * A turn's ops for one node go in one POST on a kept-alive connection; a node that does not
 * answer fails its ops with a 503 that names it, never a silent drop.
 *
 * @module
 */

import { perTurn } from "../thread/batch.ts";
import { ServiceError } from "../core/errors.ts";
import type { ShardOp } from "../shard/ops.ts";
import type { NodeInfo } from "./topology.ts";

/** The path of the cluster-internal endpoint on every node's admin port. */
export const CLUSTER_OPS_PATH = "/cluster/ops";

/** One op's outcome, as `/cluster/ops` answers it. */
export type OpResult = { value: unknown } | { error: string; status: number };

interface Pending {
  op: ShardOp;
  resolve(value: unknown): void;
  reject(error: Error): void;
}

/** Batched request channels to the other nodes. */
export class Peers {
  #senders = new Map<string, (pending: Pending) => void>();

  constructor(nodes: readonly NodeInfo[], timeoutMs: number) {
    for (const node of nodes) {
      const url = `http://${node.host}:${node.adminPort}${CLUSTER_OPS_PATH}`;
      this.#senders.set(node.id, perTurn((batch) => send(node.id, url, batch, timeoutMs)));
    }
  }

  /** Runs `op` on node `nodeId`; settles with that node's answer. */
  request(nodeId: string, op: ShardOp): Promise<unknown> {
    const sender = this.#senders.get(nodeId);
    if (!sender) return Promise.reject(new ServiceError(`unknown node ${nodeId}`, 500));
    return new Promise((resolve, reject) => sender({ op, resolve, reject }));
  }
}

async function send(nodeId: string, url: string, batch: Pending[], timeoutMs: number) {
  let results: OpResult[];
  try {
    const response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(batch.map((pending) => pending.op)),
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (!response.ok) throw new Error(`HTTP ${response.status}: ${await response.text()}`);
    results = (await response.json()).result;
  } catch (error) {
    const failure = new ServiceError(
      `node ${nodeId} unreachable: ${(error as Error).message}`,
      503,
    );
    for (const pending of batch) pending.reject(failure);
    return;
  }
  batch.forEach((pending, i) => {
    const result = results[i];
    // `{value: undefined}` crosses JSON as `{}`: only an `error` key means failure.
    if ("error" in result) pending.reject(new ServiceError(result.error, result.status));
    else pending.resolve(result.value);
  });
}
