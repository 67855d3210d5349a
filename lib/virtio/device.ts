/*V:010 A virtio device, as the launcher's device code sees it: a small
 * record (name, device id, the features it offers, how many queues and how
 * large, its configuration bytes) plus three verbs. activate() hands it one
 * queue session per live queue once the driver says DRIVER_OK; reset() takes
 * every session back; close() releases what the device holds on the host.
 *
 * A session is plain data: where the rings are, where their indices stand,
 * the negotiated ring features, the queue's doorbell (an eventfd that is
 * signalled each time the driver notifies the queue) and the interrupt line
 * to raise when the device has used buffers. That is all a device gets.
 * It never sees a transport register, it watches its own doorbells (on the
 * main loop, or on a thread of its own: a session can be posted to a
 * Worker as it is), and it raises its interrupt through raiseInterrupt()
 * below, the one place that does. So the same device sits behind
 * virtio-mmio today and virtio-pci tomorrow: only the transport that builds
 * the sessions changes. :*/

import type { GuestMemory } from "../memory.ts";
import type { EventLoop } from "../eventloop.ts";
import { signalEventfd } from "../sys/calls.ts";
import type { QueueFeatures, QueueLayout, QueueStart } from "./queue.ts";

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

/** Why an interrupt was raised: the bits of the interrupt status word (the same in mmio and PCI). */
export const INTERRUPT_CAUSE = { USED: 1, CONFIG: 2 } as const;

/** The feature bit `n` as a mask. */
export function bit(n: number): bigint {
  return 1n << BigInt(n);
}

/**
 * Where a device's interrupt goes: the word in shared memory the driver reads to learn why (set first), and
 * the eventfd that raises the interrupt (an irqfd, so KVM injects it without a stop in userspace). Plain
 * data: it can be posted to a Worker.
 */
export interface InterruptLine {
  /** Writing an 8-byte 1 to this eventfd raises the interrupt. */
  readonly irqfd: number;
  /** Holds the interrupt status word. */
  readonly status: SharedArrayBuffer;
  /** Index of the interrupt status word, as 32-bit words. */
  readonly word: number;
}

/*V:012 Raising an interrupt is two steps in a fixed order: first the cause
 * bit goes into the status word the driver reads in its handler, then the
 * eventfd is written. The other order would let the driver take the
 * interrupt, read a status word without the bit, and ignore it. A failed
 * write is the host's fault and is thrown, never swallowed: the guest would
 * otherwise wait for ever for an interrupt that was lost. (A full eventfd
 * counter is not a failure: the interrupt is pending already.) :*/

/**
 * Raises `line`'s interrupt for `cause`: sets the cause bit, then writes the irqfd. Callable on any thread.
 * @throws SysError naming the write and the errno if the irqfd cannot be written
 */
export function raiseInterrupt(line: InterruptLine, cause: number = INTERRUPT_CAUSE.USED): void {
  Atomics.or(new Int32Array(line.status), line.word, cause);
  signalEventfd(line.irqfd, "irqfd");
}

/** One live queue, as a device receives it at activation. Plain data: it can be posted to a Worker. */
export interface QueueSession {
  /** The queue's number within the device. */
  readonly index: number;
  /** For messages, e.g. "virtio-blk (disk.img) queue 0". */
  readonly name: string;
  /** The rings, as the driver placed them (checked by the transport: a Virtqueue accepts them). */
  readonly layout: Readonly<QueueLayout>;
  /** The negotiated ring features. */
  readonly features: Readonly<QueueFeatures>;
  /** Where the ring indices stand. */
  readonly start: Readonly<QueueStart>;
  /** Signalled each time the driver notifies this queue; the device watches and drains it. */
  readonly doorbell: number;
  /** The interrupt to raise when the driver wants to hear of used buffers. */
  readonly interrupt: InterruptLine;
}

/** What a device may ask of its transport once activated. */
export interface DeviceContext {
  /** Guest RAM: the one bounds-checked door. */
  readonly memory: GuestMemory;
  /** The main thread's event loop, for the device's doorbells and other fds. */
  readonly loop: EventLoop;
  /** The features the driver accepted. */
  readonly features: bigint;
  /** The guest broke a rule: the transport marks the device DEVICE_NEEDS_RESET and resets it. */
  fail(reason: string): void;
  /** The device changed its config bytes: the transport publishes them under a new generation and interrupts. */
  configChanged(): void;
  /** A --verbose line. */
  log(line: string): void;
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
  /** The device configuration space (read by the driver; the device may update it, then calls configChanged). */
  readonly config: Uint8Array;
  /** The driver wrote config bytes at `offset` (default: ignored). */
  writeConfig?(offset: number, bytes: Uint8Array): void;
  /** Return false to refuse a feature set at FEATURES_OK. */
  acceptFeatures?(features: bigint): boolean;
  /**
   * DRIVER_OK: the queues are live (index = queue number; undefined if the driver did not enable it). The
   * device starts watching the doorbells and serves what is already posted.
   */
  activate(ctx: DeviceContext, queues: ReadonlyArray<QueueSession | undefined>): void;
  /**
   * Stops all queue work and forgets every session, without blocking the caller for more than a few
   * milliseconds. When it returns, the device will not read or write the old rings, raise their interrupt or
   * touch guest memory for them again; work already in the kernel (a pwritev) may finish later, but its
   * result is dropped. A later activate() may come at once.
   */
  reset(): void;
  /** Release host resources (files, taps, threads). Safe twice. */
  close(): void;
}
