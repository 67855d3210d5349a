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
