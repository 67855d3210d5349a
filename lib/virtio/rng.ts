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
 * bytes than asked for a large buffer, so each is filled in a loop. :*/

import { getrandomAt } from "../sys/calls.ts";
import type { Virtqueue } from "./queue.ts";
import { VIRTIO_ID, type VirtioContext, type VirtioDevice } from "./device.ts";

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
  #ctx: VirtioContext | undefined;
  #queue: Virtqueue | undefined;

  /** Takes the request queue. */
  activate(ctx: VirtioContext, queues: ReadonlyArray<Virtqueue | undefined>): void {
    this.#ctx = ctx;
    this.#queue = queues[0];
    this.notify(0);
  }

  /** Fills every posted buffer with random bytes. */
  notify(_queue: number): void {
    const ctx = this.#ctx;
    const q = this.#queue;
    if (ctx === undefined || q === undefined) return;
    let done = 0;
    for (let chain = q.pop(); chain !== undefined; chain = q.pop()) {
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
      q.pushUsed(chain.head, written);
      done++;
    }
    if (done) ctx.used(0);
  }

  /** Forgets the queue. */
  reset(): void {
    this.#ctx = undefined;
    this.#queue = undefined;
  }

  /** Nothing to release. */
  close(): void {}
}
