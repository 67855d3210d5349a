/*T:600 A bench for the console without KVM: real guest memory, the real
 * virtio-mmio transport (so a broken rule ends as DEVICE_NEEDS_RESET, just
 * as in a VM), a real event loop running from the start (LiveLoop, T:601),
 * and a real socket pair standing in for stdout, whose far end the test
 * reads. Two TestDrivers play the Linux driver's receiveq and transmitq;
 * the rig brings the device up by writing the transport's registers in spec
 * order, and the transport turns the queues into sessions around the rig's
 * own eventfds: one doorbell per queue and one irqfd, with the interrupt
 * status word in the shared register image. A test rings a doorbell by
 * signalling its eventfd, as KVM would on the guest's QueueNotify write,
 * waits for the loop to serve it, and sees interrupts as the guest would:
 * the irqfd's counter and the InterruptStatus bits. :*/

import { GuestMemory } from "../../../lib/memory.ts";
import type { EventLoop } from "../../../lib/eventloop.ts";
import {
  close,
  eventfd,
  POLL,
  pollOne,
  read,
  setNonBlocking,
  signalEventfd,
  socketpair,
  write,
} from "../../../lib/sys/calls.ts";
import { bit, VIRTIO_F, VIRTIO_STATUS } from "../../../lib/virtio/device.ts";
import { MmioTransport } from "../../../lib/virtio/mmio/transport.ts";
import { MMIO_REG, MMIO_WINDOW } from "../../../lib/virtio/mmio/regs.ts";
import { CONSOLE_RX, CONSOLE_TX, ConsoleDevice } from "../../../lib/virtio/console/device.ts";
import { TestDriver } from "../driver.ts";
import { LiveLoop, takeCount } from "../live_loop.ts";

const MiB = 1024 * 1024;
const AF_UNIX = 1;
const SOCK_STREAM = 1;

/** How to build a {@link ConsoleRig}. */
export interface RigOptions {
  /** Queue size the driver picks (default 16). */
  size?: number;
  /** Negotiate EVENT_IDX (default false). */
  eventIdx?: boolean;
  /** Extra features the driver accepts (VERSION_1 and INDIRECT_DESC always). */
  features?: bigint;
  /** Guest RAM in MiB (default 2). */
  ramMiB?: number;
  /** A terminal for the device to take its window size from (default none). */
  sizeFd?: number;
}

/** Where the rig puts things: rings, then each driver's buffers, then free RAM for raw tests. */
export const RIG = {
  RX_RING: 0x1000,
  TX_RING: 0x3000,
  RX_DATA: 0x8000,
  TX_DATA: 0x40000,
  FREE: 0x80000,
  DATA_SIZE: 0x38000,
} as const;

/** A console device behind a real transport, with a socket for stdout. */
export class ConsoleRig {
  /** Guest RAM. */
  readonly mem: GuestMemory;
  /** The main loop, running from construction until close(). */
  readonly live: LiveLoop = new LiveLoop();
  /** The device under test. */
  readonly device: ConsoleDevice;
  /** Its transport. */
  readonly transport: MmioTransport;
  /** The receiveq's driver. */
  readonly rx: TestDriver;
  /** The transmitq's driver. */
  readonly tx: TestDriver;
  /** The device's output fd (our socket end). */
  readonly outFd: number;
  /** The test's end: reads what the device wrote (-1 once closed). */
  peerFd: number;
  /** Each queue's doorbell eventfd. */
  readonly doorbells: readonly number[] = [eventfd(), eventfd()];
  /** The device's interrupt eventfd. */
  readonly irqfd: number = eventfd();
  /** Lines the transport and device logged. */
  readonly logs: string[] = [];
  readonly #received: number[] = [];
  #interrupts = 0;

  /** @param options queue size, features, RAM */
  constructor(options: RigOptions = {}) {
    const size = options.size ?? 16;
    this.mem = GuestMemory.create((options.ramMiB ?? 2) * MiB);
    [this.outFd, this.peerFd] = socketpair(AF_UNIX, SOCK_STREAM);
    setNonBlocking(this.peerFd);
    this.device = new ConsoleDevice({ outputFd: this.outFd, sizeFd: options.sizeFd });
    this.transport = new MmioTransport(this.device, {
      memory: this.mem,
      loop: this.live.loop,
      image: new SharedArrayBuffer(MMIO_WINDOW),
      doorbells: this.doorbells,
      irqfd: this.irqfd,
      log: (line) => this.logs.push(line),
    });
    const eventIdx = options.eventIdx ?? false;
    const data = (dataBase: number) => ({ size, eventIdx, dataBase, dataSize: RIG.DATA_SIZE });
    this.rx = new TestDriver(this.mem, { base: RIG.RX_RING, ...data(RIG.RX_DATA) });
    this.tx = new TestDriver(this.mem, { base: RIG.TX_RING, ...data(RIG.TX_DATA) });
    this.#bringUp(
      bit(VIRTIO_F.VERSION_1) | bit(VIRTIO_F.INDIRECT_DESC) | (eventIdx ? bit(VIRTIO_F.EVENT_IDX) : 0n) |
        (options.features ?? 0n),
    );
  }

  #w(reg: number, value: number): void {
    this.transport.write(reg, 4, value);
  }

  #bringUp(features: bigint): void {
    const S = VIRTIO_STATUS;
    const R = MMIO_REG;
    this.#w(R.STATUS, 0);
    this.#w(R.STATUS, S.ACKNOWLEDGE | S.DRIVER);
    this.#w(R.DRIVER_FEATURES_SEL, 0);
    this.#w(R.DRIVER_FEATURES, Number(features & 0xffffffffn));
    this.#w(R.DRIVER_FEATURES_SEL, 1);
    this.#w(R.DRIVER_FEATURES, Number(features >> 32n));
    this.#w(R.STATUS, S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK);
    for (const [q, d] of [[CONSOLE_RX, this.rx], [CONSOLE_TX, this.tx]] as const) {
      this.#w(R.QUEUE_SEL, q);
      this.#w(R.QUEUE_NUM, d.size);
      this.#w(R.QUEUE_DESC_LOW, Number(d.layout.desc));
      this.#w(R.QUEUE_AVAIL_LOW, Number(d.layout.avail));
      this.#w(R.QUEUE_USED_LOW, Number(d.layout.used));
      this.#w(R.QUEUE_READY, 1);
    }
    this.#w(R.STATUS, S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK | S.DRIVER_OK);
    if (!(this.transport.status & S.DRIVER_OK)) throw new Error(`bring-up failed: ${this.logs.join("; ")}`);
  }

  /** The running loop. */
  get loop(): EventLoop {
    return this.live.loop;
  }

  /** True once the transport marked the device DEVICE_NEEDS_RESET. */
  get failed(): boolean {
    return (this.transport.status & VIRTIO_STATUS.NEEDS_RESET) !== 0;
  }

  /** Interrupts raised so far: the irqfd's counter, read without blocking and added up. */
  get interrupts(): number {
    this.#interrupts += takeCount(this.irqfd);
    return this.#interrupts;
  }

  /** The InterruptStatus register, as the guest's handler reads it. */
  get interruptStatus(): number {
    return this.transport.read(MMIO_REG.INTERRUPT_STATUS, 4);
  }

  /** Signals queue `q`'s doorbell eventfd, as KVM does for a QueueNotify write (served on the loop's next turn). */
  ring(q: number): void {
    signalEventfd(this.doorbells[q]!, "doorbell");
  }

  /**
   * Rings queue `q`'s doorbell and waits until the loop has served it.
   * @param timers also wait for turns put off on a zero timer (see LiveLoop.settle)
   */
  async kick(q: number, timers = true): Promise<void> {
    this.ring(q);
    await this.settle(timers);
  }

  /** Waits until the loop has served every doorbell rung so far (while the device is live to watch them). */
  settle(timers = true): Promise<void> {
    const S = VIRTIO_STATUS;
    return this.live.settle(
      () =>
        (this.transport.status & (S.DRIVER_OK | S.NEEDS_RESET)) === S.DRIVER_OK &&
        this.doorbells.some((fd) => pollOne(fd, POLL.IN, 0) !== 0),
      timers,
    );
  }

  /** Posts `bytes` as one transmit chain split into buffers of the given sizes (default one buffer). */
  send(bytes: Uint8Array, split: number[] = [bytes.length]): number {
    const parts: Uint8Array[] = [];
    let at = 0;
    for (const n of split) {
      parts.push(bytes.subarray(at, at + n));
      at += n;
    }
    return this.tx.add(parts, []);
  }

  /** Everything read from the socket so far, plus what is waiting in it now. */
  output(): Uint8Array {
    const buf = new Uint8Array(65536);
    for (let n = read(this.peerFd, buf); n > 0; n = read(this.peerFd, buf)) {
      for (let i = 0; i < n; i++) this.#received.push(buf[i]!);
    }
    return Uint8Array.from(this.#received);
  }

  /**
   * Fills the socket with '.' until poll says it takes no more, so the device's output is blocked. Each
   * write is one page, which a socket that polls writable takes without sleeping.
   * @returns how many filler bytes were written (the test reads them back before the device's)
   */
  fillOutput(): number {
    const junk = new Uint8Array(4096).fill(0x2e);
    let total = 0;
    while (pollOne(this.outFd, POLL.OUT, 0) & POLL.OUT) total += write(this.outFd, junk);
    return total;
  }

  /**
   * Waits, with the loop running, until `done()` is true.
   * @param done checked every millisecond or so
   * @param ms give up (throw) after this long
   */
  runUntil(done: () => boolean, ms = 5000): Promise<void> {
    return this.live.until(done, "the rig's condition", ms);
  }

  /** Closes the test's end, as a reader that went away. */
  closePeer(): void {
    if (this.peerFd >= 0) close(this.peerFd);
    this.peerFd = -1;
  }

  /** Resets the device, stops the loop and releases everything (rethrowing an error the loop ended with). */
  async close(): Promise<void> {
    this.transport.reset();
    this.device.close();
    try {
      await this.live.close();
    } finally {
      for (const fd of [...this.doorbells, this.irqfd, this.outFd]) close(fd);
      this.closePeer();
      this.mem.close();
    }
  }
}
