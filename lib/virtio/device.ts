/*V:010 A virtio device, as the launcher's device code sees it: a small
 * record (name, device id, the features it offers, how many queues and how
 * large, its configuration bytes) plus four verbs. activate() hands it its
 * queues once the driver says DRIVER_OK; notify() says the driver put new
 * buffers in a queue; reset() takes everything back. Devices never touch
 * transport registers: the same device could sit behind virtio-pci. :*/

import type { GuestMemory } from "../memory.ts";
import type { EventLoop } from "../eventloop.ts";
import type { Virtqueue } from "./queue.ts";

/** Virtio device ids (virtio spec 5). */
export const VIRTIO_ID = { NET: 1, BLOCK: 2, CONSOLE: 3, RNG: 4 } as const;

/** Device-independent feature bits (as bit numbers). */
export const VIRTIO_F = {
  NOTIFY_ON_EMPTY: 24,
  ANY_LAYOUT: 27,
  INDIRECT_DESC: 28,
  EVENT_IDX: 29,
  VERSION_1: 32,
  ACCESS_PLATFORM: 33,
  RING_PACKED: 34,
} as const;

/** The device status bits the driver writes. */
export const VIRTIO_STATUS = {
  ACKNOWLEDGE: 1,
  DRIVER: 2,
  DRIVER_OK: 4,
  FEATURES_OK: 8,
  NEEDS_RESET: 0x40,
  FAILED: 0x80,
} as const;

/** The feature bit `n` as a mask. */
export function bit(n: number): bigint {
  return 1n << BigInt(n);
}

/*V:341 A device may serve a queue on a thread of its own, so that a
 * request never passes through the main thread: that thread waits on the
 * queue's doorbell eventfd itself and raises the interrupt by writing the
 * irqfd, after setting the used-buffer bit in the interrupt status word of
 * the shared register image, as the transport would. The transport stops
 * watching a doorbell it has handed over until the device is reset. :*/

/** A queue's doorbell and the device's interrupt, for a device that serves the queue on its own thread. */
export interface QueueWiring {
  /** The queue's doorbell: an eventfd signalled each time the driver notifies the queue. */
  readonly doorbell: number;
  /** Writing an 8-byte 1 to this eventfd raises the device's interrupt. */
  readonly irqfd: number;
  /** The shared register image holding the interrupt status word. */
  readonly image: SharedArrayBuffer;
  /** Index of the interrupt status word in the image, as 32-bit words. */
  readonly isrWord: number;
  /** The used-buffer bit to set in it before writing the irqfd. */
  readonly usedBit: number;
}

/** What a device may ask of its transport once activated. */
export interface VirtioContext {
  /** Guest RAM: the one bounds-checked door. */
  readonly memory: GuestMemory;
  /** The main thread's event loop, for the device's own fds. */
  readonly loop: EventLoop;
  /** The features the driver accepted. */
  readonly features: bigint;
  /** The device returned buffers on `queue`: interrupt the driver if it wants one. */
  used(queue: number): void;
  /** The guest broke a rule: mark the device DEVICE_NEEDS_RESET and stop it. */
  fail(reason: string): void;
  /** The device changed its config bytes: bump the generation, interrupt. */
  configChanged(): void;
  /** A --verbose line. */
  log(line: string): void;
  /**
   * Hands queue `queue`'s doorbell and the interrupt to the device, which then serves the queue on its own
   * thread; the transport no longer watches that doorbell or calls notify() for it until the device is reset.
   * Absent, or returning undefined, when the transport cannot.
   */
  takeQueue?(queue: number): QueueWiring | undefined;
}

/** A virtio device model. */
export interface VirtioDevice {
  /** For messages, e.g. "virtio-blk (disk.img)". */
  readonly name: string;
  /** VIRTIO_ID_*. */
  readonly deviceId: number;
  /** Device-specific features offered (the transport adds ring and version bits). */
  readonly features: bigint;
  /** Maximum size of each queue; its length is the number of queues. */
  readonly queueSizes: readonly number[];
  /** The device configuration space (read by the driver; the device may update it). */
  readonly config: Uint8Array;
  /** The driver wrote config bytes at `offset` (default: ignored). */
  writeConfig?(offset: number, bytes: Uint8Array): void;
  /** Return false to refuse a feature set at FEATURES_OK. */
  acceptFeatures?(features: bigint): boolean;
  /** DRIVER_OK: the queues are live (index = queue number; undefined if not enabled). */
  activate(ctx: VirtioContext, queues: ReadonlyArray<Virtqueue | undefined>): void;
  /** The driver notified `queue`. */
  notify(queue: number): void;
  /** Drop all queue state and stop I/O, synchronously. */
  reset(): void;
  /** Release host resources (files, taps). */
  close(): void;
}
