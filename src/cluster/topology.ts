/**
 * The cluster's shape: every node, its ports and workers, and so every shard. All nodes
 * read the same `--cluster_nodes` and compute the same uid → shard map; a single node is a
 * cluster of one.
 *
 * @module
 */

import type { Config } from "../config/flags.ts";
import { isValidName } from "../core/names.ts";
import type { ShardAddress } from "../core/shard_map.ts";

/** One node of the cluster. */
export interface NodeInfo {
  id: string;
  /** Advertised host: clients and peers reach this node there. */
  host: string;
  clientPort: number;
  adminPort: number;
  /** Shard k of this node listens on shardPortBase + k (0: ephemeral, single node only). */
  shardPortBase: number;
  workers: number;
  /** Its shards' actual ports, where known (a member of a Redis-managed cluster says them). */
  shardPorts?: number[];
}

/** Every node (its shards: {@linkcode shardsOf}), and which of them this process is. */
export interface Topology {
  self: NodeInfo;
  nodes: NodeInfo[];
  clustered: boolean;
  /**
   * Members come and go at run time (`--cluster=redis`): `nodes` and `shards` are then only
   * this node, and the membership (`membership.ts`) gives the rest.
   */
  dynamic: boolean;
}

const NODE = /^([^=]+)=([^:]+):(\d+):(\d+):(\d+):(\d+)$/;

/** Builds the topology from the flags; throws with a message naming what is wrong. */
export function topology(config: Config): Topology {
  const dynamic = config.cluster === "redis";
  if (dynamic) checkDynamic(config);
  const clustered = dynamic || config.cluster_nodes.trim() !== "";
  const nodes = clustered && !dynamic ? parseNodes(config.cluster_nodes) : [{
    id: config.node_id,
    host: config.advertise_host,
    clientPort: config.client_port,
    adminPort: config.admin_port,
    shardPortBase: config.shard_port_base,
    workers: config.workers,
  }];
  const self = nodes.find((node) => node.id === config.node_id);
  if (!self) throw new Error(`--node_id=${config.node_id} is not in --cluster_nodes`);
  if (clustered && config.redis_url === "") {
    throw new Error("a cluster (--cluster_nodes) needs --redis_url for its bus and presence");
  }
  return { self, nodes, clustered, dynamic };
}

/** What `--cluster=redis` needs of the other flags. */
function checkDynamic(config: Config): void {
  if (config.cluster_nodes.trim() !== "") {
    throw new Error("--cluster=redis takes its members from Redis: leave --cluster_nodes empty");
  }
  if (config.redis_url === "") throw new Error("--cluster=redis needs --redis_url");
  if (!isValidName(config.cluster_name)) {
    throw new Error(`--cluster_name=${config.cluster_name} is not a valid name`);
  }
  if (config.advertise_host === "") {
    throw new Error(
      "--cluster=redis needs --advertise_host: the other members reach this one there",
    );
  }
}
/** A node's shards, in order: `node/0` … `node/(workers-1)`. */
export function shardsOf(node: NodeInfo): ShardAddress[] {
  return Array.from({ length: node.workers }, (_, k) => ({
    id: `${node.id}/${k}`,
    host: node.host,
    port: node.shardPorts?.[k] ?? (node.shardPortBase === 0 ? 0 : node.shardPortBase + k),
  }));
}

function parseNodes(text: string): NodeInfo[] {
  const nodes = text.split(",").map((entry) => entry.trim()).filter(Boolean).map((entry) => {
    const match = NODE.exec(entry);
    if (!match || !isValidName(match[1])) {
      throw new Error(
        `--cluster_nodes: '${entry}' is not id=host:client_port:admin_port:shard_port_base:workers`,
      );
    }
    const [clientPort, adminPort, shardPortBase, workers] = match.slice(3).map(Number);
    if ([clientPort, adminPort, shardPortBase].some((p) => p < 1 || p > 65535) || workers < 1) {
      throw new Error(`--cluster_nodes: '${entry}' has a port or worker count out of range`);
    }
    return { id: match[1], host: match[2], clientPort, adminPort, shardPortBase, workers };
  });
  if (new Set(nodes.map((node) => node.id)).size !== nodes.length) {
    throw new Error("--cluster_nodes: node ids must be unique");
  }
  return nodes;
}
