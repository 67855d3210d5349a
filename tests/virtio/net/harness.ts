/*T:552 A bench for the network device without a guest: guest RAM, two
 * TestDriver queues (receive at one place, transmit at another), and what
 * a transport would hand the device at DRIVER_OK, built here by hand: one
 * session per queue with a real doorbell eventfd and a real irqfd of its
 * own (one line per queue, as MSI-X would give), the interrupt status word
 * in a SharedArrayBuffer, and a context whose fail() records the reason
 * and resets the device, exactly as DEVICE_NEEDS_RESET does. The event
 * loop is real and runs in the background from the start (LiveLoop,
 * T:601): a test rings a doorbell by signalling its eventfd, waits for the
 * loop to serve it (settle), and sees interrupts as KVM would, by reading
 * the irqfd's counter and the status word.
 *
 * The other half of the bench is on the wire: a packet socket in the
 * test's namespace sees every frame the device writes to the tap as the
 * host kernel receives it, header stripped, so a test can check that what
 * the guest posted is what the host got. :*/

import { GuestMemory } from "../../../lib/memory.ts";
import type { EventLoop } from "../../../lib/eventloop.ts";
import {
  bufferAddress,
  close,
  drainEventfd,
  eventfd,
  POLL,
  pollOne,
  read,
  signalEventfd,
  socket,
} from "../../../lib/sys/calls.ts";
import { IoVecs } from "../../../lib/sys/iovec.ts";
import { NetdevControl, Tap } from "../../../lib/sys/tap.ts";
import { NetNs } from "./netns.ts";
import { bit, type DeviceContext, type QueueSession, VIRTIO_F, type VirtioDevice } from "../../../lib/virtio/device.ts";
import { NET_HDR_SIZE } from "../../../lib/virtio/net/hdr.ts";
import { TestDriver } from "../driver.ts";
import { LiveLoop, takeCount } from "../live_loop.ts";

/** Where the bench puts the two queues. */
export const RX_BASE = 0x1000;
/** ... the transmit queue (1 MiB further, past the receive queue's data area). */
export const TX_BASE = 0x110000;

/** A device's two queues on real eventfds, a running loop, and a context that plays the transport. */
export class NetBench {
  /** Guest RAM. */
  readonly mem: GuestMemory;
  /** The loop, running from construction until close(). */
  readonly live: LiveLoop;
  /** Each queue's doorbell. */
  readonly doorbells: readonly number[] = [eventfd(), eventfd()];
  /** Each queue's irqfd. */
  readonly irqfds: readonly number[] = [eventfd(), eventfd()];
  /** The interrupt status word (word 0), shared by both lines. */
  readonly status: SharedArrayBuffer = new SharedArrayBuffer(4);
  /** fail() reasons since the last activate(), in order. */
  failures: string[] = [];
  /** log() lines since the last activate(). */
  logs: string[] = [];
  #device: VirtioDevice | undefined;
  #generation = 0;
  #active = false;

  /**
   * @param mem guest RAM (the caller closes it)
   * @param loop the loop to run (default a new one); closed by close()
   */
  constructor(mem: GuestMemory, loop?: EventLoop) {
    this.mem = mem;
    this.live = new LiveLoop(loop);
  }

  /** The running loop. */
  get loop(): EventLoop {
    return this.live.loop;
  }

  /**
   * DRIVER_OK: a fresh context with `features` (VERSION_1 always) and a session per queue; a throw fails
   * the device, as in the transport. Doorbells and interrupts are cleared first.
   */
  activate(device: VirtioDevice, features: bigint, rx: TestDriver, tx: TestDriver): void {
    for (const fd of [...this.doorbells, ...this.irqfds]) drainEventfd(fd);
    Atomics.store(new Int32Array(this.status), 0, 0);
    this.failures = [];
    this.logs = [];
    this.#device = device;
    const generation = ++this.#generation;
    const live = () => generation === this.#generation;
    this.#active = true;
    const ctx: DeviceContext = {
      memory: this.mem,
      loop: this.loop,
      features: features | bit(VIRTIO_F.VERSION_1),
      fail: (reason) => {
        if (!live()) return;
        this.#generation++;
        this.#active = false;
        this.failures.push(reason);
        device.reset();
      },
      configChanged: () => {},
      log: (line) => {
        if (live()) this.logs.push(line);
      },
    };
    const eventIdx = (features & bit(VIRTIO_F.EVENT_IDX)) !== 0n;
    const session = (index: number, d: TestDriver, name: string): QueueSession => ({
      index,
      name,
      layout: d.layout,
      features: { eventIdx, indirect: true },
      start: d.start,
      doorbell: this.doorbells[index]!,
      interrupt: { irqfd: this.irqfds[index]!, status: this.status, word: 0 },
    });
    try {
      device.activate(ctx, [session(0, rx, "net rx"), session(1, tx, "net tx")]);
    } catch (e) {
      ctx.fail(e instanceof Error ? e.message : String(e));
    }
  }

  /** Signals queue `q`'s doorbell, as KVM does for the guest's notify (served on the loop's next turn). */
  ring(q: number): void {
    signalEventfd(this.doorbells[q]!, "doorbell");
  }

  /** Rings queue `q`'s doorbell and waits until the loop has served it. */
  async kick(q: number): Promise<void> {
    this.ring(q);
    await this.settle();
  }

  /**
   * Waits until every doorbell rung so far was served (while the device is live to watch them) and, for a
   * device with a thread of its own (`busy`), until that thread has answered everything and its messages
   * have arrived.
   */
  settle(): Promise<void> {
    const busy = () => (this.#device as { busy?: boolean } | undefined)?.busy === true;
    return this.live.settle(() =>
      this.#active && (this.doorbells.some((fd) => pollOne(fd, POLL.IN, 0) !== 0) || busy())
    );
  }

  /** Waits (with the loop running, bounded) until `done()` holds. */
  until(done: () => boolean, what: string, limitMs = 5000): Promise<void> {
    return this.live.until(done, what, limitMs);
  }

  /** Interrupts raised on queue `q` since the last look: its irqfd's counter, read without blocking. */
  interrupts(q: number): number {
    return takeCount(this.irqfds[q]!);
  }

  /** The interrupt status word, taken and cleared as the guest's handler acknowledges it. */
  takeStatus(): number {
    return Atomics.exchange(new Int32Array(this.status), 0, 0);
  }

  /** Resets the device, stops the loop and releases the eventfds (rethrowing an error the loop ended with). */
  async close(): Promise<void> {
    this.#generation++;
    this.#active = false;
    this.#device?.reset();
    try {
      await this.live.close();
    } finally {
      for (const fd of [...this.doorbells, ...this.irqfds]) close(fd);
    }
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

/**
 * Runs `body` inside a fresh namespace with guest RAM and a running bench, all torn down after.
 * @param loop the loop for the bench (default a new one)
 */
export async function bench(
  body: (ns: NetNs, b: NetBench) => Promise<void> | void,
  loop?: EventLoop,
): Promise<void> {
  await NetNs.use(async (ns) => {
    const mem = guestRam();
    const b = new NetBench(mem, loop);
    try {
      await body(ns, b);
    } finally {
      try {
        await b.close();
      } finally {
        mem.close();
      }
    }
  });
}
