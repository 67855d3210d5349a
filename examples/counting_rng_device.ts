/*V:510 A device of your own, written only against mod.ts: an entropy
 * device (virtio id 4, so the guest's stock virtio_rng driver drives it)
 * that counts the requests it serves. Its bytes are not random: the Nth
 * request is filled with the byte N, so a test can see that the guest got
 * exactly what this device served. (Never give it to a guest that wants
 * real entropy: RngDevice is that.)
 *
 * The shape is the one every device has. A record (name, id, features,
 * queue sizes, config bytes) the transport shows the driver; activate()
 * with one session per live queue, which a LoopQueue turns into doorbell
 * callbacks on the main loop; a turn that drains the ring, pushes each
 * chain used with how many bytes it wrote, and raises one interrupt for
 * the batch; reset() and close() that let go of the queue. Guest buffers
 * are reached only through writeChain (and readChain, chainIoVecs), which
 * go through GuestMemory's bounds checks: the guest's addresses are never
 * trusted.
 *
 *   deno run -A examples/counting_rng_device.ts <kernel> [cmdline]
 *
 * boots the kernel with this device (and no other), the serial console on
 * stdout, and prints "DEVICE-REQUESTS: <n>" when the guest stops. :*/

import {
  type Chain,
  DEFAULT_BUDGET,
  type DeviceContext,
  type DrainEnd,
  drainQueue,
  LoopQueue,
  Machine,
  type QueueSession,
  VIRTIO_ID,
  type VirtioDevice,
  writeChain,
} from "../mod.ts";

/** An entropy device that fills the Nth request with the byte N (mod 256) and counts requests. */
export class CountingRngDevice implements VirtioDevice {
  /** For messages. */
  readonly name: string = "counting-rng";
  /** The guest's virtio_rng driver binds to this id. */
  readonly deviceId: number = VIRTIO_ID.RNG;
  /** No device-specific features (the transport offers the ring and version bits itself). */
  readonly features: bigint = 0n;
  /** One request queue of up to 64 entries. */
  readonly queueSizes: readonly number[] = [64];
  /** virtio-rng has no configuration space. */
  readonly config: Uint8Array = new Uint8Array(0);
  /** Requests served since the machine was built (kept across driver resets). */
  requests = 0;
  #queue: LoopQueue | undefined;

  /** The driver said DRIVER_OK: watch the queue's doorbell and serve what is already posted. */
  activate(ctx: DeviceContext, queues: ReadonlyArray<QueueSession | undefined>): void {
    this.reset();
    const session = queues[0];
    if (session === undefined) return;
    this.#queue = new LoopQueue(ctx, session, (q) => this.#turn(ctx, q));
    this.#queue.run();
  }

  /** One turn: serve posted chains (at most a budget's worth), then one interrupt if any were served. */
  #turn(ctx: DeviceContext, q: LoopQueue): DrainEnd {
    const { served, end } = drainQueue(q.vq, DEFAULT_BUDGET, (chain) => {
      q.vq.pushUsed(chain.head, this.#serve(ctx, chain));
      return true;
    });
    if (served > 0) q.interrupt();
    return end;
  }

  /** Fills the chain's writable buffers with this request's byte; returns how many bytes were written. */
  #serve(ctx: DeviceContext, chain: Chain): number {
    this.requests++;
    const bytes = new Uint8Array(Math.min(chain.writableBytes, 4096)).fill(this.requests & 0xff);
    return writeChain(ctx.memory, chain, bytes);
  }

  /** The driver reset the device: stop watching the doorbell and forget the queue. */
  reset(): void {
    this.#queue?.close();
    this.#queue = undefined;
  }

  /** Nothing on the host beyond the queue. */
  close(): void {
    this.reset();
  }
}

/**
 * Boots `kernel` with one CountingRngDevice and the serial console on stdout, until the guest stops.
 * @returns the run's result and how many requests the device served
 */
export async function bootWithCountingRng(
  kernel: string,
  cmdline = "",
): Promise<{ clean: boolean; reason: string; requests: number }> {
  const device = new CountingRngDevice();
  await using machine = Machine.create({
    memoryMiB: 64,
    kernel,
    cmdline,
    consoleInputFd: null,
    acpi: false,
    devices: [device],
  });
  const result = await machine.run();
  return { clean: result.clean, reason: result.reason, requests: device.requests };
}

if (import.meta.main) {
  const [kernel, cmdline] = Deno.args;
  if (kernel === undefined) {
    console.error("usage: counting_rng_device.ts <kernel> [cmdline]");
    Deno.exit(2);
  }
  const r = await bootWithCountingRng(kernel, cmdline);
  console.log(`DEVICE-REQUESTS: ${r.requests}`);
  if (!r.clean) console.error(`guest failed: ${r.reason}`);
  Deno.exit(r.clean ? 0 : 1);
}
