/*T:125 Reading the ACPI tables back the way a kernel finds them: scan the
 * BIOS area in 16-byte steps for "RSD PTR " whose first 20 bytes sum to
 * zero, check the 36-byte extended sum, follow the XSDT, check every table's
 * sum, and decode the two tables the kernel reads first, the FADT and the
 * MADT. It is how the tests compare the MADT with the MP table in the same
 * guest memory, and it refuses anything a kernel would refuse, with one line
 * saying what and where. :*/

import type { GuestMemory } from "../../../lib/memory.ts";
import { BootError, hex } from "../../../lib/boot/errors.ts";
import { ACPI_RSDP_SCAN_END, ACPI_RSDP_SCAN_START } from "../../../lib/boot/acpi/layout.ts";
import { ACPI_STRUCTS, type AcpiFieldName, byteSum, get } from "../../../lib/boot/acpi/structs.ts";
import { type InterruptOverride, MADT_LAPIC_ENABLED, MADT_TYPE } from "../../../lib/boot/acpi/tables.ts";

/** A Generic Address Structure, decoded. */
export interface AcpiRegister {
  /** Address space (1: system I/O). */
  readonly space: number;
  /** Register width in bits. */
  readonly bitWidth: number;
  /** Access size (1: byte). */
  readonly accessWidth: number;
  /** Port or address. */
  readonly address: number;
}

/** The FADT fields a hardware-reduced kernel uses. */
export interface AcpiFadt {
  /** Fixed feature flags. */
  readonly flags: number;
  /** IA-PC boot architecture flags. */
  readonly bootFlags: number;
  /** X_DSDT (or DSDT when X_DSDT is 0). */
  readonly dsdt: number;
  /** RESET_REG and RESET_VALUE. */
  readonly reset: AcpiRegister & { readonly value: number };
  /** SLEEP_CONTROL_REG. */
  readonly sleepControl: AcpiRegister;
  /** SLEEP_STATUS_REG. */
  readonly sleepStatus: AcpiRegister;
}

/** The MADT, decoded. */
export interface AcpiMadt {
  /** Local APIC address. */
  readonly lapicAddr: number;
  /** MADT flags (bit 0: PCAT_COMPAT). */
  readonly flags: number;
  /** Local APIC entries, in order. */
  readonly lapics: ReadonlyArray<{ uid: number; apicId: number; enabled: boolean }>;
  /** I/O APIC entries, in order. */
  readonly ioapics: ReadonlyArray<{ id: number; addr: number; gsiBase: number }>;
  /** Interrupt source overrides, in order. */
  readonly overrides: readonly InterruptOverride[];
  /** Local APIC NMI entries, in order. */
  readonly nmis: ReadonlyArray<{ uid: number; flags: number; lint: number }>;
}

/** What {@link readAcpiTables} finds. */
export interface AcpiView {
  /** Address of the RSDP. */
  readonly rsdp: number;
  /** Address of the XSDT. */
  readonly xsdt: number;
  /** Every table the XSDT lists, plus the DSDT: signature to address and length. */
  readonly tables: ReadonlyMap<string, { addr: number; length: number }>;
  /** The FADT. */
  readonly fadt: AcpiFadt;
  /** The MADT. */
  readonly madt: AcpiMadt;
  /** The DSDT's AML (after its header). */
  readonly dsdtAml: Uint8Array;
}

const text = (bytes: Uint8Array) => String.fromCharCode(...bytes);

function table(mem: GuestMemory, addr: number, want: string): Uint8Array {
  const where = `ACPI ${want} at ${hex(addr)}`;
  if (!mem.contains(addr, ACPI_STRUCTS.header.size)) throw new BootError(`${where} is outside RAM`);
  const head = mem.slice(addr, ACPI_STRUCTS.header.size);
  const signature = text(head.subarray(0, 4));
  if (signature !== want) throw new BootError(`${where}: signature "${signature}"`);
  const length = get(head, 0, "header", "length");
  if (length < ACPI_STRUCTS.header.size || !mem.contains(addr, length)) {
    throw new BootError(`${where}: bad length ${length}`);
  }
  const bytes = mem.slice(addr, length);
  const sum = byteSum(bytes, 0, length);
  if (sum !== 0) throw new BootError(`${where}: bad checksum (its bytes sum to ${hex(sum)}, not 0)`);
  return bytes;
}

function register(bytes: Uint8Array, field: AcpiFieldName<"fadt">): AcpiRegister {
  const base = ACPI_STRUCTS.fadt.fields[field as keyof typeof ACPI_STRUCTS.fadt.fields].offset;
  return {
    space: get(bytes, base, "gas", "space_id"),
    bitWidth: get(bytes, base, "gas", "bit_width"),
    accessWidth: get(bytes, base, "gas", "access_width"),
    address: get(bytes, base, "gas", "address"),
  };
}

function decodeFadt(bytes: Uint8Array): AcpiFadt {
  if (bytes.length < ACPI_STRUCTS.fadt.size) throw new BootError(`ACPI FACP: ${bytes.length} bytes, want 276`);
  const g = (field: AcpiFieldName<"fadt">) => get(bytes, 0, "fadt", field);
  return {
    flags: g("flags"),
    bootFlags: g("boot_flags"),
    dsdt: g("Xdsdt") || g("dsdt"),
    reset: { ...register(bytes, "reset_register"), value: g("reset_value") },
    sleepControl: register(bytes, "sleep_control"),
    sleepStatus: register(bytes, "sleep_status"),
  };
}

function decodeMadt(bytes: Uint8Array): AcpiMadt {
  const lapics: Array<AcpiMadt["lapics"][number]> = [];
  const ioapics: Array<AcpiMadt["ioapics"][number]> = [];
  const overrides: InterruptOverride[] = [];
  const nmis: Array<AcpiMadt["nmis"][number]> = [];
  for (let at = ACPI_STRUCTS.madt.size; at < bytes.length;) {
    const type = bytes[at]!;
    const length = bytes[at + 1] ?? 0;
    if (length < 2 || at + length > bytes.length) throw new BootError(`ACPI APIC: bad entry length at offset ${at}`);
    switch (type) {
      case MADT_TYPE.LOCAL_APIC:
        lapics.push({
          uid: get(bytes, at, "madt_local_apic", "processor_id"),
          apicId: get(bytes, at, "madt_local_apic", "id"),
          enabled: (get(bytes, at, "madt_local_apic", "lapic_flags") & MADT_LAPIC_ENABLED) !== 0,
        });
        break;
      case MADT_TYPE.IO_APIC:
        ioapics.push({
          id: get(bytes, at, "madt_io_apic", "id"),
          addr: get(bytes, at, "madt_io_apic", "address"),
          gsiBase: get(bytes, at, "madt_io_apic", "global_irq_base"),
        });
        break;
      case MADT_TYPE.INTERRUPT_OVERRIDE:
        overrides.push({
          irq: get(bytes, at, "madt_interrupt_override", "source_irq"),
          gsi: get(bytes, at, "madt_interrupt_override", "global_irq"),
          flags: get(bytes, at, "madt_interrupt_override", "inti_flags"),
        });
        break;
      case MADT_TYPE.LOCAL_APIC_NMI:
        nmis.push({
          uid: get(bytes, at, "madt_local_apic_nmi", "processor_id"),
          flags: get(bytes, at, "madt_local_apic_nmi", "inti_flags"),
          lint: get(bytes, at, "madt_local_apic_nmi", "lint"),
        });
        break;
      default:
        throw new BootError(`ACPI APIC: unexpected entry type ${type} at offset ${at}`);
    }
    at += length;
  }
  return {
    lapicAddr: get(bytes, 0, "madt", "address"),
    flags: get(bytes, 0, "madt", "flags"),
    lapics,
    ioapics,
    overrides,
    nmis,
  };
}

/**
 * Finds the RSDP by scanning guest memory and decodes the tables behind it.
 * @param mem guest memory holding tables from buildAcpiTables
 * @returns the tables' places, the FADT and MADT decoded, the DSDT's AML
 * @throws BootError on no RSDP, a bad checksum, a missing FADT or MADT, or
 *   a malformed MADT entry
 */
export function readAcpiTables(mem: GuestMemory): AcpiView {
  const size = ACPI_STRUCTS.rsdp.size;
  let rsdp = -1;
  for (let a = ACPI_RSDP_SCAN_START; a + size <= ACPI_RSDP_SCAN_END; a += 16) {
    const head = mem.slice(a, 20);
    if (text(head.subarray(0, 8)) === "RSD PTR " && byteSum(head, 0, 20) === 0) {
      rsdp = a;
      break;
    }
  }
  if (rsdp < 0) throw new BootError(`no ACPI RSDP in ${hex(ACPI_RSDP_SCAN_START)}..${hex(ACPI_RSDP_SCAN_END)}`);
  const r = mem.slice(rsdp, size);
  const revision = get(r, 0, "rsdp", "revision");
  const length = get(r, 0, "rsdp", "length");
  if (revision < 2 || length !== size || byteSum(r, 0, size) !== 0) {
    throw new BootError(
      `ACPI RSDP at ${hex(rsdp)}: revision ${revision}, length ${length}, or a bad extended checksum`,
    );
  }
  const xsdt = get(r, 0, "rsdp", "xsdt_physical_address");
  const x = table(mem, xsdt, "XSDT");
  const tables = new Map<string, { addr: number; length: number }>();
  const view = new DataView(x.buffer, x.byteOffset, x.byteLength);
  for (let at = ACPI_STRUCTS.header.size; at + 8 <= x.length; at += 8) {
    const addr = Number(view.getBigUint64(at, true));
    const head = mem.slice(addr, 8);
    tables.set(text(head.subarray(0, 4)), { addr, length: get(head, 0, "header", "length") });
  }
  const place = (signature: string) => {
    const p = tables.get(signature);
    if (p === undefined) throw new BootError(`ACPI XSDT at ${hex(xsdt)} lists no ${signature}`);
    return table(mem, p.addr, signature);
  };
  const fadt = decodeFadt(place("FACP"));
  const madt = decodeMadt(place("APIC"));
  const dsdt = table(mem, fadt.dsdt, "DSDT");
  tables.set("DSDT", { addr: fadt.dsdt, length: dsdt.length });
  return { rsdp, xsdt, tables, fadt, madt, dsdtAml: dsdt.subarray(ACPI_STRUCTS.header.size) };
}
