/*T:552 A bench for the network device without a guest: guest RAM, two
 * TestDriver queues (receive at one place, transmit at another), and a
 * context that does what the transport would: counts the interrupts the
 * device asks for, and on a broken rule records the reason and resets the
 * device, exactly as DEVICE_NEEDS_RESET does. The event loop is the real
 * one; a test that wants frames to flow by themselves runs it.
 *
 * The other half of the bench is on the wire: a packet socket in the
 * test's namespace sees every frame the device writes to the tap as the
 * host kernel receives it, header stripped, so a test can check that what
 * the guest posted is what the host got. :*/

import { GuestMemory } from "../../../lib/memory.ts";
import type { EventLoop } from "../../../lib/eventloop.ts";
import { bufferAddress, close, pollOne, read, socket } from "../../../lib/sys/calls.ts";
import { IoVecs } from "../../../lib/sys/iovec.ts";
import { NetdevControl, Tap } from "../../../lib/sys/tap.ts";
import type { NetNs } from "./netns.ts";
import type { VirtioContext, VirtioDevice } from "../../../lib/virtio/device.ts";
import { NET_HDR_SIZE } from "../../../lib/virtio/net/hdr.ts";
import type { Virtqueue } from "../../../lib/virtio/queue.ts";
import { TestDriver } from "../driver.ts";

/** Where the bench puts the two queues. */
export const RX_BASE = 0x1000;
/** ... the transmit queue (1 MiB further, past the receive queue's data area). */
export const TX_BASE = 0x110000;

/** A VirtioContext that records what the device asked of its transport. */
export class BenchContext implements VirtioContext {
  /** Guest RAM. */
  readonly memory: GuestMemory;
  /** The real event loop. */
  readonly loop: EventLoop;
  /** The negotiated features. */
  readonly features: bigint;
  /** used() calls per queue. */
  readonly usedCalls: number[] = [0, 0];
  /** fail() reasons, in order. */
  readonly failures: string[] = [];
  /** log() lines. */
  readonly logs: string[] = [];
  #device: VirtioDevice | undefined;

  /**
   * @param memory guest RAM
   * @param loop the event loop handed to the device
   * @param features what the "driver" accepted
   */
  constructor(memory: GuestMemory, loop: EventLoop, features: bigint) {
    this.memory = memory;
    this.loop = loop;
    this.features = features;
  }

  /** Activates `device` on `queues` with this context; a throw fails it, as in the transport. */
  activate(device: VirtioDevice, queues: ReadonlyArray<Virtqueue>): void {
    this.#device = device;
    this.#guard(() => device.activate(this, queues));
  }

  /** Rings queue `queue`'s doorbell; a throw fails the device, as in the transport. */
  notify(queue: number): void {
    this.#guard(() => this.#device?.notify(queue));
  }

  #guard(work: () => void): void {
    try {
      work();
    } catch (e) {
      this.fail(e instanceof Error ? e.message : String(e));
    }
  }

  /** Counts an interrupt request. */
  used(queue: number): void {
    this.usedCalls[queue] = (this.usedCalls[queue] ?? 0) + 1;
  }

  /** Records the reason and resets the device, as the transport does. */
  fail(reason: string): void {
    this.failures.push(reason);
    this.#device?.reset();
  }

  /** Nothing to do: the bench reads config directly. */
  configChanged(): void {}

  /** Records a log line. */
  log(line: string): void {
    this.logs.push(line);
  }
}

/** Guest RAM with a receive and a transmit TestDriver. */
export interface Queues {
  /** Queue 0. */
  rx: TestDriver;
  /** Queue 1. */
  tx: TestDriver;
}

/** Lays out fresh receive and transmit queues of `size` in `mem`. */
export function makeQueues(mem: GuestMemory, size: number, eventIdx: boolean): Queues {
  return {
    rx: new TestDriver(mem, { base: RX_BASE, size, eventIdx }),
    tx: new TestDriver(mem, { base: TX_BASE, size, eventIdx }),
  };
}

/** A 12-byte virtio_net_hdr_v1 of zeros followed by `frame`. */
export function withHeader(frame: Uint8Array, header: Uint8Array = new Uint8Array(NET_HDR_SIZE)): Uint8Array {
  const out = new Uint8Array(NET_HDR_SIZE + frame.length);
  out.set(header.subarray(0, NET_HDR_SIZE));
  out.set(frame, NET_HDR_SIZE);
  return out;
}

/** Writes one frame (header first) to a tap. */
export function tapWrite(tap: Tap, bytes: Uint8Array<ArrayBuffer>): number {
  const iov = new IoVecs(1);
  iov.push(bufferAddress(bytes), bytes.length);
  return tap.writev(iov);
}

/** Reads and discards every frame waiting on `fd`. */
export function drain(fd: number): number {
  const buf = new Uint8Array(70_000);
  let n = 0;
  while (read(fd, buf) >= 0) n++;
  return n;
}

/** AF_PACKET / SOCK_RAW / htons(ETH_P_ALL) and SOCK_NONBLOCK (<linux/if_packet.h>, <linux/if_ether.h>). */
const AF_PACKET = 17;
const SOCK_RAW = 3;
const SOCK_NONBLOCK = 0o4000;
const ETH_P_ALL_BE = 0x0300;

/** A packet socket: every frame on every interface of its namespace, as the kernel sees it. */
export class Capture {
  readonly #fd: number;
  readonly #buf = new Uint8Array(70_000);

  /** Opens it; call inside the namespace (see NetNs.enter). */
  constructor() {
    this.#fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK, ETH_P_ALL_BE);
  }

  /** The next frame, waiting up to `timeoutMs` for it; undefined if none came. */
  next(timeoutMs: number): Uint8Array | undefined {
    if (pollOne(this.#fd, 1, timeoutMs) === 0) return undefined;
    const n = read(this.#fd, this.#buf);
    return n < 0 ? undefined : this.#buf.slice(0, n);
  }

  /** Throws away whatever has been captured so far. */
  drain(): number {
    return drain(this.#fd);
  }

  /** Closes the socket. */
  close(): void {
    close(this.#fd);
  }
}

/** Starts `loop` in the background; the returned function stops it and waits for it to end. */
export function runLoop(loop: EventLoop): () => Promise<void> {
  const done = loop.run();
  return async () => {
    loop.stop();
    await done;
  };
}

/** Waits until `cond()` holds, or fails after `limitMs` (a bound against hangs, not a timing assertion). */
export async function until(cond: () => boolean, what: string, limitMs = 5000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > limitMs) throw new Error(`gave up waiting for ${what} after ${limitMs} ms`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

/** The parts, one after another, in a new array. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  return parts.reduce((acc, p) => {
    const out = new Uint8Array(acc.length + p.length);
    out.set(acc);
    out.set(p, acc.length);
    return out;
  }, new Uint8Array(0));
}

/** New guest RAM of `mib` MiB. */
export function guestRam(mib = 4): GuestMemory {
  return GuestMemory.create(mib * 1024 * 1024);
}

/**
 * Opens a tap inside `ns`, brings it up, and opens a packet capture on the
 * namespace's interfaces, all from inside the namespace.
 * @returns the tap and the capture
 */
export function openUpTap(ns: NetNs): readonly [Tap, Capture] {
  return ns.enter(() => {
    const tap = Tap.open(NET_HDR_SIZE);
    const ctl = new NetdevControl();
    try {
      ctl.up(tap.name);
    } finally {
      ctl.close();
    }
    return [tap, new Capture()] as const;
  });
}
