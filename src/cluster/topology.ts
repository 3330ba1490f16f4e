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
}

/** Every node and shard, and which of them this process is. */
export interface Topology {
  self: NodeInfo;
  nodes: NodeInfo[];
  /** Every shard of every node, node by node: the input of the shard map. */
  shards: ShardAddress[];
  /** Index in `shards` of this node's shard 0. */
  firstShard: number;
  clustered: boolean;
}

const NODE = /^([^=]+)=([^:]+):(\d+):(\d+):(\d+):(\d+)$/;

/** Builds the topology from the flags; throws with a message naming what is wrong. */
export function topology(config: Config): Topology {
  const clustered = config.cluster_nodes.trim() !== "";
  const nodes = clustered ? parseNodes(config.cluster_nodes) : [{
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
  const shards: ShardAddress[] = [];
  let firstShard = 0;
  for (const node of nodes) {
    if (node === self) firstShard = shards.length;
    for (let k = 0; k < node.workers; k++) {
      shards.push({
        id: `${node.id}/${k}`,
        host: node.host,
        port: node.shardPortBase === 0 ? 0 : node.shardPortBase + k,
      });
    }
  }
  return { self, nodes, shards, firstShard, clustered };
}

/** The id of the node a shard belongs to. */
export function nodeOf(shard: ShardAddress): string {
  return shard.id.slice(0, shard.id.lastIndexOf("/"));
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
