/**
 * The shard entry: one Web Worker per shard. Its first message says which shard it is
 * (`ShardInit`); from then on a {@linkcode Link} carries the main thread's ops to the shard
 * started by `src/shard/worker.ts`.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { createLog } from "../src/core/log.ts";
import type { ShardInit, ShardNote, ShardOp } from "../src/shard/ops.ts";
import { type RunningShard, startShard } from "../src/shard/worker.ts";
import { Link } from "../src/thread/link.ts";

self.onmessage = (event: MessageEvent<ShardInit>) => {
  const init = event.data;
  const log = createLog({
    // The shard's index within the node, as `/metrics` labels it (`slot` 0 is the main thread).
    component: `shard-${init.slot - 1}`,
    node: init.config.node_id,
    threshold: init.config.log_level,
    format: init.config.log_format,
  });
  // The link takes over `onmessage` now, so requests that arrive while the store opens
  // wait for the shard to be running instead of being lost.
  const running = Promise.withResolvers<RunningShard>();
  const link = new Link(
    self,
    async (op) => (await running.promise).handle(op as ShardOp),
    () => {},
  );
  startShard(init, link, log).then(running.resolve, (error) => {
    log("error", `cannot start: ${error.stack ?? error}`);
    // Tell the main thread, which would otherwise wait for "ready" forever; the link posts
    // at the end of this turn, so close after that.
    link.notify({ type: "failed", reason: error.message ?? String(error) } satisfies ShardNote);
    setTimeout(() => self.close(), 100);
  });
};
