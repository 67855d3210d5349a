/*T:650 A bench for the virtio-mmio transport without KVM: real guest
 * memory, a real event loop, a real shared register image, and a real
 * device behind it (virtio-rng unless a test brings another). The test
 * plays the guest's driver by writing registers in the order Linux does,
 * and TestDriver lays out the rings.
 *
 * Some transport rules can only be reached through a device that does a
 * particular thing on cue: refuse a feature set, fail with a known reason,
 * change its config. So the real device sits inside a Recorder, which
 * passes every call through to it and counts them, and can refuse features,
 * carry a config space of its own, and watch each chain the device pops.
 * The queues, rings and buffers stay the real ones. :*/

import { GuestMemory } from "../../../lib/memory.ts";
import { EventLoop } from "../../../lib/eventloop.ts";
import { bit, VIRTIO_F, VIRTIO_STATUS, type VirtioContext, type VirtioDevice } from "../../../lib/virtio/device.ts";
import { MmioTransport } from "../../../lib/virtio/mmio/transport.ts";
import { MMIO_REG, MMIO_WINDOW } from "../../../lib/virtio/mmio/regs.ts";
import type { Chain, Virtqueue } from "../../../lib/virtio/queue.ts";
import { RngDevice } from "../../../lib/virtio/rng.ts";
import type { TestDriver } from "../driver.ts";

/** How a {@link Recorder} departs from the device it wraps. */
export interface RecorderOptions {
  /** Decides FEATURES_OK instead of the device. */
  accept?: (features: bigint) => boolean;
  /** A config space to show instead of the device's (the Recorder then takes config writes itself). */
  config?: Uint8Array;
  /** Sees every chain the device pops, on any queue. */
  onPop?: (queue: number, chain: Chain) => void;
}

/** A real device, with every call the transport makes counted. */
export class Recorder implements VirtioDevice {
  /** The wrapped device. */
  readonly inner: VirtioDevice;
  /** The wrapped device's name. */
  readonly name: string;
  /** The wrapped device's id. */
  readonly deviceId: number;
  /** The wrapped device's features. */
  readonly features: bigint;
  /** The wrapped device's queue sizes. */
  readonly queueSizes: readonly number[];
  /** The config space the transport shows. */
  readonly config: Uint8Array;
  /** activate() calls. */
  activations = 0;
  /** reset() calls. */
  resets = 0;
  /** Queues notified, in order. */
  readonly notifies: number[] = [];
  /** Config writes that reached the device. */
  readonly configWrites: { offset: number; bytes: number[] }[] = [];
  /** Features offered to acceptFeatures, in order. */
  readonly asked: bigint[] = [];
  /** The context of the latest activation (kept after reset, to test stale use). */
  ctx: VirtioContext | undefined;
  /** The queues of the latest activation. */
  queues: ReadonlyArray<Virtqueue | undefined> = [];
  readonly #options: RecorderOptions;

  /**
   * @param inner the real device
   * @param options what to do differently
   */
  constructor(inner: VirtioDevice, options: RecorderOptions = {}) {
    this.inner = inner;
    this.name = inner.name;
    this.deviceId = inner.deviceId;
    this.features = inner.features;
    this.queueSizes = inner.queueSizes;
    this.config = options.config ?? inner.config;
    this.#options = options;
  }

  /** Counts, then passes on (config writes go to the inner device only if it owns the config shown). */
  writeConfig(offset: number, bytes: Uint8Array): void {
    this.configWrites.push({ offset, bytes: [...bytes] });
    if (this.#options.config === undefined) this.inner.writeConfig?.(offset, bytes);
  }

  /** The option's answer, else the device's, else yes. */
  acceptFeatures(features: bigint): boolean {
    this.asked.push(features);
    const accept = this.#options.accept;
    if (accept !== undefined) return accept(features);
    return this.inner.acceptFeatures?.(features) ?? true;
  }

  /** Counts, wraps each queue's pop() if asked, then passes on. */
  activate(ctx: VirtioContext, queues: ReadonlyArray<Virtqueue | undefined>): void {
    this.activations++;
    this.ctx = ctx;
    this.queues = queues;
    const onPop = this.#options.onPop;
    if (onPop !== undefined) {
      queues.forEach((vq, index) => {
        if (vq === undefined) return;
        const pop = vq.pop.bind(vq);
        vq.pop = () => {
          const chain = pop();
          if (chain !== undefined) onPop(index, chain);
          return chain;
        };
      });
    }
    this.inner.activate(ctx, queues);
  }

  /** Counts, then passes on. */
  notify(queue: number): void {
    this.notifies.push(queue);
    this.inner.notify(queue);
  }

  /** Counts, then passes on. */
  reset(): void {
    this.resets++;
    this.inner.reset();
  }

  /** Passes on. */
  close(): void {
    this.inner.close();
  }
}

/** The features a polite driver accepts: VERSION_1 and both ring features. */
export const DRIVER_FEATURES: bigint = bit(VIRTIO_F.VERSION_1) | bit(VIRTIO_F.EVENT_IDX) |
  bit(VIRTIO_F.INDIRECT_DESC);

/** Options for {@link MmioRig}. */
export interface MmioRigOptions {
  /** Guest RAM in bytes (default 1 MiB). */
  ram?: number;
  /** Use this guest RAM and loop instead (the caller closes them). */
  shared?: { mem: GuestMemory; loop: EventLoop };
  /** Recorder options (the wrapped device is a fresh RngDevice). */
  recorder?: RecorderOptions;
  /** Also called for each interrupt raised, after it is counted (e.g. a real irqfd write). */
  interrupt?: () => void;
}

/** One device behind a real transport, played from the driver's side. */
export class MmioRig {
  /** Guest RAM. */
  readonly mem: GuestMemory;
  /** The main loop (not running: rng needs none). */
  readonly loop: EventLoop;
  /** The shared register image. */
  readonly image: SharedArrayBuffer = new SharedArrayBuffer(MMIO_WINDOW);
  /** The device, recorded. */
  readonly device: Recorder;
  /** The transport under test. */
  readonly transport: MmioTransport;
  /** Lines logged, with whether they were marked "always" (shown without --verbose). */
  readonly logs: { line: string; always: boolean }[] = [];
  /** Interrupts raised. */
  interrupts = 0;
  readonly #owned: boolean;

  /** @param options RAM size and device behaviour */
  constructor(options: MmioRigOptions = {}) {
    this.#owned = options.shared === undefined;
    this.mem = options.shared?.mem ?? GuestMemory.create(options.ram ?? 1024 * 1024);
    this.loop = options.shared?.loop ?? new EventLoop();
    this.device = new Recorder(new RngDevice(), options.recorder);
    this.transport = new MmioTransport(this.device, {
      memory: this.mem,
      loop: this.loop,
      image: this.image,
      interrupt: () => {
        this.interrupts++;
        options.interrupt?.();
      },
      log: (line, always) => this.logs.push({ line, always: always ?? false }),
    });
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
    const S = VIRTIO_STATUS;
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
   * The whole bring-up on queue 0, ending with DRIVER_OK.
   * @returns the status read back
   */
  bringUp(driver: TestDriver, features: bigint = DRIVER_FEATURES): number {
    const S = VIRTIO_STATUS;
    this.negotiate(features);
    this.setupQueue(0, driver);
    this.w(MMIO_REG.STATUS, S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK | S.DRIVER_OK);
    return this.status;
  }

  /** Resets the device and frees everything. */
  close(): void {
    this.transport.reset();
    this.device.close();
    if (!this.#owned) return;
    this.loop.close();
    this.mem.close();
  }
}
