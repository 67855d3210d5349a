/*L:335 ACPI's way to turn the machine off. The FADT points the kernel at
 * two one-byte registers (chapter L:181): sleep control at
 * ACPI_SLEEP_CONTROL_PORT and sleep status right after it. Linux's
 * power-off clears WAK_STS in the status register (by writing 1 to it),
 * then writes SLP_EN with the sleep type \_S5_ named, and polls the status
 * register until WAK_STS is set again, which for soft-off is never. So a
 * write with SLP_EN and type 5 ends the VM cleanly, the same way the
 * keyboard controller's reset pulse does, before the vCPU reaches that
 * loop. Our DSDT names no other sleep state, so no other type should come;
 * if one does, the machine "wakes up" at once (WAK_STS set) rather than
 * leave the kernel spinning, and a write without SLP_EN does nothing. This
 * device is on the port bus only when the machine has ACPI tables. :*/

import type { BusAction, BusDevice } from "../bus.ts";
import { ACPI_S5_SLEEP_TYPE, ACPI_SLEEP_CONTROL_PORT, ACPI_WAKE_STATUS, sleepRequest } from "../boot/acpi/layout.ts";

/** The first port {@link AcpiSleepPort} decodes (the sleep control register). */
export const ACPI_SLEEP_PORT_BASE = ACPI_SLEEP_CONTROL_PORT;
/** Ports it decodes: control, then status. */
export const ACPI_SLEEP_PORT_COUNT = 2;

/** The FADT's sleep control and status registers, whose S5 request ends the VM. */
export class AcpiSleepPort implements BusDevice {
  readonly name = "acpi-sleep";
  #status = 0;

  /** Reads the status register (offset 1); the control register reads as 0. */
  read(offset: number, size: number): number {
    let value = 0;
    for (let i = 0; i < size; i++) value |= this.#readByte(offset + i) << (8 * i);
    return value >>> 0;
  }

  /** A write with SLP_EN and type 5 asks for power-off; a write of 1s to WAK_STS clears it. */
  write(offset: number, size: number, value: number): BusAction {
    for (let i = 0; i < size; i++) {
      const at = offset + i;
      const byte = (value >>> (8 * i)) & 0xff;
      if (at === 0) {
        const type = sleepRequest(byte);
        if (type === ACPI_S5_SLEEP_TYPE) return "power-off";
        if (type !== undefined) this.#status |= ACPI_WAKE_STATUS;
      } else if (at === 1) {
        this.#status &= ~(byte & ACPI_WAKE_STATUS);
      }
    }
  }

  #readByte(at: number): number {
    return at === 1 ? this.#status : 0;
  }
}
