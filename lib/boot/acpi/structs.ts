/*L:182 ACPI's fixed tables are packed little-endian C structs, written
 * down here once as data: each struct's size and the offset and width of
 * every member, keyed by the member's name in ACPICA's headers (actbl.h,
 * actbl1.h), which is what Linux compiles. The offsets are the ACPI 6.3
 * specification's; the tests check them byte by byte against offsets
 * written out by hand, and against iasl, which decodes every field with
 * offset tables of its own. Every table but the RSDP begins with the same
 * 36-byte header, whose checksum byte makes the whole table sum to 0 mod
 * 256; the RSDP has two sums, one over the 20 bytes ACPI 1.0 knew and one
 * over all 36. :*/

/** One struct member: byte offset and width. */
export interface AcpiField {
  /** Byte offset from the start of the struct. */
  readonly offset: number;
  /** Width in bytes. */
  readonly size: number;
}

/** A packed struct: its size and members by ACPICA name. */
export interface AcpiStruct {
  /** sizeof() the struct. */
  readonly size: number;
  /** Members by name. */
  readonly fields: Readonly<Record<string, AcpiField>>;
}

function f(offset: number, size: number): AcpiField {
  return { offset, size };
}

/** The common header of every system description table. */
const HEADER = {
  signature: f(0, 4),
  length: f(4, 4),
  revision: f(8, 1),
  checksum: f(9, 1),
  oem_id: f(10, 6),
  oem_table_id: f(16, 8),
  oem_revision: f(24, 4),
  asl_compiler_id: f(28, 4),
  asl_compiler_revision: f(32, 4),
} as const;

/** The ACPI structs we write. */
export const ACPI_STRUCTS = {
  /** Root System Description Pointer, revision 2 (struct acpi_table_rsdp). */
  rsdp: {
    size: 36,
    fields: {
      signature: f(0, 8),
      checksum: f(8, 1),
      oem_id: f(9, 6),
      revision: f(15, 1),
      rsdt_physical_address: f(16, 4),
      length: f(20, 4),
      xsdt_physical_address: f(24, 8),
      extended_checksum: f(32, 1),
      reserved: f(33, 3),
    },
  },
  /** The common table header (struct acpi_table_header). */
  header: { size: 36, fields: HEADER },
  /** Generic Address Structure (struct acpi_generic_address). */
  gas: {
    size: 12,
    fields: { space_id: f(0, 1), bit_width: f(1, 1), bit_offset: f(2, 1), access_width: f(3, 1), address: f(4, 8) },
  },
  /** Fixed ACPI Description Table, revision 6 (struct acpi_table_fadt). */
  fadt: {
    size: 276,
    fields: {
      ...HEADER,
      facs: f(36, 4),
      dsdt: f(40, 4),
      model: f(44, 1),
      preferred_profile: f(45, 1),
      sci_interrupt: f(46, 2),
      smi_command: f(48, 4),
      acpi_enable: f(52, 1),
      acpi_disable: f(53, 1),
      s4_bios_request: f(54, 1),
      pstate_control: f(55, 1),
      pm1a_event_block: f(56, 4),
      pm1b_event_block: f(60, 4),
      pm1a_control_block: f(64, 4),
      pm1b_control_block: f(68, 4),
      pm2_control_block: f(72, 4),
      pm_timer_block: f(76, 4),
      gpe0_block: f(80, 4),
      gpe1_block: f(84, 4),
      pm1_event_length: f(88, 1),
      pm1_control_length: f(89, 1),
      pm2_control_length: f(90, 1),
      pm_timer_length: f(91, 1),
      gpe0_block_length: f(92, 1),
      gpe1_block_length: f(93, 1),
      gpe1_base: f(94, 1),
      cst_control: f(95, 1),
      c2_latency: f(96, 2),
      c3_latency: f(98, 2),
      flush_size: f(100, 2),
      flush_stride: f(102, 2),
      duty_offset: f(104, 1),
      duty_width: f(105, 1),
      day_alarm: f(106, 1),
      month_alarm: f(107, 1),
      century: f(108, 1),
      boot_flags: f(109, 2),
      reserved: f(111, 1),
      flags: f(112, 4),
      reset_register: f(116, 12),
      reset_value: f(128, 1),
      arm_boot_flags: f(129, 2),
      minor_revision: f(131, 1),
      Xfacs: f(132, 8),
      Xdsdt: f(140, 8),
      xpm1a_event_block: f(148, 12),
      xpm1b_event_block: f(160, 12),
      xpm1a_control_block: f(172, 12),
      xpm1b_control_block: f(184, 12),
      xpm2_control_block: f(196, 12),
      xpm_timer_block: f(208, 12),
      xgpe0_block: f(220, 12),
      xgpe1_block: f(232, 12),
      sleep_control: f(244, 12),
      sleep_status: f(256, 12),
      hypervisor_id: f(268, 8),
    },
  },
  /** Multiple APIC Description Table, before its entries (struct acpi_table_madt). */
  madt: { size: 44, fields: { ...HEADER, address: f(36, 4), flags: f(40, 4) } },
  /** MADT entry type 0: one processor's local APIC (struct acpi_madt_local_apic). */
  madt_local_apic: {
    size: 8,
    fields: { type: f(0, 1), length: f(1, 1), processor_id: f(2, 1), id: f(3, 1), lapic_flags: f(4, 4) },
  },
  /** MADT entry type 1: an I/O APIC (struct acpi_madt_io_apic). */
  madt_io_apic: {
    size: 12,
    fields: {
      type: f(0, 1),
      length: f(1, 1),
      id: f(2, 1),
      reserved: f(3, 1),
      address: f(4, 4),
      global_irq_base: f(8, 4),
    },
  },
  /** MADT entry type 2: an ISA IRQ that is not GSI n (struct acpi_madt_interrupt_override). */
  madt_interrupt_override: {
    size: 10,
    fields: {
      type: f(0, 1),
      length: f(1, 1),
      bus: f(2, 1),
      source_irq: f(3, 1),
      global_irq: f(4, 4),
      inti_flags: f(8, 2),
    },
  },
  /** MADT entry type 4: which LINT pin carries NMI (struct acpi_madt_local_apic_nmi). */
  madt_local_apic_nmi: {
    size: 6,
    fields: { type: f(0, 1), length: f(1, 1), processor_id: f(2, 1), inti_flags: f(3, 2), lint: f(5, 1) },
  },
} as const satisfies Record<string, AcpiStruct>;

/** Any struct of {@link ACPI_STRUCTS}. */
export type AcpiStructName = keyof typeof ACPI_STRUCTS;

/** A member of struct `S`. */
export type AcpiFieldName<S extends AcpiStructName> = keyof (typeof ACPI_STRUCTS)[S]["fields"] & string;

/**
 * Writes one member of struct `s` placed at `base` in `bytes`.
 * Integers are little-endian and must fit the member (1, 2, 4 or 8 bytes);
 * a string fills the member exactly, padded with spaces when shorter.
 * @throws RangeError if the value does not fit the member
 */
export function put<S extends AcpiStructName>(
  bytes: Uint8Array,
  base: number,
  s: S,
  field: AcpiFieldName<S>,
  value: number | bigint | string,
): void {
  const { offset, size } = (ACPI_STRUCTS[s].fields as Record<string, AcpiField>)[field]!;
  const at = base + offset;
  if (typeof value === "string") {
    if (value.length > size || !/^[\x20-\x7e]*$/.test(value)) {
      throw new RangeError(`ACPI ${s}.${field}: "${value}" does not fit ${size} ASCII bytes`);
    }
    bytes.set(new TextEncoder().encode(value.padEnd(size, " ")), at);
    return;
  }
  const v = BigInt(value);
  if (size > 8 || v < 0n || v >= 1n << BigInt(8 * size)) {
    throw new RangeError(`ACPI ${s}.${field}: ${value} does not fit ${size} bytes`);
  }
  for (let i = 0; i < size; i++) bytes[at + i] = Number((v >> BigInt(8 * i)) & 0xffn);
}

/** Reads one little-endian integer member of struct `s` placed at `base`. */
export function get<S extends AcpiStructName>(bytes: Uint8Array, base: number, s: S, field: AcpiFieldName<S>): number {
  const { offset, size } = (ACPI_STRUCTS[s].fields as Record<string, AcpiField>)[field]!;
  let v = 0;
  for (let i = size - 1; i >= 0; i--) v = v * 256 + (bytes[base + offset + i] ?? 0);
  return v;
}

/** The byte that makes `bytes[from, from+length)` sum to 0 mod 256 when stored in a zeroed checksum slot inside it. */
export function checksumByte(bytes: Uint8Array, from: number, length: number): number {
  let sum = 0;
  for (let i = from; i < from + length; i++) sum += bytes[i]!;
  return (0x100 - (sum & 0xff)) & 0xff;
}

/** The sum mod 256 of `bytes[from, from+length)`: 0 for a sealed table. */
export function byteSum(bytes: Uint8Array, from: number, length: number): number {
  let sum = 0;
  for (let i = from; i < from + length; i++) sum += bytes[i]!;
  return sum & 0xff;
}
