/*L:181 Where the ACPI tables go, and the one register they add. A kernel
 * looks for the RSDP ("RSD PTR ") in two places when nobody hands it the
 * address: the first KiB of the EBDA and the BIOS area 0xe0000-0xfffff, on
 * 16-byte boundaries. We put the RSDP at the start of that area and the
 * tables right after it, and also pass the address in the zero page's
 * acpi_rsdp_addr, so the kernel does not have to scan. The e820 map already
 * reports [0x9fc00, 1 MiB) as reserved, so the kernel reads the tables but
 * never reuses their memory, and nothing else of ours lives above 0xa0000
 * below 1 MiB (the MP table ends there).
 *
 * A hardware-reduced machine has no PM1 control block, so ACPI's way of
 * turning it off is the FADT's sleep control register: the kernel looks up
 * \_S5_ in the DSDT to learn the "sleep type" for soft-off, then writes
 * SLP_EN | type << 2 to that register, after clearing WAK_STS in the sleep
 * status register, and then spins reading the status register until
 * WAK_STS comes back. Both registers are one byte at I/O ports we pick
 * here, 0x600 and 0x601, which no device of ours decodes (the port bus has
 * COM1, the i8042 and the POST port 0x80) and no PC chipset device claims.
 * The launcher must trap writes to the control port and end the guest on
 * SLP_EN with type 5 (sleepRequest() below decodes a write), before the
 * vCPU gets to that loop. Reset goes through the FADT's reset register,
 * pointed at the i8042's command port with the value 0xfe, the same pulse
 * Linux's keyboard-controller reboot sends, so the launcher's existing
 * reset path serves it. :*/

/** Start of the ACPI area: the RSDP is here, 16-byte aligned as the scan needs. */
export const ACPI_TABLES_ADDR = 0xe0000;
/** End (exclusive) of the ACPI area: the end of the BIOS area the kernel scans. */
export const ACPI_TABLES_END = 0x100000;
/** First address the kernel scans for the RSDP in the BIOS area. */
export const ACPI_RSDP_SCAN_START = 0xe0000;
/** End (exclusive) of that scan. */
export const ACPI_RSDP_SCAN_END = 0x100000;

/** The FADT's SLEEP_CONTROL_REG: a byte at this I/O port (unused by any device of ours). */
export const ACPI_SLEEP_CONTROL_PORT = 0x600;
/** The FADT's SLEEP_STATUS_REG: a byte at this I/O port. */
export const ACPI_SLEEP_STATUS_PORT = 0x601;
/** Sleep control: SLP_EN, "enter the sleep state in SLP_TYP now". */
export const ACPI_SLEEP_ENABLE = 0x20;
/** Sleep control: SLP_TYP, bits 2-4. */
export const ACPI_SLEEP_TYPE_MASK = 0x1c;
/** Sleep control: SLP_TYP's shift. */
export const ACPI_SLEEP_TYPE_SHIFT = 2;
/** Sleep status: WAK_STS, which the kernel clears (writes 1) before sleeping. */
export const ACPI_WAKE_STATUS = 0x80;
/** The SLP_TYP our \_S5_ package names for soft-off (S5). */
export const ACPI_S5_SLEEP_TYPE = 5;

/**
 * Decodes a guest write to {@link ACPI_SLEEP_CONTROL_PORT}.
 * @param value the byte written
 * @returns the sleep type requested ({@link ACPI_S5_SLEEP_TYPE} is
 *   power-off), or undefined if SLP_EN is clear (no transition asked)
 */
export function sleepRequest(value: number): number | undefined {
  if ((value & ACPI_SLEEP_ENABLE) === 0) return undefined;
  return (value & ACPI_SLEEP_TYPE_MASK) >> ACPI_SLEEP_TYPE_SHIFT;
}
