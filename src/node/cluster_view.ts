/**
 * `GET /cluster` on the admin API: the cluster as this node sees it — how it is managed, the
 * map version it serves by, each member (its addresses, workers, shards and, under
 * `--cluster=redis`, how old its lease is and which version it has applied), and the shard
 * count. Under `--cluster=redis` the membership is read from Redis for the answer (a `503`
 * when Redis cannot be read); a static cluster answers from its flags.
 *
 * @module
 */

import type { Endpoint } from "../admin/api.ts";
import type { MapKeeper } from "../cluster/map_keeper.ts";
import type { Membership } from "../cluster/membership.ts";
import { type NodeInfo, shardsOf, type Topology } from "../cluster/topology.ts";
import { nodeOf } from "../core/shard_map.ts";
import { ServiceError } from "../core/errors.ts";
import type { ShardAddress, ShardMap } from "../core/shard_map.ts";

/** The parts `/cluster` reads. */
export interface ClusterSources {
  topology: Topology;
  /** The members the local map is built from. */
  members(): readonly NodeInfo[];
  /** The local map (its shards have this node's actual ports). */
  map(): ShardMap;
  /** A Redis-managed cluster's membership and keeper, once it has joined. */
  managed(): { membership: Membership; keeper: MapKeeper } | undefined;
}

/** The `/cluster` endpoint. */
export function clusterEndpoint(sources: ClusterSources): Record<string, Endpoint> {
  return {
    "/cluster": {
      name: "Cluster",
      methods: ["GET"],
      handle: () => describe(sources),
    },
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
