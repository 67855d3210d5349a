/*T:650 A bench for the virtio-mmio transport without KVM: real guest
 * memory, a real event loop running in the background, a real shared
 * register image, real eventfds for the irqfd and for each queue's
 * doorbell, and a real device behind it (virtio-rng). The test plays the
 * guest's driver by writing registers in the order Linux does, and
 * TestDriver lays out the rings.
 *
 * Without KVM nobody turns a QueueNotify write into a doorbell signal, so
 * the write reaches the transport, which signals the doorbell eventfd as
 * KVM's ioeventfd would; the device, watching it on the loop, serves the
 * ring. That happens on the loop's next turn, not inside the write, so a
 * test waits with `await rig.settle()`: LiveLoop (T:601) sends a probe round the
 * loop, which answers it only after every descriptor that was ready before
 * it, the doorbells included, has been served, and the rig goes on until no
 * live queue's doorbell is still pending. Interrupts are what a guest would
 * see of them: the irqfd's counter (read without blocking) and the bits of
 * InterruptStatus.
 *
 * Some transport rules can only be reached through a device that does a
 * particular thing on cue: refuse a feature set, carry a config space of
 * its own. So the real device sits inside a Recorder, which passes every
 * call through to it and counts them. The queues, rings, buffers, doorbells
 * and interrupts stay the real ones. :*/

import { GuestMemory } from "../../../lib/memory.ts";
import type { EventLoop } from "../../../lib/eventloop.ts";
import { close, drainEventfd, eventfd, POLL, pollOne } from "../../../lib/sys/calls.ts";
import { EPOLL } from "../../../lib/sys/epoll.ts";
import { VIRTIO_STATUS as S } from "../../../lib/virtio/device.ts";
import { MmioTransport } from "../../../lib/virtio/mmio/transport.ts";
import { MMIO_REG, MMIO_WINDOW } from "../../../lib/virtio/mmio/regs.ts";
import { type ForwardedWrite, MailboxServer } from "../../../lib/virtio/mmio/proxy.ts";
import { RngDevice } from "../../../lib/virtio/rng.ts";
import { DRIVER_FEATURES, Recorder, type RecorderOptions } from "./recorder.ts";
import type { TestDriver } from "../driver.ts";
import { LiveLoop, takeCount } from "../live_loop.ts";

export { DRIVER_FEATURES, Recorder, type RecorderOptions } from "./recorder.ts";

/** Options for {@link MmioRig}. */
export interface MmioRigOptions {
  /** Guest RAM in bytes (default 1 MiB). */
  ram?: number;
  /** Recorder options (the wrapped device is a fresh RngDevice). */
  recorder?: RecorderOptions;
  /** An fd to hand the transport as its irqfd instead of the rig's own eventfd (the caller closes it). */
  irqfd?: number;
}

/** One device behind a real transport, played from the driver's side. */
export class MmioRig implements AsyncDisposable {
  /** Guest RAM. */
  readonly mem: GuestMemory;
  /** The main loop, running in the background from construction until close(). */
  readonly live: LiveLoop = new LiveLoop();
  /** The loop itself (handed to the transport). */
  readonly loop: EventLoop = this.live.loop;
  /** The shared register image. */
  readonly image: SharedArrayBuffer = new SharedArrayBuffer(MMIO_WINDOW);
  /** The device, recorded. */
  readonly device: Recorder;
  /** The irqfd the transport and the device write. */
  readonly irqfd: number;
  /** Each queue's doorbell eventfd. */
  readonly doorbells: readonly number[];
  /** The transport under test. */
  readonly transport: MmioTransport;
  /** Lines logged, with whether they were marked "always" (shown without --verbose). */
  readonly logs: { line: string; always: boolean }[] = [];
  readonly #fds: number[] = [];
  readonly #ownIrqfd: boolean;
  #interrupts = 0;
  #closed = false;

  /** @param options RAM size, device behaviour, irqfd */
  constructor(options: MmioRigOptions = {}) {
    this.mem = GuestMemory.create(options.ram ?? 1024 * 1024);
    this.device = new Recorder(new RngDevice(), options.recorder);
    this.#ownIrqfd = options.irqfd === undefined;
    this.irqfd = options.irqfd ?? this.#eventfd();
    this.doorbells = this.device.queueSizes.map(() => this.#eventfd());
    this.transport = new MmioTransport(this.device, {
      memory: this.mem,
      loop: this.loop,
      image: this.image,
      doorbells: this.doorbells,
      irqfd: this.irqfd,
      log: (line, always) => this.logs.push({ line, always: always ?? false }),
    });
  }

  #eventfd(): number {
    const fd = eventfd();
    this.#fds.push(fd);
    return fd;
  }

  /** Interrupts raised so far: the rig's irqfd counter, read without blocking and added up (0 with a foreign irqfd). */
  get interrupts(): number {
    if (this.#ownIrqfd) this.#interrupts += takeCount(this.irqfd);
    return this.#interrupts;
  }

  /** A 32-bit driver write. */
  w(reg: number, value: number): void {
    this.transport.write(reg, 4, value);
  }

  /** A 32-bit driver read. */
  r(reg: number): number {
    return this.transport.read(reg, 4);
  }

  /** The status register. */
  get status(): number {
    return this.r(MMIO_REG.STATUS);
  }

  /** Lines logged so far, one string. */
  logText(): string {
    return this.logs.map((l) => l.line).join("\n");
  }

  /** Writes QueueNotify for `queue`, then waits until the loop has served the doorbell. */
  async kick(queue = 0): Promise<void> {
    this.w(MMIO_REG.QUEUE_NOTIFY, queue);
    await this.settle();
  }

  /**
   * Waits until the loop has served every doorbell rung so far (and a zero-timer turn after it).
   * @throws the loop's error if it ended, or an Error if it did not answer within `timeoutMs`
   */
  async settle(timeoutMs = 5000): Promise<void> {
    const unserved = () =>
      this.device.live &&
      this.device.sessions.some((s) => s !== undefined && pollOne(s.doorbell, POLL.IN, 0) !== 0);
    await this.live.settle(unserved, true, timeoutMs);
  }

  /**
   * Waits (bounded) for the loop to end with an error, as loop.fail() ends it, and returns that error.
   * @throws Error if the loop is still running after `timeoutMs` or ended without an error
   */
  failure(timeoutMs = 5000): Promise<unknown> {
    return this.live.failure(timeoutMs);
  }

  /**
   * Serves forwarded register writes from a vCPU's mailbox, as MmioDevices does: the eventfd wakes the loop,
   * then the posted write is applied (by default: window 0 is this transport, other windows are dropped).
   */
  serveMailbox(mailbox: SharedArrayBuffer, fd: number, apply?: (w: ForwardedWrite) => void): void {
    const server = new MailboxServer(mailbox);
    const to = apply ?? ((w: ForwardedWrite) => w.device === 0 && this.transport.write(w.offset, w.size, w.value));
    this.loop.add(fd, EPOLL.IN, () => {
      drainEventfd(fd);
      server.serve(to);
    });
  }

  /** Writes both 32-bit pages of DriverFeatures. */
  writeFeatures(features: bigint): void {
    for (const sel of [0, 1]) {
      this.w(MMIO_REG.DRIVER_FEATURES_SEL, sel);
      this.w(MMIO_REG.DRIVER_FEATURES, Number((features >> BigInt(32 * sel)) & 0xffffffffn));
    }
  }

  /**
   * Reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK.
   * @returns the status read back
   */
  negotiate(features: bigint = DRIVER_FEATURES): number {
    this.w(MMIO_REG.STATUS, 0);
    this.w(MMIO_REG.STATUS, S.ACKNOWLEDGE);
    this.w(MMIO_REG.STATUS, S.ACKNOWLEDGE | S.DRIVER);
    this.writeFeatures(features);
    this.w(MMIO_REG.STATUS, S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK);
    return this.status;
  }

  /**
   * Programs queue `index` with `driver`'s layout and writes QueueReady 1.
   * @returns QueueReady read back
   */
  setupQueue(index: number, driver: TestDriver): number {
    const R = MMIO_REG;
    const { desc, avail, used } = driver.layout;
    this.w(R.QUEUE_SEL, index);
    this.w(R.QUEUE_NUM, driver.size);
    for (
      const [low, addr] of [[R.QUEUE_DESC_LOW, desc], [R.QUEUE_AVAIL_LOW, avail], [R.QUEUE_USED_LOW, used]] as const
    ) {
      this.w(low, Number(addr & 0xffffffffn));
      this.w(low + 4, Number(addr >> 32n));
    }
    this.w(R.QUEUE_READY, 1);
    return this.r(R.QUEUE_READY);
  }

  /**
   * The whole bring-up on queue 0, ending with DRIVER_OK (the device serves what is posted at once).
   * @returns the status read back
   */
  bringUp(driver: TestDriver, features: bigint = DRIVER_FEATURES): number {
    this.negotiate(features);
    this.setupQueue(0, driver);
    this.w(MMIO_REG.STATUS, S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK | S.DRIVER_OK);
    return this.status;
  }

  /**
   * Resets the device, stops the loop and frees everything. Safe twice.
   * @throws the loop's error, if it ended with one nobody asked for (failure(), settle())
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    let thrown: { error: unknown } | undefined;
    try {
      this.transport.reset();
      this.device.close();
    } catch (error) {
      thrown = { error };
    }
    try {
      await this.live.close();
    } finally {
      for (const fd of this.#fds) close(fd);
      this.mem.close();
    }
    if (thrown !== undefined) throw thrown.error;
  }

  /** close(), for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
