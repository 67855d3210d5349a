/*V:200 The virtio-mmio transport (virtio 1.x, register layout version 2),
 * the modern heir of lguest's device page: a 4 KiB window of registers and
 * an IRQ per device, which the driver finds in the ACPI DSDT (or, with
 * --no-acpi, on the kernel command line). Register accesses arrive on the
 * vCPU thread but the device lives on the main thread, so the transport
 * keeps its state here and after every change publishes what each register
 * would read into a shared "register image". The vCPU thread answers reads
 * from that image and acknowledges interrupts in it atomically; only writes
 * that change state cross to the main thread (proxy.ts). Doorbells
 * (QueueNotify) never reach either thread: KVM turns them into eventfd
 * signals (ioeventfd). :*/

import type { GuestMemory } from "../../memory.ts";
import type { EventLoop } from "../../eventloop.ts";
import { signalEventfd } from "../../sys/calls.ts";
import {
  type DeviceContext,
  INTERRUPT_CAUSE,
  type InterruptLine,
  type QueueSession,
  raiseInterrupt,
  VIRTIO_STATUS,
  type VirtioDevice,
} from "../device.ts";
import { type QueueLayout, Virtqueue } from "../queue.ts";
import { featureProblem, nextStatus, ringFeatures, TRANSPORT_FEATURES } from "../status.ts";
import { MMIO_REG, MMIO_WINDOW, RegisterImage } from "./regs.ts";

export { MMIO_INT, MMIO_MAGIC, MMIO_REG, MMIO_VENDOR, MMIO_VERSION, MMIO_WINDOW } from "./regs.ts";

const ISR = MMIO_REG.INTERRUPT_STATUS >> 2;

/** A queue's registers: all the transport keeps of a queue (the device keeps the rings' state). */
interface QueueRegs {
  num: number;
  ready: boolean;
  desc: bigint;
  avail: bigint;
  used: bigint;
}

/** What the transport needs from the machine. */
export interface MmioTransportOptions {
  /** Guest RAM. */
  memory: GuestMemory;
  /** The main event loop (handed to the device). */
  loop: EventLoop;
  /** The shared register image (MMIO_WINDOW bytes). */
  image: SharedArrayBuffer;
  /** One doorbell eventfd per queue (KVM signals it on a QueueNotify write: an ioeventfd). */
  doorbells: readonly number[];
  /** The device's interrupt eventfd (an irqfd). */
  irqfd: number;
  /** Reports problems and, with --verbose, activity. */
  log: (line: string, always?: boolean) => void;
}

/** One device behind one virtio-mmio window. */
export class MmioTransport {
  readonly device: VirtioDevice;
  readonly #opts: MmioTransportOptions;
  readonly #image: RegisterImage;
  readonly #offered: bigint;
  #status = 0;
  #deviceFeaturesSel = 0;
  #driverFeaturesSel = 0;
  #driverFeatures = 0n;
  #queueSel = 0;
  #queues: QueueRegs[] = [];
  #generation = 0;
  #active = false;
  /** Counts activations: a context from an earlier one no longer reaches the transport. */
  #epoch = 0;
  readonly #line: InterruptLine;

  /**
   * @param device the device model
   * @param options memory, loop, register image, doorbells, irqfd, logger
   */
  constructor(device: VirtioDevice, options: MmioTransportOptions) {
    if (options.image.byteLength < MMIO_WINDOW) throw new RangeError("register image smaller than a window");
    if (device.config.length > MMIO_WINDOW - MMIO_REG.CONFIG) throw new RangeError(`${device.name}: config too big`);
    if (options.doorbells.length !== device.queueSizes.length) {
      throw new RangeError(
        `${device.name}: ${options.doorbells.length} doorbells for ${device.queueSizes.length} queues`,
      );
    }
    this.#line = { irqfd: options.irqfd, status: options.image, word: ISR };
    this.device = device;
    this.#opts = options;
    this.#image = new RegisterImage(options.image);
    this.#offered = device.features | TRANSPORT_FEATURES;
    this.#resetState();
  }

  /** The device status byte. */
  get status(): number {
    return this.#status;
  }

  /** The features the driver accepted (valid after FEATURES_OK). */
  get features(): bigint {
    return this.#driverFeatures;
  }

  #resetState(): void {
    this.#status = 0;
    this.#deviceFeaturesSel = 0;
    this.#driverFeaturesSel = 0;
    this.#driverFeatures = 0n;
    this.#queueSel = 0;
    this.#queues = this.device.queueSizes.map(() => ({ num: 0, ready: false, desc: 0n, avail: 0n, used: 0n }));
    this.#active = false;
    Atomics.store(this.#image.words, ISR, 0);
    this.#publishConfig();
    this.#publish();
  }

  /** Writes what every register reads now into the shared image. */
  #publish(): void {
    const sel = this.#deviceFeaturesSel;
    const q = this.#queues[this.#queueSel];
    this.#image.publish({
      deviceId: this.device.deviceId,
      deviceFeatures: sel < 2 ? Number((this.#offered >> BigInt(32 * sel)) & 0xffffffffn) : 0,
      queueNumMax: q ? this.device.queueSizes[this.#queueSel]! : 0,
      queueNum: q?.num ?? 0,
      queueReady: q?.ready ? 1 : 0,
      status: this.#status,
      generation: this.#generation,
    });
  }

  #publishConfig(): void {
    this.#image.setConfig(this.device.config);
  }

  #stepGeneration(): void {
    this.#generation = (this.#generation + 1) | 0;
    Atomics.store(this.#image.words, MMIO_REG.CONFIG_GENERATION >> 2, this.#generation);
  }

  /** A register read, answered as the vCPU thread's MmioProxy answers it from the image. */
  read(offset: number, size: number): number {
    return this.#image.read(offset, size);
  }

  /*V:210 Register writes, in the order a driver makes them: reset (status
   * 0), ACKNOWLEDGE and DRIVER, feature negotiation in two 32-bit halves,
   * FEATURES_OK (which we refuse, by not keeping the bit, if the driver
   * asked for something we do not offer or left out VERSION_1), the queues
   * one by one (select, size, three ring addresses, ready), and finally
   * DRIVER_OK, when the device goes live.
   *
   * The spec lets a driver reach the control registers only with aligned
   * 32-bit accesses; anything else below the config space is ignored (and
   * reads as 0), so a byte written to Status or QueueNotify does nothing. :*/

  /** A driver write forwarded from the vCPU thread. */
  write(offset: number, size: number, value: number): void {
    const R = MMIO_REG;
    const v = value >>> 0;
    if (offset >= R.CONFIG) {
      this.#writeConfig(offset - R.CONFIG, size, value);
      return;
    }
    if (offset & 3 || size !== 4) {
      this.#opts.log(`${this.device.name}: ${size}-byte write at 0x${offset.toString(16)} ignored (32-bit only)`);
      return;
    }
    if (this.#status & VIRTIO_STATUS.NEEDS_RESET && offset !== R.STATUS && offset !== R.INTERRUPT_ACK) return;
    const q = this.#queues[this.#queueSel];
    const queueWritable = q !== undefined && !q.ready && !(this.#status & VIRTIO_STATUS.DRIVER_OK);
    const half = (old: bigint, high: boolean) =>
      high ? (old & 0xffffffffn) | (BigInt(v) << 32n) : (old & ~0xffffffffn) | BigInt(v);
    switch (offset) {
      case R.DEVICE_FEATURES_SEL:
        this.#deviceFeaturesSel = v;
        break;
      case R.DRIVER_FEATURES_SEL:
        this.#driverFeaturesSel = v;
        break;
      case R.DRIVER_FEATURES:
        if (this.#status & VIRTIO_STATUS.FEATURES_OK) break;
        if (this.#driverFeaturesSel < 2) {
          const shift = BigInt(32 * this.#driverFeaturesSel);
          this.#driverFeatures = (this.#driverFeatures & ~(0xffffffffn << shift)) | (BigInt(v) << shift);
        }
        break;
      case R.QUEUE_SEL:
        this.#queueSel = v;
        break;
      case R.QUEUE_NUM:
        if (queueWritable) q.num = v;
        break;
      case R.QUEUE_DESC_LOW:
      case R.QUEUE_DESC_HIGH:
        if (queueWritable) q.desc = half(q.desc, offset === R.QUEUE_DESC_HIGH);
        break;
      case R.QUEUE_AVAIL_LOW:
      case R.QUEUE_AVAIL_HIGH:
        if (queueWritable) q.avail = half(q.avail, offset === R.QUEUE_AVAIL_HIGH);
        break;
      case R.QUEUE_USED_LOW:
      case R.QUEUE_USED_HIGH:
        if (queueWritable) q.used = half(q.used, offset === R.QUEUE_USED_HIGH);
        break;
      case R.QUEUE_READY:
        if (q !== undefined) this.#setQueueReady(this.#queueSel, q, v === 1);
        break;
      case R.QUEUE_NOTIFY:
        this.notify(v);
        break;
      case R.INTERRUPT_ACK:
        Atomics.and(this.#image.words, ISR, ~v);
        break;
      case R.STATUS:
        this.#writeStatus(v & 0xff);
        break;
      default:
        this.#opts.log(`${this.device.name}: write to read-only register 0x${offset.toString(16)} ignored`);
    }
    this.#publish();
  }

  #setQueueReady(index: number, q: QueueRegs, ready: boolean): void {
    if (this.#status & VIRTIO_STATUS.DRIVER_OK) {
      this.#opts.log(`${this.device.name}: QueueReady for queue ${index} after DRIVER_OK ignored`);
      return;
    }
    if (!ready) {
      q.ready = false;
      return;
    }
    if (q.ready || !(this.#status & VIRTIO_STATUS.FEATURES_OK)) return;
    const max = this.device.queueSizes[index]!;
    if (q.num === 0 || q.num > max || (q.num & (q.num - 1)) !== 0) {
      this.#fail(`queue ${index} size ${q.num} is not a power of two from 1 to ${max}`);
      return;
    }
    try {
      // Checked here, so that a ring outside RAM fails at QueueReady; the device builds its own view later.
      new Virtqueue(
        this.#opts.memory,
        this.#layout(q),
        ringFeatures(this.#driverFeatures),
        `${this.device.name} queue ${index}`,
      );
      q.ready = true;
    } catch (e) {
      this.#fail(e instanceof Error ? e.message : String(e));
    }
  }

  #writeStatus(v: number): void {
    if (v === 0) {
      this.reset();
      return;
    }
    const { next, rising } = nextStatus(this.#status, v, () => this.#featuresAcceptable());
    if (v & ~next & 0xff & ~VIRTIO_STATUS.NEEDS_RESET) {
      this.#opts.log(`${this.device.name}: status 0x${v.toString(16)} refused, keeping 0x${next.toString(16)}`);
    }
    this.#status = next;
    if (rising & VIRTIO_STATUS.DRIVER_OK && next & VIRTIO_STATUS.DRIVER_OK) this.#activate();
    if (rising & VIRTIO_STATUS.FAILED) this.#stopDevice();
  }

  #featuresAcceptable(): boolean {
    const problem = featureProblem(this.#driverFeatures, this.#offered);
    if (problem === undefined) return this.device.acceptFeatures?.(this.#driverFeatures) ?? true;
    this.#opts.log(`${this.device.name}: ${problem}`, true);
    return false;
  }

  #layout(q: QueueRegs): QueueLayout {
    return { size: q.num, desc: q.desc, avail: q.avail, used: q.used };
  }

  #context(): DeviceContext {
    const epoch = this.#epoch;
    const live = () => epoch === this.#epoch && this.#active;
    return {
      memory: this.#opts.memory,
      loop: this.#opts.loop,
      features: this.#driverFeatures,
      fail: (reason) => {
        if (live()) this.#fail(reason);
      },
      configChanged: () => this.configChanged(),
      log: (line) => this.#opts.log(`${this.device.name}: ${line}`),
    };
  }

  /*V:245 DRIVER_OK: each enabled queue becomes a session, built from its
   * registers, and the device gets them. The transport keeps the registers
   * and nothing else of a queue: the indices move only in the device's
   * hands, so there is no second copy here to go stale. :*/
  #activate(): void {
    this.#active = true;
    const features = ringFeatures(this.#driverFeatures);
    const sessions = this.#queues.map((q, index): QueueSession | undefined =>
      q.ready
        ? {
          index,
          name: `${this.device.name} queue ${index}`,
          layout: this.#layout(q),
          features,
          start: { lastAvailIdx: 0, usedIdx: 0 },
          doorbell: this.#opts.doorbells[index]!,
          interrupt: this.#line,
        }
        : undefined
    );
    this.#guard(() => this.device.activate(this.#context(), sessions));
  }

  #interrupt(cause: number): void {
    try {
      raiseInterrupt(this.#line, cause);
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      this.#opts.loop.fail(new Error(`${this.device.name}: cannot raise its interrupt: ${why}`, { cause: e }));
    }
  }

  /**
   * A QueueNotify write that reached the transport (KVM's ioeventfd takes the ones for real queues): rings
   * that queue's doorbell, as KVM would.
   */
  notify(queue: number): void {
    const doorbell = this.#opts.doorbells[queue];
    if (doorbell === undefined || !this.#queues[queue]?.ready) return;
    try {
      signalEventfd(doorbell, "doorbell");
    } catch (e) {
      this.#opts.loop.fail(e);
    }
  }

  /** Runs device code; a guest rule broken anywhere inside fails the device, never the launcher. */
  #guard(work: () => void): void {
    try {
      work();
    } catch (e) {
      this.#fail(e instanceof Error ? e.message : String(e));
    }
  }

  /*V:220 When the guest breaks a rule (a descriptor index past the ring, a
   * buffer outside RAM, a loop), the device stops and sets DEVICE_NEEDS_RESET
   * with a configuration-change interrupt, as the spec provides. The driver
   * may reset it and start over; the launcher and the other devices carry
   * on, and the message says which device, which queue and which rule. :*/
  #fail(reason: string): void {
    if (this.#status & VIRTIO_STATUS.NEEDS_RESET) return;
    this.#opts.log(`${this.device.name}: ${reason}; device needs reset`, true);
    this.#stopDevice();
    this.#status |= VIRTIO_STATUS.NEEDS_RESET;
    this.#publish();
    if (this.#status & VIRTIO_STATUS.DRIVER_OK) this.#interrupt(INTERRUPT_CAUSE.CONFIG);
  }

  #stopDevice(): void {
    if (!this.#active) return;
    this.#active = false;
    this.#epoch++;
    try {
      this.device.reset();
    } catch (e) {
      this.#opts.log(`${this.device.name}: reset failed: ${e instanceof Error ? e.message : String(e)}`, true);
    }
  }

  /** Device reset: the device lets go of every queue before this returns. */
  reset(): void {
    this.#stopDevice();
    this.#resetState();
  }

  /** The device changed its config: published between two generation steps (V:232), then a config interrupt. */
  configChanged(): void {
    this.#stepGeneration();
    try {
      this.#publishConfig();
    } finally {
      this.#stepGeneration();
    }
    if (this.#status & VIRTIO_STATUS.DRIVER_OK) this.#interrupt(INTERRUPT_CAUSE.CONFIG);
  }

  #writeConfig(at: number, size: number, value: number): void {
    if (at + size > this.device.config.length || this.device.writeConfig === undefined) return;
    const bytes = new Uint8Array(size);
    let v = Math.max(0, Math.trunc(value));
    for (let i = 0; i < size; i++, v = Math.floor(v / 256)) bytes[i] = v % 256;
    this.#guard(() => this.device.writeConfig!(at, bytes));
    this.#publishConfig();
  }
}
