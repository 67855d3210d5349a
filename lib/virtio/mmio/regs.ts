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
    return Atomics.load(this.words, offset >> 2) >>> 0;
  }
}
