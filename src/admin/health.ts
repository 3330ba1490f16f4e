/**
 * Probes for load balancers and orchestrators, and the cluster view, mounted on the admin
 * API:
 *
 * - `GET /healthz`: the process answers (its admin event loop runs): `{"result":"ok"}`.
 * - `GET /readyz`: the node can serve: `{"result":"ready"}`, or `503` with every reason it
 *   cannot, as `{"error":"not ready: shard-1 store: ...; redis unreachable"}`.
 * - `GET /nodes`: every node of the cluster and how it is (`{"result":[member, ...]}`).
 *
 * While the node drains, all three answer `503 {"error":"draining"}`, as every admin path does.
 *
 * @module
 */

import { ServiceError } from "../core/errors.ts";
import type { Endpoint } from "./api.ts";

/** What the probes ask of the node. */
export interface HealthChecks {
  /** Why the node is not ready now; empty when it is. */
  check(): Promise<string[]>;
  /** The cluster's nodes and their health. */
  members(): Promise<unknown[]>;
}

/** The endpoints, by path, for `AdminOptions.mounts`. */
export function healthEndpoints(checks: HealthChecks): Record<string, Endpoint> {
  return {
    "/healthz": { name: "Healthz", methods: ["GET"], handle: () => Promise.resolve("ok") },
    "/readyz": {
      name: "Readyz",
      methods: ["GET"],
      async handle() {
        const reasons = await checks.check();
        if (reasons.length > 0) throw new ServiceError(`not ready: ${reasons.join("; ")}`, 503);
        return "ready";
      },
    },
    "/nodes": { name: "Nodes", methods: ["GET"], handle: () => checks.members() },
  };
}
