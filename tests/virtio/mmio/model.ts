/*T:665 A model of the virtio-mmio registers, written from the spec and
 * not from transport.ts, for the fuzz test to hold the transport against.
 * It is deliberately plain: a handful of fields and the rules of virtio
 * 1.2 section 4.2.2 (the register table and its device requirements), 2.1
 * (device status), 2.2 (feature bits) and 3.1 (initialization), each rule
 * written where the register is.
 *
 * The spec says what a conforming driver does; a fuzzer is not one. Where
 * the spec leaves the device free (a driver setting FEATURES_OK before
 * DRIVER, a queue that is not a power of two, a register written after
 * DRIVER_OK), the model takes the choice the project documents: status
 * bits only accumulate until a reset, and the two the device must grant
 * are granted in order; a queue the device cannot use never reads back
 * ready and marks the device DEVICE_NEEDS_RESET; once the device runs, or
 * needs a reset, queue and feature registers are frozen; write-only
 * registers read 0, except that QueueNum reads back what was written.
 * ConfigGeneration is modelled only as "which version of the config": its
 * values are the transport's to pick, as long as two versions never read
 * the same. :*/

const REG = {
  MAGIC: 0x000,
  VERSION: 0x004,
  DEVICE_ID: 0x008,
  VENDOR_ID: 0x00c,
  DEVICE_FEATURES: 0x010,
  DEVICE_FEATURES_SEL: 0x014,
  DRIVER_FEATURES: 0x020,
  DRIVER_FEATURES_SEL: 0x024,
  QUEUE_SEL: 0x030,
  QUEUE_NUM_MAX: 0x034,
  QUEUE_NUM: 0x038,
  QUEUE_READY: 0x044,
  INTERRUPT_STATUS: 0x060,
  INTERRUPT_ACK: 0x064,
  STATUS: 0x070,
  QUEUE_DESC_LOW: 0x080,
  QUEUE_DRIVER_LOW: 0x090,
  QUEUE_DEVICE_LOW: 0x0a0,
  SHM_LEN_LOW: 0x0b0,
  SHM_BASE_HIGH: 0x0bc,
  CONFIG_GENERATION: 0x0fc,
  CONFIG: 0x100,
} as const;
const WINDOW = 0x1000;
const ACKNOWLEDGE = 1, DRIVER = 2, DRIVER_OK = 4, FEATURES_OK = 8, NEEDS_RESET = 0x40, FAILED = 0x80;
const USED_BUFFER = 1, CONFIG_CHANGE = 2;
/** Feature bits the model knows by name (the ring features decide how a queue runs). */
export const FEATURE = { INDIRECT_DESC: 1n << 28n, EVENT_IDX: 1n << 29n, VERSION_1: 1n << 32n } as const;

/**
 * Where the transport departs from the spec in ways no driver we know of can notice. Each is reported; while an
 * entry is true the model follows the transport, and making it false holds the transport to the spec.
 */
export const TOLERATED = {
  /** SHMLen and SHMBase (0x0b0-0x0bc) read 0; the spec has a device without shared memory answer all ones. */
  shmReadsZero: true,
  /** DriverFeatures pages past the second are dropped, so accepting a bit from 64 up does not refuse FEATURES_OK. */
  highFeaturePagesDropped: true,
};

/** The device behind the window, as the model needs to know it. */
export interface ModelDevice {
  deviceId: number;
  vendorId: number;
  /** Every feature bit offered (the transport's ring and version bits included). */
  offered: bigint;
  queueSizes: readonly number[];
  /** Guest RAM is [0, ram). */
  ram: bigint;
  /** The device's own verdict on a feature set the transport found valid. */
  accepts(features: bigint): boolean;
}

/** What the driver wrote for one queue. */
export interface ModelQueue {
  num: number;
  ready: boolean;
  desc: bigint;
  driver: bigint;
  device: bigint;
}

/** One DRIVER_OK: the accepted features and the queues that were ready. */
export interface ModelActivation {
  features: bigint;
  queues: (ModelQueue | undefined)[];
}

const blank = (): ModelQueue => ({ num: 0, ready: false, desc: 0n, driver: 0n, device: 0n });

/** One virtio-mmio window, as the spec describes it. */
export class MmioModel {
  status = 0;
  deviceFeaturesSel = 0;
  driverFeaturesSel = 0;
  /** DriverFeatures pages written, by selector. */
  driverPages = new Map<number, number>();
  queueSel = 0;
  queues: ModelQueue[];
  interruptStatus = 0;
  /** Which version of the config space is showing (ConfigGeneration must tell versions apart). */
  configVersion = 0;
  config: Uint8Array;
  /** The device is running: DRIVER_OK was granted and nothing has stopped it since. */
  live = false;
  activations: ModelActivation[] = [];
  /** Times the running device was stopped (its reset()). */
  stops = 0;
  /** Feature sets the device was asked about. */
  asked: bigint[] = [];
  /** Interrupts raised (irqfd writes). */
  interrupts = 0;
  configWrites: { offset: number; bytes: number[] }[] = [];
  readonly #dev: ModelDevice;

  /** @param dev the device; @param config its config space */
  constructor(dev: ModelDevice, config: Uint8Array) {
    this.#dev = dev;
    this.config = config.slice();
    this.queues = dev.queueSizes.map(blank);
  }

  /** Bits 0-63 of what the driver accepted. */
  get features(): bigint {
    return BigInt(this.driverPages.get(0) ?? 0) | (BigInt(this.driverPages.get(1) ?? 0) << 32n);
  }

  /** What a driver read of `size` bytes at `offset` returns (ConfigGeneration: the config version). */
  read(offset: number, size: number): number {
    if (offset < 0 || offset + size > WINDOW) return 0;
    if (offset >= REG.CONFIG) {
      let v = 0;
      for (let i = size - 1; i >= 0; i--) v = v * 256 + (this.config[offset - REG.CONFIG + i] ?? 0);
      return v;
    }
    // The driver MUST use aligned 32-bit accesses on the control registers: others read nothing.
    if (size !== 4 || offset % 4 !== 0) return 0;
    const q = this.queues[this.queueSel];
    switch (offset) {
      case REG.MAGIC:
        return 0x74726976;
      case REG.VERSION:
        return 2;
      case REG.DEVICE_ID:
        return this.#dev.deviceId;
      case REG.VENDOR_ID:
        return this.#dev.vendorId;
      case REG.DEVICE_FEATURES:
        return Number((this.#dev.offered >> (32n * BigInt(this.deviceFeaturesSel))) & 0xffffffffn);
      case REG.QUEUE_NUM_MAX:
        return q === undefined ? 0 : this.#dev.queueSizes[this.queueSel]!;
      case REG.QUEUE_NUM:
        return q?.num ?? 0;
      case REG.QUEUE_READY:
        return q?.ready ? 1 : 0;
      case REG.INTERRUPT_STATUS:
        return this.interruptStatus;
      case REG.STATUS:
        return this.status;
      case REG.CONFIG_GENERATION:
        return this.configVersion;
    }
    if (offset >= REG.SHM_LEN_LOW && offset <= REG.SHM_BASE_HIGH && !TOLERATED.shmReadsZero) return 0xffffffff;
    return 0;
  }

  /** A driver write of `size` bytes of `value` at `offset`. */
  write(offset: number, size: number, value: number): void {
    if (offset >= REG.CONFIG) {
      // Config space takes any width; what the bytes mean is the device's business (ours ignores them).
      const at = offset - REG.CONFIG;
      if (at + size > this.config.length) return;
      const bytes = [];
      for (let i = 0, v = value; i < size; i++, v = Math.floor(v / 256)) bytes.push(v % 256);
      this.configWrites.push({ offset: at, bytes });
      return;
    }
    if (size !== 4 || offset % 4 !== 0) return;
    const v = value >>> 0;
    // A device that needs a reset hears only the reset (Status) and the interrupt acknowledgement.
    if (this.status & NEEDS_RESET && offset !== REG.STATUS && offset !== REG.INTERRUPT_ACK) return;
    const q = this.queues[this.queueSel];
    // The driver MUST NOT touch a ready queue's setup; once the device runs, no queue is set up any more.
    const settable = q !== undefined && !q.ready && !(this.status & DRIVER_OK);
    switch (offset) {
      case REG.DEVICE_FEATURES_SEL:
        this.deviceFeaturesSel = v;
        return;
      case REG.DRIVER_FEATURES_SEL:
        this.driverFeaturesSel = v;
        return;
      case REG.DRIVER_FEATURES:
        // Negotiation ends at FEATURES_OK: a later write changes nothing.
        if (this.status & FEATURES_OK) return;
        if (this.driverFeaturesSel < 2 || !TOLERATED.highFeaturePagesDropped) {
          this.driverPages.set(this.driverFeaturesSel, v);
        }
        return;
      case REG.QUEUE_SEL:
        this.queueSel = v;
        return;
      case REG.QUEUE_NUM:
        if (settable) q.num = v;
        return;
      case REG.QUEUE_READY:
        this.#queueReady(v);
        return;
      case REG.INTERRUPT_ACK:
        this.interruptStatus &= ~v;
        return;
      case REG.STATUS:
        // Status is the one-byte device status field; 0 is a reset.
        if ((v & 0xff) === 0) this.#reset();
        else this.#setStatus(v & 0xff);
        return;
    }
    // The three ring addresses, 64 bits each in a low and a high register.
    for (const field of ["desc", "driver", "device"] as const) {
      const low = field === "desc"
        ? REG.QUEUE_DESC_LOW
        : field === "driver"
        ? REG.QUEUE_DRIVER_LOW
        : REG.QUEUE_DEVICE_LOW;
      if ((offset === low || offset === low + 4) && settable) {
        const shift = offset === low ? 0n : 32n;
        q[field] = (q[field] & ~(0xffffffffn << shift)) | (BigInt(v) << shift);
      }
    }
  }

  #queueReady(v: number): void {
    const q = this.queues[this.queueSel];
    if (q === undefined || this.status & DRIVER_OK) return;
    if (v !== 1) {
      q.ready = false;
      return;
    }
    if (q.ready || !(this.status & FEATURES_OK)) return;
    if (this.#queueProblem(q, this.#dev.queueSizes[this.queueSel]!)) this.#needsReset();
    else q.ready = true;
  }

  /** Split virtqueue rules (2.7): size a power of two up to QueueNumMax; areas aligned and inside RAM. */
  #queueProblem(q: ModelQueue, max: number): boolean {
    const n = q.num;
    if (n < 1 || n > max || (n & (n - 1)) !== 0) return true;
    const areas: [bigint, bigint, number][] = [[q.desc, 16n, 16 * n], [q.driver, 2n, 6 + 2 * n], [
      q.device,
      4n,
      6 + 8 * n,
    ]];
    return areas.some(([at, align, len]) => at % align !== 0n || at + BigInt(len) > this.#dev.ram);
  }

  #setStatus(v: number): void {
    const before = this.status;
    // The driver MUST NOT clear a bit, and DEVICE_NEEDS_RESET is the device's to set.
    let next = before | (v & ~NEEDS_RESET);
    const broken = (next & (NEEDS_RESET | FAILED)) !== 0;
    if (v & FEATURES_OK && !(before & FEATURES_OK)) {
      const ok = !broken && (next & (ACKNOWLEDGE | DRIVER)) === (ACKNOWLEDGE | DRIVER) && this.#acceptable();
      if (!ok) next &= ~FEATURES_OK;
    }
    const starting = (v & DRIVER_OK) !== 0 && !(before & DRIVER_OK);
    if (starting && (broken || !(next & FEATURES_OK))) next &= ~DRIVER_OK;
    this.status = next;
    if (starting && next & DRIVER_OK) {
      this.live = true;
      this.activations.push({
        features: this.features,
        queues: this.queues.map((q) => q.ready ? { ...q } : undefined),
      });
    }
    if (v & FAILED && !(before & FAILED)) this.#stop();
  }

  /** 2.2.2: the device accepts a valid subset of what it offered (with VERSION_1: no legacy), if it likes it. */
  #acceptable(): boolean {
    const f = this.features;
    const beyond = [...this.driverPages].some(([sel, v]) => sel >= 2 && v !== 0);
    if (beyond || (f & ~this.#dev.offered) !== 0n || !(f & FEATURE.VERSION_1)) return false;
    this.asked.push(f);
    return this.#dev.accepts(f);
  }

  #stop(): void {
    if (!this.live) return;
    this.live = false;
    this.stops++;
  }

  #reset(): void {
    this.#stop();
    this.status = 0;
    this.deviceFeaturesSel = 0;
    this.driverFeaturesSel = 0;
    this.driverPages.clear();
    this.queueSel = 0;
    this.queues = this.#dev.queueSizes.map(blank);
    // Upon reset the device MUST clear InterruptStatus and every QueueReady.
    this.interruptStatus = 0;
  }

  #raise(cause: number): void {
    this.interruptStatus |= cause;
    this.interrupts++;
  }

  /** 2.1.2: DEVICE_NEEDS_RESET, and a config change notification if DRIVER_OK is set. */
  #needsReset(): void {
    if (this.status & NEEDS_RESET) return;
    this.#stop();
    this.status |= NEEDS_RESET;
    if (this.status & DRIVER_OK) this.#raise(CONFIG_CHANGE);
  }

  /** The running device found the guest breaking a rule (a stopped device has nothing to report). */
  deviceFailed(): void {
    if (this.live) this.#needsReset();
  }

  /** The device changed its config to `config`: a new version, notified once the driver is live. */
  configChanged(config: Uint8Array): void {
    this.config = config.slice();
    this.configVersion++;
    if (this.status & DRIVER_OK) this.#raise(CONFIG_CHANGE);
  }

  /** The running device used buffers on one of its queues. */
  usedBuffers(): void {
    const last = this.activations.at(-1);
    if (this.live && last?.queues.some((q) => q !== undefined)) this.#raise(USED_BUFFER);
  }
}
