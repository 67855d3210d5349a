/*L:337 A machine without PCI, said plainly. Kernels built for PCs (every
 * distribution's) look for a PCI host bridge before anything else, through
 * the type-1 configuration ports: they write an address to 0xcf8 and read
 * it back, then read configuration words through 0xcfc-0xcff. Our machine
 * has no PCI bus (its devices are virtio-mmio), and an unclaimed port
 * already reads as all ones, which is what an absent bridge answers; but
 * the probe is hundreds of accesses, each a line under --verbose, which
 * drowned everything else a user wanted to see. This device claims the
 * eight ports and gives the same answer silently: all ones, so the address
 * written to 0xcf8 does not read back, the kernel concludes there is no
 * type-1 configuration space, and no device is ever found. Writes are
 * ignored. :*/

import type { BusAction, BusDevice } from "../bus.ts";

/** The first port of the PCI type-1 configuration mechanism (CONFIG_ADDRESS). */
export const PCI_CONFIG_PORT_BASE = 0xcf8;
/** CONFIG_ADDRESS (4 ports) and CONFIG_DATA (4 ports). */
export const PCI_CONFIG_PORT_COUNT = 8;

/** The PCI configuration ports of a machine that has no PCI bus. */
export class NoPciHost implements BusDevice {
  readonly name = "no-pci";

  /** Every read is all ones, of the access's size. */
  read(_offset: number, size: number): number {
    return size >= 4 ? 0xffffffff : (1 << (8 * size)) - 1;
  }

  /** Writes go nowhere. */
  write(_offset: number, _size: number, _value: number): BusAction {
    return undefined;
  }
}
