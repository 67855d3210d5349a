/*V:190 The virtio-mmio register map (virtio spec 4.2.2), shared by the
 * transport on the main thread and its proxy on the vCPU thread. :*/

/** Register offsets within a window. */
export const MMIO_REG = {
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
  QUEUE_NOTIFY: 0x050,
  INTERRUPT_STATUS: 0x060,
  INTERRUPT_ACK: 0x064,
  STATUS: 0x070,
  QUEUE_DESC_LOW: 0x080,
  QUEUE_DESC_HIGH: 0x084,
  QUEUE_AVAIL_LOW: 0x090,
  QUEUE_AVAIL_HIGH: 0x094,
  QUEUE_USED_LOW: 0x0a0,
  QUEUE_USED_HIGH: 0x0a4,
  CONFIG_GENERATION: 0x0fc,
  CONFIG: 0x100,
} as const;

/** "virt", little-endian. */
export const MMIO_MAGIC = 0x74726976;
/** We speak the modern (non-legacy) layout. */
export const MMIO_VERSION = 2;
/** Our vendor id: "LGST". */
export const MMIO_VENDOR = 0x5453474c;
/** The size of one device window. */
export const MMIO_WINDOW = 0x1000;
/** Interrupt status bits. */
export const MMIO_INT = { VRING: 1, CONFIG: 2 } as const;

/*V:191 The register image is what the transport publishes and the vCPU
 * thread reads: one window's registers as the driver would read them. Both
 * sides answer a read the same way, here: control registers only as aligned
 * 32-bit words, config bytes at any width (little-endian), and anything
 * outside the window as 0. :*/

/** What the control registers that hold state read, as the transport publishes them. */
export interface RegisterState {
  /** DeviceID. */
  deviceId: number;
  /** DeviceFeatures: the 32-bit page DeviceFeaturesSel selects. */
  deviceFeatures: number;
  /** QueueNumMax of the selected queue (0: no such queue). */
  queueNumMax: number;
  /** QueueNum of the selected queue. */
  queueNum: number;
  /** QueueReady of the selected queue. */
  queueReady: number;
  /** Status. */
  status: number;
  /** ConfigGeneration. */
  generation: number;
}

/** Views of one window's shared register image. */
export class RegisterImage {
  /** The window as 32-bit words (for Atomics). */
  readonly words: Int32Array<SharedArrayBuffer>;
  /** The window as bytes. */
  readonly bytes: Uint8Array<SharedArrayBuffer>;

  /** @param image MMIO_WINDOW bytes of shared memory */
  constructor(image: SharedArrayBuffer) {
    this.words = new Int32Array(image, 0, MMIO_WINDOW / 4);
    this.bytes = new Uint8Array(image, 0, MMIO_WINDOW);
  }

  #set(offset: number, value: number): void {
    Atomics.store(this.words, offset >> 2, value | 0);
  }

  /** Writes what every register reads now (the interrupt status word is not touched). */
  publish(state: RegisterState): void {
    const R = MMIO_REG;
    this.#set(R.MAGIC, MMIO_MAGIC);
    this.#set(R.VERSION, MMIO_VERSION);
    this.#set(R.DEVICE_ID, state.deviceId);
    this.#set(R.VENDOR_ID, MMIO_VENDOR);
    this.#set(R.DEVICE_FEATURES, state.deviceFeatures);
    this.#set(R.QUEUE_NUM_MAX, state.queueNumMax);
    this.#set(R.QUEUE_NUM, state.queueNum);
    this.#set(R.QUEUE_READY, state.queueReady);
    this.#set(R.STATUS, state.status);
    this.#set(R.CONFIG_GENERATION, state.generation);
  }

  /*V:232 The config bytes the vCPU reads live in the shared image, and a
   * vCPU may read them while we copy. Two rules keep it from ever taking a
   * half-written config for a whole one. The copy writes only the bytes
   * that change, straight from old to new, so a field nobody changed never
   * reads as anything else. And a change the device makes is published as
   * a seqlock: the generation steps to an odd number, the bytes are copied,
   * and it steps again to the next even one. A read of the generation
   * waits while it is odd (only for the length of one copy), so the driver,
   * which reads the generation, then the fields, then the generation again
   * and retries if the two differ, can only see the same number twice if no
   * copy began in between. Stepping only once would not do: a driver whose
   * whole read fell inside the copy would see the same generation twice. :*/

  /** Copies `config` into the config space, byte by byte, writing only the bytes that change (rest: 0). */
  setConfig(config: Uint8Array): void {
    const dst = this.bytes;
    for (let i = MMIO_REG.CONFIG; i < MMIO_WINDOW; i++) {
      const at = i - MMIO_REG.CONFIG;
      const v = at < config.length ? config[at]! : 0;
      if (Atomics.load(dst, i) !== v) Atomics.store(dst, i, v);
    }
  }

  /**
   * A driver's read of `size` bytes at `offset`.
   * @returns the value, or 0 for an access the register map does not allow
   */
  read(offset: number, size: number): number {
    if (!Number.isInteger(offset) || offset < 0 || offset + size > MMIO_WINDOW) return 0;
    if (offset >= MMIO_REG.CONFIG) {
      let v = 0;
      for (let i = size - 1; i >= 0; i--) v = v * 256 + Atomics.load(this.bytes, offset + i);
      return v;
    }
    if (offset & 3 || size !== 4) return 0;
    if (offset === MMIO_REG.CONFIG_GENERATION) {
      let g = Atomics.load(this.words, offset >> 2);
      while (g & 1) g = Atomics.load(this.words, offset >> 2);
      return g >>> 0;
    }
    return Atomics.load(this.words, offset >> 2) >>> 0;
  }
}
