/*T:668 Seeing what a device pops. A device builds its own Virtqueue from
 * its session, deep inside, so a test that wants to see each chain as the
 * device took it (to bound what the device may write) or to act at the
 * moment the device finds the ring empty (to play a driver that posts just
 * then) hooks Virtqueue.prototype.pop for the length of one test. The
 * chains and the rings are the real ones; the hook only watches, or runs
 * the test's action, and always restores the method. :*/

import { type Chain, Virtqueue } from "../../lib/virtio/queue.ts";

/**
 * Calls `onPop` with every pop's result (undefined: the ring was empty) until the returned function is called.
 * @returns restores Virtqueue.prototype.pop
 */
export function hookPops(onPop: (vq: Virtqueue, chain: Chain | undefined) => void): () => void {
  const original = Object.getOwnPropertyDescriptor(Virtqueue.prototype, "pop")!;
  const pop = original.value as (this: Virtqueue) => Chain | undefined;
  Virtqueue.prototype.pop = function (this: Virtqueue) {
    const chain = pop.call(this);
    onPop(this, chain);
    return chain;
  };
  return () => Object.defineProperty(Virtqueue.prototype, "pop", original);
}
