/*L:187 The DSDT's program, such as it is: no methods, only names. Under
 * \_SB (the system bus, where platform devices live) one Device per piece
 * of hardware the kernel cannot discover on its own: COM1, with the PnP id
 * PNP0501 ("16550A-compatible UART") that Linux's 8250_pnp driver claims,
 * and each virtio-mmio window, with the id LNRO0005 that the virtio_mmio
 * driver matches (Linaro registered it for exactly this). Each device's _CRS
 * names its ports or 4 KiB window and its interrupt, edge-triggered and
 * active high: our interrupts are irqfd pulses, and the MP table declares
 * the same ISA polarity and trigger, so both descriptions agree. _CCA = 1
 * says the device's DMA is cache-coherent, which it is (the "device" is our
 * process reading the same RAM). At the root, \_S5_ gives the sleep type
 * for soft-off, the value the kernel will write to the sleep control
 * register; the second element is SLP_TYPb, which a reduced FADT has no
 * register for. This is what replaces the virtio_mmio.device= words on the
 * kernel command line when the kernel boots with ACPI. :*/

import { type Aml, concat, device, eisaId, integer, name, pkg, scope, string } from "./aml.ts";
import { interrupt, ioPorts, memory32Fixed, resourceTemplate } from "./resources.ts";
import { ACPI_S5_SLEEP_TYPE } from "./layout.ts";

/** The PnP id of a 16550A UART. */
export const UART_HID = "PNP0501";
/** The ACPI id of a virtio-mmio device. */
export const VIRTIO_MMIO_HID = "LNRO0005";
/** Ports a 16550A decodes. */
export const UART_PORTS = 8;

/** A UART at an I/O port base, on an ISA IRQ. */
export interface SerialPort {
  /** First port (0x3f8 for COM1). */
  readonly port: number;
  /** Its IRQ (4 for COM1). */
  readonly irq: number;
}

/** One virtio-mmio device's window and interrupt. */
export interface VirtioMmioWindow {
  /** Guest physical base of the register window. */
  readonly base: number;
  /** Window size in bytes (4 KiB). */
  readonly size: number;
  /** Its GSI. */
  readonly irq: number;
}

/** What the DSDT declares. */
export interface DsdtContent {
  /** COM1, if present. */
  readonly serial?: SerialPort | undefined;
  /** The virtio-mmio devices, in order (device n is \_SB.VRnn, nn in hex). */
  readonly virtioMmio: readonly VirtioMmioWindow[];
}

const EDGE_HIGH = { edge: true, activeLow: false } as const;

/** The AML name of virtio-mmio device `index`: "VR00" to "VRFF". */
export function virtioDeviceName(index: number): string {
  if (!Number.isInteger(index) || index < 0 || index > 0xff) throw new RangeError(`virtio device index ${index}`);
  return `VR${index.toString(16).toUpperCase().padStart(2, "0")}`;
}

/**
 * The DSDT's term list: Scope(\_SB) { COM1, VR00, VR01, ... } and
 * Name(\_S5_, Package() { 5, 0 }).
 */
export function dsdtAml(content: DsdtContent): Aml {
  const devices: Aml[] = [];
  if (content.serial !== undefined) {
    const { port, irq } = content.serial;
    devices.push(device(
      "COM1",
      name("_HID", eisaId(UART_HID)),
      name("_UID", integer(1)),
      name("_CRS", resourceTemplate(ioPorts(port, port, 1, UART_PORTS), interrupt([irq], EDGE_HIGH))),
    ));
  }
  content.virtioMmio.forEach((w, i) => {
    devices.push(device(
      virtioDeviceName(i),
      name("_HID", string(VIRTIO_MMIO_HID)),
      name("_UID", integer(i)),
      name("_CCA", integer(1)),
      name("_CRS", resourceTemplate(memory32Fixed(w.base, w.size), interrupt([w.irq], EDGE_HIGH))),
    ));
  });
  return concat(
    scope("\\_SB", ...devices),
    name("_S5", pkg(integer(ACPI_S5_SLEEP_TYPE), integer(0))),
  );
}
