/*L:188 Putting the tables together. Every table is built as bytes first,
 * then placed: the RSDP at the start of the area, and the XSDT, FADT, MADT
 * and DSDT after it on 16-byte boundaries. Pointers need addresses and
 * addresses need sizes, so the sizes come first (the DSDT's AML is built
 * before anything is placed), then each table is built knowing where the
 * ones it points to will be. The result is one image for the machine to
 * copy into guest memory at one address, and that address for the zero
 * page's acpi_rsdp_addr. Inputs are checked the way the MP table's are, so
 * a machine that describes two devices on one IRQ or an interrupt past the
 * IOAPIC's last pin fails here, with one line saying which, and not later
 * inside the guest. :*/

import { COM1_BASE, COM1_IRQ } from "../../devices/serial.ts";
import { BootError, hex, span } from "../errors.ts";
import { IOAPIC_ADDR, LAPIC_ADDR } from "../layout.ts";
import { dsdtAml, type SerialPort, type VirtioMmioWindow } from "./dsdt.ts";
import { ACPI_RSDP_SCAN_END, ACPI_RSDP_SCAN_START, ACPI_TABLES_ADDR, ACPI_TABLES_END } from "./layout.ts";
import { buildDsdt, buildFadt, buildMadt, buildRsdp, buildXsdt, type InterruptOverride, madtSize } from "./tables.ts";
import { ACPI_STRUCTS } from "./structs.ts";

/** Pins on KVM's in-kernel IOAPIC (GSIs gsiBase..gsiBase+23). */
export const ACPI_IOAPIC_PINS = 24;

/** What the ACPI tables describe. */
export interface AcpiOptions {
  /** vCPUs (1-254): local APIC ids 0..cpus-1. */
  readonly cpus: number;
  /** The IOAPIC. Defaults: id = cpus (as the MP table), addr {@link IOAPIC_ADDR}, GSI base 0, 24 pins. */
  readonly ioapic?: {
    readonly id?: number;
    readonly addr?: number;
    readonly gsiBase?: number;
    readonly pins?: number;
  };
  /** The local APIC's address. Default {@link LAPIC_ADDR}. */
  readonly lapicAddr?: number;
  /** The virtio-mmio devices, in order (their windows and IRQs from layoutMmio). */
  readonly virtioMmio: readonly VirtioMmioWindow[];
  /** The UART. Default COM1 (0x3f8, IRQ 4); null for none. */
  readonly serial?: SerialPort | null;
  /** Interrupt source overrides. Default none: KVM's default routing sends ISA IRQ n to GSI n. */
  readonly overrides?: readonly InterruptOverride[];
  /** Where the image starts (the RSDP): 16-byte aligned, inside the BIOS area. Default {@link ACPI_TABLES_ADDR}. */
  readonly at?: number;
}

/** One table's place in the image. */
export interface AcpiTablePlace {
  /** "RSD PTR ", "XSDT", "FACP", "APIC" or "DSDT". */
  readonly signature: string;
  /** Guest physical address. */
  readonly addr: number;
  /** Length in bytes. */
  readonly length: number;
}

/** The built tables, ready to copy into guest memory. */
export interface AcpiTables {
  /** The image: every table at its offset from {@link AcpiTables.at}, zeros between. */
  readonly bytes: Uint8Array;
  /** Guest physical address of bytes[0]. */
  readonly at: number;
  /** Guest physical address of the RSDP, for boot_params.acpi_rsdp_addr. */
  readonly rsdpAt: number;
  /** Each table, in image order: RSDP, XSDT, FADT, MADT, DSDT. */
  readonly tables: readonly AcpiTablePlace[];
}

function check(what: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new BootError(`ACPI tables: ${what} ${value} is out of range (${min}..${max})`);
  }
}

const align16 = (n: number) => (n + 15) & ~15;

/**
 * Builds the RSDP, XSDT, FADT (hardware-reduced, power-off through the
 * sleep control port), MADT and DSDT (COM1 and every virtio-mmio device)
 * for a machine, laid out from `options.at`.
 * @param options the machine's CPUs, interrupt controllers and devices
 * @returns the image, where it goes, and the RSDP's address
 * @throws BootError if an option is out of range, two devices share an
 *   IRQ, an IRQ is past the IOAPIC's pins, or the image would not fit
 *   below {@link ACPI_TABLES_END}
 */
export function buildAcpiTables(options: AcpiOptions): AcpiTables {
  const { cpus, virtioMmio } = options;
  check("CPU count", cpus, 1, 0xfe);
  const ioapic = {
    id: options.ioapic?.id ?? cpus,
    addr: options.ioapic?.addr ?? IOAPIC_ADDR,
    gsiBase: options.ioapic?.gsiBase ?? 0,
  };
  const pins = options.ioapic?.pins ?? ACPI_IOAPIC_PINS;
  const lapicAddr = options.lapicAddr ?? LAPIC_ADDR;
  const serial = options.serial === undefined ? { port: COM1_BASE, irq: COM1_IRQ } : options.serial ?? undefined;
  const overrides = options.overrides ?? [];
  const at = options.at ?? ACPI_TABLES_ADDR;

  check("IOAPIC id", ioapic.id, 0, 0xfe);
  if (ioapic.id < cpus) throw new BootError(`ACPI tables: IOAPIC id ${ioapic.id} is CPU ${ioapic.id}'s APIC id`);
  check("IOAPIC address", ioapic.addr, 1, 0xffff_ffff);
  check("IOAPIC pin count", pins, 1, 240);
  check("IOAPIC GSI base", ioapic.gsiBase, 0, 0xffff_ffff - pins);
  check("local APIC address", lapicAddr, 1, 0xffff_ffff);
  const lastGsi = ioapic.gsiBase + pins - 1;
  const owners = new Map<number, string>();
  const claim = (what: string, irq: number) => {
    check(`${what} IRQ`, irq, ioapic.gsiBase, lastGsi);
    const other = owners.get(irq);
    if (other !== undefined) throw new BootError(`ACPI tables: ${what} and ${other} are both on IRQ ${irq}`);
    owners.set(irq, what);
  };
  if (serial !== undefined) {
    check("UART port", serial.port, 0, 0xffff - 7);
    claim(`UART at ${hex(serial.port)}`, serial.irq);
  }
  virtioMmio.forEach((w, i) => {
    check(`virtio-mmio device ${i} size`, w.size, 1, 0xffff_ffff);
    check(`virtio-mmio device ${i} base`, w.base, 0, 0x1_0000_0000 - w.size);
    claim(`virtio-mmio device ${i} at ${span(w.base, w.size)}`, w.irq);
  });
  for (const o of overrides) {
    check("override ISA IRQ", o.irq, 0, 15);
    check(`override of IRQ ${o.irq}: GSI`, o.gsi, ioapic.gsiBase, lastGsi);
    check(`override of IRQ ${o.irq}: flags`, o.flags, 0, 0xf);
  }
  if (at % 16 !== 0 || at < ACPI_RSDP_SCAN_START || at >= ACPI_RSDP_SCAN_END) {
    throw new BootError(
      `ACPI tables: the RSDP at ${hex(at)} is not 16-byte aligned in ${span(ACPI_RSDP_SCAN_START, 0x20000)}`,
    );
  }

  const dsdt = buildDsdt(dsdtAml({ serial, virtioMmio }));
  const sizes = {
    rsdp: ACPI_STRUCTS.rsdp.size,
    xsdt: ACPI_STRUCTS.header.size + 2 * 8,
    fadt: ACPI_STRUCTS.fadt.size,
    madt: madtSize(cpus, overrides.length),
    dsdt: dsdt.length,
  };
  const rsdpAt = at;
  const xsdtAt = align16(rsdpAt + sizes.rsdp);
  const fadtAt = align16(xsdtAt + sizes.xsdt);
  const madtAt = align16(fadtAt + sizes.fadt);
  const dsdtAt = align16(madtAt + sizes.madt);
  const end = dsdtAt + sizes.dsdt;
  if (end > ACPI_TABLES_END) {
    throw new BootError(
      `ACPI tables for ${cpus} CPUs and ${virtioMmio.length} devices need ${end - at} bytes; ` +
        `${ACPI_TABLES_END - at} fit at ${hex(at)}`,
    );
  }

  const placed: [string, number, Uint8Array][] = [
    ["RSD PTR ", rsdpAt, buildRsdp(xsdtAt)],
    ["XSDT", xsdtAt, buildXsdt([fadtAt, madtAt])],
    ["FACP", fadtAt, buildFadt(dsdtAt)],
    ["APIC", madtAt, buildMadt({ cpus, lapicAddr, ioapic, overrides })],
    ["DSDT", dsdtAt, dsdt],
  ];
  const bytes = new Uint8Array(end - at);
  for (const [, addr, table] of placed) bytes.set(table, addr - at);
  return {
    bytes,
    at,
    rsdpAt,
    tables: placed.map(([signature, addr, table]) => ({ signature, addr, length: table.length })),
  };
}
