/**
 * `GET /cluster` on the admin API: the cluster as this node sees it — how it is managed, the
 * map version it serves by, each member (its addresses, workers, shards and, under
 * `--cluster=redis`, how old its lease is and which version it has applied), the shard
 * count, and under `--cluster=redis` the members lost with their uids' state (whose uids are
 * refused as `state lost`) and the losses an operator accepted. Under `--cluster=redis` the
 * membership is read from Redis for the answer (a `503` when Redis cannot be read); a static
 * cluster answers from its flags.
 *
 * `DELETE /cluster/lost?node=ID`: an operator accepts that a lost member's files are gone for
 * good; its uids are then served, numbered above the floor the answer gives (docs/cluster.md).
 *
 * @module
 */

import type { Endpoint } from "../admin/api.ts";
import type { MapKeeper } from "../cluster/map_keeper.ts";
import type { Membership } from "../cluster/membership.ts";
import { type NodeInfo, shardsOf, type Topology } from "../cluster/topology.ts";
import { nodeOf } from "../core/shard_map.ts";
import { badRequest, ServiceError } from "../core/errors.ts";
import { isValidName } from "../core/names.ts";
import type { ShardAddress, ShardMap } from "../core/shard_map.ts";

/** The parts `/cluster` reads. */
export interface ClusterSources {
  topology: Topology;
  /** The members the local map is built from. */
  members(): readonly NodeInfo[];
  /** The local map (its shards have this node's actual ports). */
  map(): ShardMap;
  /** A Redis-managed cluster's membership and keeper, once it has joined. */
  managed():
    | {
      membership: Pick<Membership, "read" | "leaseMs" | "acceptLoss">;
      keeper: Pick<MapKeeper, "state">;
    }
    | undefined;
}

/** The `/cluster` and `/cluster/lost` endpoints. */
export function clusterEndpoint(sources: ClusterSources): Record<string, Endpoint> {
  return {
    "/cluster": {
      name: "Cluster",
      methods: ["GET"],
      handle: () => describe(sources),
    },
    "/cluster/lost": {
      name: "ClusterLost",
      methods: ["DELETE"],
      handle: (_request, url) => acceptLoss(sources, url),
    },
  };
}

/** `DELETE /cluster/lost?node=ID`: the loss of ID's uids' state is accepted. */
async function acceptLoss(sources: ClusterSources, url: URL): Promise<unknown> {
  const node = url.searchParams.get("node");
  if (node === null) throw badRequest("missing node");
  if (!isValidName(node)) throw badRequest("invalid node");
  if (!sources.topology.dynamic) {
    throw new ServiceError("no lost records: not a redis-managed cluster (--cluster=redis)", 404);
  }
  const managed = sources.managed();
  if (!managed) throw new ServiceError("not joined the cluster yet", 503);
  let answer;
  try {
    answer = await managed.membership.acceptLoss(node);
  } catch (error) {
    throw new ServiceError(`redis unreachable: ${(error as Error).message}`, 503);
  }
  if (answer === "unknown") throw new ServiceError(`no lost record of node ${node}`, 404);
  if (answer === "member") {
    throw new ServiceError(
      `node ${node} is a live member: its lost record, if any, clears itself once it has ` +
        "applied a map",
      409,
    );
  }
  return {
    node,
    ...ownShards(node, answer.shards),
    // Its uids' s are numbered above it from now on.
    floor: answer.floor,
    version: answer.version,
    at: new Date(answer.at).toISOString(),
  };
}

/** How many shards `node` had in the map `shards` it was lost in, of how many. */
function ownShards(node: string, shards: readonly string[]) {
  return {
    shards: shards.filter((id) => id.startsWith(`${node}/`)).length,
    map_shards: shards.length,
  };
}

async function describe(sources: ClusterSources): Promise<unknown> {
  const { topology } = sources;
  const self = topology.self.id;
  const managed = sources.managed();
  if (!managed) {
    const shards = sources.map().shards;
    const members = sources.members().map((node) =>
      entry(node, self, shards.filter((shard) => nodeOf(shard) === node.id))
    );
    return {
      mode: topology.clustered ? "static" : "single",
      self,
      version: 0,
      members,
      shards: members.reduce((sum, member) => sum + member.workers, 0),
    };
  }
  const { membership, keeper } = managed;
  let view;
  try {
    view = await membership.read();
  } catch (error) {
    throw new ServiceError(`redis unreachable: ${(error as Error).message}`, 503);
  }
  const { version, held } = keeper.state;
  const members = view.members.map((node) => {
    const left = view.leaseLeftMs.get(node.id) ?? -2;
    return {
      ...entry(node, self, shardsOf(node)),
      lease_age_ms: left < 0 ? null : Math.max(0, membership.leaseMs - left),
      lease_left_ms: left < 0 ? null : left,
      applied: view.applied.get(node.id) ?? 0,
    };
  });
  return {
    mode: "redis",
    self,
    // The version this node's map is built from; `latest`: Redis's now.
    version,
    latest: view.version,
    // This node waits for former owners to let go of uids the map gave it.
    held,
    lease_ms: membership.leaseMs,
    members,
    shards: members.reduce((sum, member) => sum + member.workers, 0),
    // Their uids without state here are refused (503 state lost): DELETE /cluster/lost.
    lost: view.lost.map(({ node, shards }) => {
      const since = view.lostAt.get(node);
      return {
        node,
        since: since === undefined ? null : new Date(since).toISOString(),
        ...ownShards(node, shards),
      };
    }),
    accepted: view.accepted.map(({ node, shards, floor, version, at }) => ({
      node,
      ...ownShards(node, shards),
      floor,
      version,
      at: new Date(at).toISOString(),
    })),
  };
}

function entry(node: NodeInfo, self: string, shards: readonly ShardAddress[]) {
  return {
    id: node.id,
    self: node.id === self,
    host: node.host,
    client_port: node.clientPort,
    admin_port: node.adminPort,
    workers: node.workers,
    shards: shards.map((shard) => ({ id: shard.id, port: shard.port })),
  };
}
