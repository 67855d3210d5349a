/*L:183 The fixed tables, one builder each. The RSDP is the entry point
 * and points at the XSDT, a list of 64-bit table addresses; we list two
 * tables there. The FADT ("FACP") describes the platform's fixed hardware,
 * and ours says there is none: the HW_REDUCED_ACPI flag tells the kernel
 * there is no PM timer, no PM1 event or control block, no GPE block, no SCI
 * and no legacy ACPI mode to switch into, which is the truth for a machine
 * whose only devices are a UART, an i8042 and virtio-mmio windows (Linux
 * then also stops expecting the 8259 PIC and the PIT, and runs on the local
 * APIC timer). What a reduced FADT still carries is what we use: the DSDT's
 * address, the sleep registers for power-off and the reset register.
 *
 * The MADT ("APIC") is ACPI's answer to the MP table's processor and IOAPIC
 * entries, and must tell the same story: one enabled local APIC per vCPU
 * with APIC id = vCPU index, the IOAPIC with the same id and address, and
 * NMI on every CPU's LINT1. Where the MP table lists each ISA IRQ's pin,
 * ACPI assumes ISA IRQ n arrives at GSI n and lists only the exceptions, as
 * interrupt source overrides. With KVM's default routing there are none:
 * the launcher never calls KVM_SET_GSI_ROUTING, so GSI n is IOAPIC pin n
 * and the in-kernel PIT's IRQ 0 arrives on pin 0 (writeMpTable says so at
 * length), unlike QEMU, which reroutes GSI 0 to pin 2 and declares that in
 * an override. The builder takes overrides anyway, for the day the launcher
 * installs a routing of its own; the MP table must then change with it. :*/

import { I8042_COMMAND_PORT } from "../../devices/i8042.ts";
import { ACPI_SLEEP_CONTROL_PORT, ACPI_SLEEP_STATUS_PORT } from "./layout.ts";
import { ACPI_STRUCTS, type AcpiFieldName, type AcpiStructName, checksumByte, put } from "./structs.ts";

/** The OEM id in every table ("LGUEST", as in the MP table). */
export const ACPI_OEM_ID = "LGUEST";
/** The creator id in every table header. */
export const ACPI_CREATOR_ID = "LGST";
/** The creator revision in every table header. */
export const ACPI_CREATOR_REVISION = 1;
/** The FADT's hypervisor vendor identity. */
export const ACPI_HYPERVISOR_ID = "LGUESTVM";

/** FADT flags (ACPI 6.3, table 5-34) that we set. */
export const FADT_FLAG = {
  /** No fixed-feature power button (a control-method one, or none). */
  PWR_BUTTON: 1 << 4,
  /** No fixed-feature sleep button. */
  SLP_BUTTON: 1 << 5,
  /** The reset register is valid. */
  RESET_REG_SUP: 1 << 10,
  /** Hardware-reduced ACPI: no fixed ACPI hardware at all. */
  HW_REDUCED_ACPI: 1 << 20,
} as const;

/** FADT IA-PC boot architecture flags (ACPI 6.3, table 5-35) that we set. */
export const FADT_BOOT_FLAG = {
  /** No VGA: the kernel must not poke the VGA ports or memory. */
  VGA_NOT_PRESENT: 1 << 2,
  /** No CMOS RTC at ports 0x70/0x71. */
  CMOS_RTC_NOT_PRESENT: 1 << 5,
} as const;

/** Generic Address Structure address space: system I/O ports. */
export const GAS_SYSTEM_IO = 1;
/** Generic Address Structure access size: byte. */
export const GAS_ACCESS_BYTE = 1;

/** MADT flags: the machine also has a dual 8259 PIC (KVM's in-kernel one). */
export const MADT_PCAT_COMPAT = 1;
/** MADT local APIC flags: the processor is enabled. */
export const MADT_LAPIC_ENABLED = 1;
/** MADT entry types. */
export const MADT_TYPE = { LOCAL_APIC: 0, IO_APIC: 1, INTERRUPT_OVERRIDE: 2, LOCAL_APIC_NMI: 4 } as const;
/** MADT processor UID meaning "every processor". */
export const MADT_ALL_PROCESSORS = 0xff;
/** MPS INTI flags: polarity and trigger of an override or NMI (0 conforms to the bus). */
export const MPS_INTI = {
  ACTIVE_HIGH: 1,
  ACTIVE_LOW: 3,
  EDGE: 1 << 2,
  LEVEL: 3 << 2,
} as const;

/** Table revisions we write (ACPI 6.3). */
export const ACPI_REVISION = { RSDP: 2, XSDT: 1, FADT: 6, FADT_MINOR: 3, MADT: 5, DSDT: 2 } as const;

function header(bytes: Uint8Array, signature: string, revision: number): void {
  const h = (field: AcpiFieldName<"header">, value: number | string) => put(bytes, 0, "header", field, value);
  h("signature", signature);
  h("length", bytes.length);
  h("revision", revision);
  h("oem_id", ACPI_OEM_ID);
  h("oem_table_id", `LGVM${signature}`);
  h("oem_revision", 1);
  h("asl_compiler_id", ACPI_CREATOR_ID);
  h("asl_compiler_revision", ACPI_CREATOR_REVISION);
}

function seal(bytes: Uint8Array): Uint8Array {
  const at = ACPI_STRUCTS.header.fields.checksum.offset;
  bytes[at] = 0;
  bytes[at] = checksumByte(bytes, 0, bytes.length);
  return bytes;
}

/**
 * The RSDP, revision 2: OEM id, the XSDT's address (no RSDT), and both
 * checksums.
 * @param xsdtAddr guest physical address of the XSDT
 */
export function buildRsdp(xsdtAddr: number): Uint8Array {
  const bytes = new Uint8Array(ACPI_STRUCTS.rsdp.size);
  const r = (field: AcpiFieldName<"rsdp">, value: number | string) => put(bytes, 0, "rsdp", field, value);
  r("signature", "RSD PTR ");
  r("oem_id", ACPI_OEM_ID);
  r("revision", ACPI_REVISION.RSDP);
  r("length", bytes.length);
  r("xsdt_physical_address", xsdtAddr);
  r("checksum", checksumByte(bytes, 0, 20));
  r("extended_checksum", checksumByte(bytes, 0, bytes.length));
  return bytes;
}

/**
 * The XSDT: the header, then one 64-bit address per table.
 * @param tables guest physical addresses of the tables it lists
 */
export function buildXsdt(tables: readonly number[]): Uint8Array {
  const base = ACPI_STRUCTS.header.size;
  const bytes = new Uint8Array(base + 8 * tables.length);
  header(bytes, "XSDT", ACPI_REVISION.XSDT);
  const view = new DataView(bytes.buffer);
  tables.forEach((addr, i) => view.setBigUint64(base + 8 * i, BigInt(addr), true));
  return seal(bytes);
}

function gas(bytes: Uint8Array, field: AcpiFieldName<"fadt">, port: number): void {
  const base = ACPI_STRUCTS.fadt.fields[field as keyof typeof ACPI_STRUCTS.fadt.fields].offset;
  put(bytes, base, "gas", "space_id", GAS_SYSTEM_IO);
  put(bytes, base, "gas", "bit_width", 8);
  put(bytes, base, "gas", "bit_offset", 0);
  put(bytes, base, "gas", "access_width", GAS_ACCESS_BYTE);
  put(bytes, base, "gas", "address", port);
}

/**
 * The FADT, revision 6.3, hardware-reduced: the DSDT's address (64-bit
 * field only), the sleep control/status registers, the reset register
 * (the i8042 command port, value 0xfe), no VGA, no CMOS RTC.
 * @param dsdtAddr guest physical address of the DSDT
 */
export function buildFadt(dsdtAddr: number): Uint8Array {
  const bytes = new Uint8Array(ACPI_STRUCTS.fadt.size);
  header(bytes, "FACP", ACPI_REVISION.FADT);
  const p = (field: AcpiFieldName<"fadt">, value: number | string) => put(bytes, 0, "fadt", field, value);
  p("flags", FADT_FLAG.HW_REDUCED_ACPI | FADT_FLAG.RESET_REG_SUP | FADT_FLAG.PWR_BUTTON | FADT_FLAG.SLP_BUTTON);
  p("boot_flags", FADT_BOOT_FLAG.VGA_NOT_PRESENT | FADT_BOOT_FLAG.CMOS_RTC_NOT_PRESENT);
  p("minor_revision", ACPI_REVISION.FADT_MINOR);
  p("Xdsdt", dsdtAddr);
  gas(bytes, "reset_register", I8042_COMMAND_PORT);
  p("reset_value", 0xfe);
  gas(bytes, "sleep_control", ACPI_SLEEP_CONTROL_PORT);
  gas(bytes, "sleep_status", ACPI_SLEEP_STATUS_PORT);
  p("hypervisor_id", ACPI_HYPERVISOR_ID);
  return seal(bytes);
}

/** An ISA IRQ that reaches the IOAPIC somewhere other than GSI = IRQ. */
export interface InterruptOverride {
  /** The ISA IRQ (0-15). */
  readonly irq: number;
  /** The global system interrupt it arrives on. */
  readonly gsi: number;
  /** {@link MPS_INTI} polarity | trigger; 0 conforms to ISA (active high, edge). */
  readonly flags: number;
}

/** What the MADT describes. */
export interface MadtOptions {
  /** vCPUs: local APIC ids and processor UIDs 0..cpus-1, all enabled. */
  readonly cpus: number;
  /** The local APIC's MMIO address. */
  readonly lapicAddr: number;
  /** The IOAPIC: its APIC id, MMIO address, and first GSI. */
  readonly ioapic: { readonly id: number; readonly addr: number; readonly gsiBase: number };
  /** Interrupt source overrides, in order. */
  readonly overrides: readonly InterruptOverride[];
}

function entry<S extends AcpiStructName>(
  bytes: Uint8Array,
  at: number,
  s: S,
  type: number,
  fields: Partial<Record<AcpiFieldName<S>, number>>,
): number {
  put(bytes, at, s, "type" as AcpiFieldName<S>, type);
  put(bytes, at, s, "length" as AcpiFieldName<S>, ACPI_STRUCTS[s].size);
  for (const [k, v] of Object.entries(fields) as [AcpiFieldName<S>, number][]) put(bytes, at, s, k, v);
  return at + ACPI_STRUCTS[s].size;
}

/** The MADT's size for `cpus` vCPUs and `overrides` overrides. */
export function madtSize(cpus: number, overrides: number): number {
  const S = ACPI_STRUCTS;
  return S.madt.size + cpus * S.madt_local_apic.size + S.madt_io_apic.size +
    overrides * S.madt_interrupt_override.size + S.madt_local_apic_nmi.size;
}

/**
 * The MADT: the local APIC address, PCAT_COMPAT, then one local APIC per
 * vCPU, the IOAPIC, the overrides and LINT1 = NMI on every CPU (entries in
 * that order, as the specification lists the types).
 */
export function buildMadt(options: MadtOptions): Uint8Array {
  const { cpus, ioapic, overrides } = options;
  const bytes = new Uint8Array(madtSize(cpus, overrides.length));
  header(bytes, "APIC", ACPI_REVISION.MADT);
  put(bytes, 0, "madt", "address", options.lapicAddr);
  put(bytes, 0, "madt", "flags", MADT_PCAT_COMPAT);
  let at: number = ACPI_STRUCTS.madt.size;
  for (let id = 0; id < cpus; id++) {
    at = entry(bytes, at, "madt_local_apic", MADT_TYPE.LOCAL_APIC, {
      processor_id: id,
      id,
      lapic_flags: MADT_LAPIC_ENABLED,
    });
  }
  at = entry(bytes, at, "madt_io_apic", MADT_TYPE.IO_APIC, {
    id: ioapic.id,
    address: ioapic.addr,
    global_irq_base: ioapic.gsiBase,
  });
  for (const o of overrides) {
    at = entry(bytes, at, "madt_interrupt_override", MADT_TYPE.INTERRUPT_OVERRIDE, {
      bus: 0,
      source_irq: o.irq,
      global_irq: o.gsi,
      inti_flags: o.flags,
    });
  }
  at = entry(bytes, at, "madt_local_apic_nmi", MADT_TYPE.LOCAL_APIC_NMI, {
    processor_id: MADT_ALL_PROCESSORS,
    inti_flags: 0,
    lint: 1,
  });
  if (at !== bytes.length) throw new Error("MADT size does not add up");
  return seal(bytes);
}

/**
 * The DSDT: the header around a body of AML (see dsdt.ts), revision 2 so
 * integers are 64-bit.
 * @param aml the definition block's term list
 */
export function buildDsdt(aml: Uint8Array): Uint8Array {
  const bytes = new Uint8Array(ACPI_STRUCTS.header.size + aml.length);
  bytes.set(aml, ACPI_STRUCTS.header.size);
  header(bytes, "DSDT", ACPI_REVISION.DSDT);
  return seal(bytes);
}
