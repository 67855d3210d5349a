/*V:500 The entropy device is the smallest virtio device there is: one
 * queue of writable buffers, which we fill from the host kernel's CSPRNG
 * (getrandom) straight into guest memory and hand back. It shows the shape
 * every device loop takes: pop a chain, do the work, push it used, and
 * interrupt once for the whole batch.
 *
 * Only the chain's writable buffers count, filled in order up to
 * RNG_MAX_PER_REQUEST bytes; readable ones (the spec has the driver post
 * none) are neither read nor written. The used length is what we filled,
 * which is a prefix of the writable buffers: getrandom may return fewer
 * bytes than asked for a large buffer, so each is filled in a loop.
 *
 * Having emptied the ring, the device must ask for the next doorbell. With
 * EVENT_IDX (which Linux always takes) the driver rings only when its avail
 * index steps over avail_event, and nothing else moves avail_event: leave it
 * at 0 and Linux's virtio_rng, which keeps one 64-byte buffer posted and
 * posts the next when it has used that one up, rings for its first buffer
 * and never again, so every read of /dev/hwrng after the first 64 bytes
 * waits forever. So each drain ends with enableNotifications(true), which
 * sets avail_event to the next index we will read, and drains again if a
 * buffer slipped in before the driver could see it: drainQueue (V:150)
 * does that for every device, and bounds the turn, since a driver can
 * re-post a buffer as fast as we fill it. :*/

import { getrandomAt } from "../sys/calls.ts";
import type { Chain } from "./queue.ts";
import { type DeviceContext, type QueueSession, VIRTIO_ID, type VirtioDevice } from "./device.ts";
import { DEFAULT_BUDGET, type DrainEnd, drainQueue, LoopQueue } from "./drain.ts";

/** The most bytes we hand out per request (Linux asks for at most a page or so). */
export const RNG_MAX_PER_REQUEST = 64 * 1024;

/** virtio-rng backed by getrandom(2). */
export class RngDevice implements VirtioDevice {
  /** For messages. */
  readonly name: string = "virtio-rng";
  /** VIRTIO_ID_RNG. */
  readonly deviceId: number = VIRTIO_ID.RNG;
  /** No device-specific features. */
  readonly features: bigint = 0n;
  /** One request queue. */
  readonly queueSizes: readonly number[] = [256];
  /** No configuration space. */
  readonly config: Uint8Array = new Uint8Array(0);
  #queue: LoopQueue | undefined;

  /** Takes the request queue and fills what is already posted. */
  activate(ctx: DeviceContext, queues: ReadonlyArray<QueueSession | undefined>): void {
    this.reset();
    const session = queues[0];
    if (session === undefined) return;
    this.#queue = new LoopQueue(ctx, session, (q) => this.#turn(ctx, q));
    this.#queue.run();
  }

  /** One turn: fills posted buffers with random bytes, at most a budget's worth, then one interrupt. */
  #turn(ctx: DeviceContext, q: LoopQueue): DrainEnd {
    const vq = q.vq;
    const { served, end } = drainQueue(vq, DEFAULT_BUDGET, (chain) => {
      vq.pushUsed(chain.head, this.#fill(ctx, chain));
      return true;
    });
    if (served > 0) q.interrupt();
    return end;
  }

  /** Fills a chain's writable buffers in order, up to RNG_MAX_PER_REQUEST bytes; returns how many. */
  #fill(ctx: DeviceContext, chain: Chain): number {
    let written = 0;
    for (const seg of chain.writable) {
      const len = Math.min(seg.len, RNG_MAX_PER_REQUEST - written);
      if (len <= 0) break;
      const host = ctx.memory.hostAddr(seg.addr, len, "rng buffer");
      for (let got = 0; got < len;) {
        const n = getrandomAt(host + BigInt(got), len - got);
        if (n <= 0) throw new Error(`getrandom returned ${n}`);
        got += n;
      }
      written += len;
    }
    return written;
  }

  /** Stops watching the doorbell and forgets the queue. */
  reset(): void {
    this.#queue?.close();
    this.#queue = undefined;
  }

  /** Nothing else to release. */
  close(): void {
    this.reset();
  }
}
