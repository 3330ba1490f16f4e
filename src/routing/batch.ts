/**
 * Per-turn batching: items handed over during one turn of the event loop are sent together
 * at its end. Cross-thread messages cost per post, not per item, so this is what makes
 * `postMessage` and `BroadcastChannel` cheap under load.
 *
 * @module
 */

/** Returns a function that queues an item; `send` gets each turn's items in one array. */
export function perTurn<T>(send: (items: T[]) => void): (item: T) => void {
  let queued: T[] = [];
  return (item) => {
    if (queued.push(item) > 1) return;
    queueMicrotask(() => {
      const items = queued;
      queued = [];
      send(items);
    });
  };
}
