/*V:200 The virtio-mmio transport (virtio 1.x, register layout version 2).
 * Each device owns a 4 KiB window of guest physical addresses and an IRQ,
 * and the driver learns of it from the kernel command line. This is the
 * modern heir of lguest's device page: instead of a page of descriptors, a
 * page of registers per device.
 *
 * The guest's register accesses arrive on the vCPU thread, but the device
 * lives on the main thread. So the transport keeps its state here, on the
 * main thread, and after every change it publishes what each register would
 * read into a shared 4 KiB "register image". The vCPU thread answers reads
 * straight from that image and acknowledges interrupts in it atomically;
 * only writes that change state cross to the main thread (proxy.ts).
 * Doorbells (QueueNotify) never reach either thread as exits: KVM turns
 * them into eventfd signals (ioeventfd). :*/

import type { GuestMemory } from "../../memory.ts";
import type { EventLoop } from "../../eventloop.ts";
import { bit, type QueueWiring, VIRTIO_F, VIRTIO_STATUS, type VirtioContext, type VirtioDevice } from "../device.ts";
import { Virtqueue } from "../queue.ts";
import { MMIO_INT, MMIO_MAGIC, MMIO_REG, MMIO_VENDOR, MMIO_VERSION, MMIO_WINDOW, RegisterImage } from "./regs.ts";

export { MMIO_INT, MMIO_MAGIC, MMIO_REG, MMIO_VENDOR, MMIO_VERSION, MMIO_WINDOW } from "./regs.ts";

/** Ring features every device gets from the transport. */
const TRANSPORT_FEATURES = bit(VIRTIO_F.VERSION_1) | bit(VIRTIO_F.EVENT_IDX) | bit(VIRTIO_F.INDIRECT_DESC);
const ISR = MMIO_REG.INTERRUPT_STATUS >> 2;

interface QueueRegs {
  num: number;
  ready: boolean;
  desc: bigint;
  avail: bigint;
  used: bigint;
  vq: Virtqueue | undefined;
}

/** The doorbells and the irqfd, for devices that serve a queue on their own thread (VirtioContext.takeQueue). */
export interface MmioWiring {
  /** Each queue's doorbell eventfd (its ioeventfd). */
  doorbells: readonly number[];
  /** The device's irqfd. */
  irqfd: number;
  /** Starts (true) or stops (false) watching queue `queue`'s doorbell on the main loop. */
  watch(queue: number, on: boolean): void;
}

/** What the transport needs from the machine. */
export interface MmioTransportOptions {
  /** Guest RAM. */
  memory: GuestMemory;
  /** The main event loop (handed to the device). */
  loop: EventLoop;
  /** Raise the device's interrupt (an irqfd write); a throw ends the run through `loop.fail`. */
  interrupt: () => void;
  /** The shared register image (MMIO_WINDOW bytes). */
  image: SharedArrayBuffer;
  /** Reports problems and, with --verbose, activity. */
  log: (line: string, always?: boolean) => void;
  /** Doorbells and irqfd a device may take over (optional). */
  wiring?: MmioWiring;
}

/** One device behind one virtio-mmio window. */
export class MmioTransport {
  readonly device: VirtioDevice;
  readonly #opts: MmioTransportOptions;
  readonly #image: RegisterImage;
  readonly #config: Uint8Array<SharedArrayBuffer>;
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
  /** Queues whose doorbell the device has taken over (see takeQueue). */
  readonly #taken = new Set<number>();

  /**
   * @param device the device model
   * @param options memory, loop, interrupt hook, register image, logger
   */
  constructor(device: VirtioDevice, options: MmioTransportOptions) {
    if (options.image.byteLength < MMIO_WINDOW) throw new RangeError("register image smaller than a window");
    if (device.config.length > MMIO_WINDOW - MMIO_REG.CONFIG) throw new RangeError(`${device.name}: config too big`);
    this.device = device;
    this.#opts = options;
    this.#image = new RegisterImage(options.image);
    this.#config = new Uint8Array(options.image, MMIO_REG.CONFIG, MMIO_WINDOW - MMIO_REG.CONFIG);
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
    this.#queues = this.device.queueSizes.map(() => ({
      num: 0,
      ready: false,
      desc: 0n,
      avail: 0n,
      used: 0n,
      vq: undefined,
    }));
    this.#active = false;
    Atomics.store(this.#image.words, ISR, 0);
    this.#publishConfig();
    this.#publish();
  }

  #set(offset: number, value: number): void {
    Atomics.store(this.#image.words, offset >> 2, value | 0);
  }

  /** Writes what every register reads now into the shared image. */
  #publish(): void {
    const R = MMIO_REG;
    this.#set(R.MAGIC, MMIO_MAGIC);
    this.#set(R.VERSION, MMIO_VERSION);
    this.#set(R.DEVICE_ID, this.device.deviceId);
    this.#set(R.VENDOR_ID, MMIO_VENDOR);
    const sel = this.#deviceFeaturesSel;
    this.#set(R.DEVICE_FEATURES, sel < 2 ? Number((this.#offered >> BigInt(32 * sel)) & 0xffffffffn) : 0);
    const q = this.#queues[this.#queueSel];
    this.#set(R.QUEUE_NUM_MAX, q ? this.device.queueSizes[this.#queueSel]! : 0);
    this.#set(R.QUEUE_NUM, q?.num ?? 0);
    this.#set(R.QUEUE_READY, q?.ready ? 1 : 0);
    this.#set(R.STATUS, this.#status);
    this.#set(R.CONFIG_GENERATION, this.#generation);
  }

  #publishConfig(): void {
    this.#config.fill(0);
    this.#config.set(this.device.config);
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
      q.vq = undefined;
      return;
    }
    if (q.ready || !(this.#status & VIRTIO_STATUS.FEATURES_OK)) return;
    const max = this.device.queueSizes[index]!;
    if (q.num === 0 || q.num > max || (q.num & (q.num - 1)) !== 0) {
      this.#fail(`queue ${index} size ${q.num} is not a power of two from 1 to ${max}`);
      return;
    }
    const features = this.#driverFeatures;
    try {
      q.vq = new Virtqueue(this.#opts.memory, { size: q.num, desc: q.desc, avail: q.avail, used: q.used }, {
        eventIdx: (features & bit(VIRTIO_F.EVENT_IDX)) !== 0n,
        indirect: (features & bit(VIRTIO_F.INDIRECT_DESC)) !== 0n,
      }, `${this.device.name} queue ${index}`);
      q.ready = true;
    } catch (e) {
      this.#fail(e instanceof Error ? e.message : String(e));
    }
  }

  /*V:250 The status byte only ever gains bits, in the spec's order, until
   * the driver writes 0. A bit the driver tries to clear stays set (so a
   * live device cannot be activated a second time behind its own back), and
   * DEVICE_NEEDS_RESET is ours to set, not the driver's. FEATURES_OK needs
   * ACKNOWLEDGE and DRIVER and a feature set we accept; DRIVER_OK needs
   * FEATURES_OK. Once the device has failed, or the driver has said FAILED,
   * neither is granted again: only a reset brings the device back. A bit we
   * refuse is simply not kept, and the driver sees that on reading back. :*/
  #writeStatus(v: number): void {
    const S = VIRTIO_STATUS;
    if (v === 0) {
      this.reset();
      return;
    }
    const old = this.#status;
    const rising = v & ~old & ~S.NEEDS_RESET;
    let next = old | rising;
    const broken = (next & (S.NEEDS_RESET | S.FAILED)) !== 0;
    const ready = S.ACKNOWLEDGE | S.DRIVER;
    if (rising & S.FEATURES_OK && (broken || (next & ready) !== ready || !this.#featuresAcceptable())) {
      next &= ~S.FEATURES_OK;
    }
    if (rising & S.DRIVER_OK && (broken || !(next & S.FEATURES_OK))) next &= ~S.DRIVER_OK;
    if (v & ~next & 0xff & ~S.NEEDS_RESET) {
      this.#opts.log(`${this.device.name}: status 0x${v.toString(16)} refused, keeping 0x${next.toString(16)}`);
    }
    this.#status = next;
    if (rising & S.DRIVER_OK && next & S.DRIVER_OK) this.#activate();
    if (rising & S.FAILED) this.#stopDevice();
  }

  #featuresAcceptable(): boolean {
    const f = this.#driverFeatures;
    if ((f & ~this.#offered) !== 0n) {
      this.#opts.log(`${this.device.name}: driver asked for features we do not offer (0x${f.toString(16)})`, true);
      return false;
    }
    if ((f & bit(VIRTIO_F.VERSION_1)) === 0n) {
      this.#opts.log(`${this.device.name}: driver did not accept VERSION_1 (legacy drivers are not supported)`, true);
      return false;
    }
    return this.device.acceptFeatures?.(f) ?? true;
  }

  #context(): VirtioContext {
    const memory = this.#opts.memory;
    const loop = this.#opts.loop;
    const features = this.#driverFeatures;
    const epoch = this.#epoch;
    const live = () => epoch === this.#epoch && this.#active;
    return {
      memory,
      loop,
      features,
      used: (queue) => {
        if (live()) this.#used(queue);
      },
      fail: (reason) => {
        if (live()) this.#fail(reason);
      },
      configChanged: () => this.configChanged(),
      log: (line) => this.#opts.log(`${this.device.name}: ${line}`),
      takeQueue: (queue) => (live() ? this.#takeQueue(queue) : undefined),
    };
  }

  #takeQueue(queue: number): QueueWiring | undefined {
    const w = this.#opts.wiring;
    const doorbell = w?.doorbells[queue];
    if (w === undefined || doorbell === undefined || this.#queues[queue]?.vq === undefined) return undefined;
    if (!this.#taken.has(queue)) {
      this.#taken.add(queue);
      w.watch(queue, false);
    }
    return { doorbell, irqfd: w.irqfd, image: this.#opts.image, isrWord: ISR, usedBit: MMIO_INT.VRING };
  }

  #activate(): void {
    this.#active = true;
    this.#guard(() => this.device.activate(this.#context(), this.#queues.map((q) => q.ready ? q.vq : undefined)));
  }

  #used(queue: number): void {
    const vq = this.#queues[queue]?.vq;
    if (this.#active && vq !== undefined && vq.needsInterrupt()) this.#interrupt(MMIO_INT.VRING);
  }

  /*V:255 Raising the interrupt is a write to the device's irqfd, and if
   * that write fails the guest never hears of the buffers we just gave back
   * and waits for ever with no word why. That is the host's fault, not the
   * guest's, so it must not become "device needs reset" (which would need
   * an interrupt too), and a throw would land in whatever device code
   * called us, or in a timer. Instead the main loop is told to end the run
   * with one line naming the device and the errno. :*/
  #interrupt(bits: number): void {
    Atomics.or(this.#image.words, ISR, bits);
    try {
      this.#opts.interrupt();
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      this.#opts.loop.fail(new Error(`${this.device.name}: cannot raise its interrupt: ${why}`, { cause: e }));
    }
  }

  /** The driver rang queue `queue`'s doorbell. */
  notify(queue: number): void {
    if (!this.#active || this.#status & VIRTIO_STATUS.NEEDS_RESET) return;
    if (this.#queues[queue]?.vq === undefined) return;
    this.#guard(() => this.device.notify(queue));
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
    if (this.#status & VIRTIO_STATUS.DRIVER_OK) this.#interrupt(MMIO_INT.CONFIG);
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
    for (const q of this.#taken) this.#opts.wiring?.watch(q, true);
    this.#taken.clear();
  }

  /** Device reset: the device lets go of every queue before this returns. */
  reset(): void {
    this.#stopDevice();
    this.#resetState();
  }

  /** The device changed its config: new generation, config interrupt. */
  configChanged(): void {
    this.#generation = (this.#generation + 1) | 0;
    this.#publishConfig();
    this.#publish();
    if (this.#status & VIRTIO_STATUS.DRIVER_OK) this.#interrupt(MMIO_INT.CONFIG);
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
