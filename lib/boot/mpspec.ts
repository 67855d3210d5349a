/*L:179 The MP table's structures are written down here as data, not as
 * code: each struct's size and, for every member, its offset and width,
 * under the names Linux gives them in asm/mpspec_def.h. The writer fills a
 * member by naming it, and the test compiles the kernel's own header with
 * gcc and compares sizeof and offsetof against this table, so a wrong
 * offset cannot hide in the writer's arithmetic. Everything else in this
 * file is the specification's vocabulary: signatures, entry types,
 * interrupt types and flags, and the versions we claim. :*/

/** One field of a packed C struct: byte offset and width. */
export interface FieldPlace {
  readonly offset: number;
  readonly size: number;
}

/**
 * The MP table's structs, as in Linux's asm/mpspec_def.h: each struct's size
 * and the offset and width of every member, keyed by the C member name. All
 * are packed by construction (no member needs padding) and little-endian.
 */
export const MP_STRUCTS = {
  /** The floating pointer ("_MP_"), found by scanning. */
  mpf_intel: {
    size: 16,
    fields: {
      signature: { offset: 0, size: 4 },
      physptr: { offset: 4, size: 4 },
      length: { offset: 8, size: 1 },
      specification: { offset: 9, size: 1 },
      checksum: { offset: 10, size: 1 },
      feature1: { offset: 11, size: 1 },
      feature2: { offset: 12, size: 1 },
      feature3: { offset: 13, size: 1 },
      feature4: { offset: 14, size: 1 },
      feature5: { offset: 15, size: 1 },
    },
  },
  /** The configuration table header ("PCMP"); entries follow it. */
  mpc_table: {
    size: 44,
    fields: {
      signature: { offset: 0, size: 4 },
      length: { offset: 4, size: 2 },
      spec: { offset: 6, size: 1 },
      checksum: { offset: 7, size: 1 },
      oem: { offset: 8, size: 8 },
      productid: { offset: 16, size: 12 },
      oemptr: { offset: 28, size: 4 },
      oemsize: { offset: 32, size: 2 },
      // The specification calls this the base table's entry count; Linux
      // names it oemcount and walks the entries by `length` instead.
      oemcount: { offset: 34, size: 2 },
      lapic: { offset: 36, size: 4 },
      // Extended table length (u16) and checksum (u8), and a reserved byte.
      reserved: { offset: 40, size: 4 },
    },
  },
  /** Entry type 0: one processor and its local APIC. */
  mpc_cpu: {
    size: 20,
    fields: {
      type: { offset: 0, size: 1 },
      apicid: { offset: 1, size: 1 },
      apicver: { offset: 2, size: 1 },
      cpuflag: { offset: 3, size: 1 },
      cpufeature: { offset: 4, size: 4 },
      featureflag: { offset: 8, size: 4 },
      reserved: { offset: 12, size: 8 },
    },
  },
  /** Entry type 1: a bus, named by a space-padded six-character string. */
  mpc_bus: {
    size: 8,
    fields: {
      type: { offset: 0, size: 1 },
      busid: { offset: 1, size: 1 },
      bustype: { offset: 2, size: 6 },
    },
  },
  /** Entry type 2: an IOAPIC and its MMIO address. */
  mpc_ioapic: {
    size: 8,
    fields: {
      type: { offset: 0, size: 1 },
      apicid: { offset: 1, size: 1 },
      apicver: { offset: 2, size: 1 },
      flags: { offset: 3, size: 1 },
      apicaddr: { offset: 4, size: 4 },
    },
  },
  /** Entry type 3: which IOAPIC pin a bus interrupt is wired to. */
  mpc_intsrc: {
    size: 8,
    fields: {
      type: { offset: 0, size: 1 },
      irqtype: { offset: 1, size: 1 },
      irqflag: { offset: 2, size: 2 },
      srcbus: { offset: 4, size: 1 },
      srcbusirq: { offset: 5, size: 1 },
      dstapic: { offset: 6, size: 1 },
      dstirq: { offset: 7, size: 1 },
    },
  },
  /** Entry type 4: what drives a local APIC's LINT0/LINT1 pins. */
  mpc_lintsrc: {
    size: 8,
    fields: {
      type: { offset: 0, size: 1 },
      irqtype: { offset: 1, size: 1 },
      irqflag: { offset: 2, size: 2 },
      srcbusid: { offset: 4, size: 1 },
      srcbusirq: { offset: 5, size: 1 },
      destapic: { offset: 6, size: 1 },
      destapiclint: { offset: 7, size: 1 },
    },
  },
} as const satisfies Record<string, { size: number; fields: Record<string, FieldPlace> }>;

/** A struct of {@link MP_STRUCTS}, by its C name. */
export type MpStruct = keyof typeof MP_STRUCTS;

/** A member of one {@link MP_STRUCTS} struct, by its C name. */
export type MpField<S extends MpStruct> = keyof (typeof MP_STRUCTS)[S]["fields"] & string;

/** The floating pointer's signature. */
export const MPF_SIGNATURE = "_MP_";
/** The configuration table's signature. */
export const MPC_SIGNATURE = "PCMP";
/** Specification revision 1.4, as both structures spell it. */
export const MP_SPEC_REV = 4;

/** Entry type: processor. */
export const MP_PROCESSOR = 0;
/** Entry type: bus. */
export const MP_BUS = 1;
/** Entry type: IOAPIC. */
export const MP_IOAPIC = 2;
/** Entry type: I/O interrupt assignment. */
export const MP_INTSRC = 3;
/** Entry type: local interrupt assignment. */
export const MP_LINTSRC = 4;

/** Interrupt type: a vectored interrupt (the IOAPIC supplies the vector). */
export const MP_INT = 0;
/** Interrupt type: non-maskable interrupt. */
export const MP_NMI = 1;
/** Interrupt type: system management interrupt. */
export const MP_SMI = 2;
/** Interrupt type: external interrupt (the 8259 supplies the vector). */
export const MP_EXTINT = 3;

/** cpuflag: the processor is usable. */
export const CPU_ENABLED = 1;
/** cpuflag: the processor is the one that boots. */
export const CPU_BOOTPROCESSOR = 2;
/** IOAPIC flags: usable. */
export const MPC_APIC_USABLE = 1;
/** Interrupt flags 0: polarity and trigger "conform to the bus" (ISA: active high, edge). */
export const MP_IRQ_CONFORMS = 0;
/** Destination APIC id meaning "every local APIC". */
export const MP_APIC_ALL = 0xff;

/** Local APIC version we declare: an integrated xAPIC, as KVM emulates. */
export const LAPIC_VERSION = 0x14;
/** IOAPIC version we declare: KVM's IOAPIC reports 0x11. */
export const IOAPIC_VERSION = 0x11;
/** The one bus: ISA, bus id 0, to which every declared IRQ belongs. */
export const ISA_BUS_ID = 0;
/** IOAPIC pins declared when the caller does not say: KVM's IOAPIC has 24. */
export const DEFAULT_IOAPIC_PINS = 24;

/**
 * Where a member lies inside its struct.
 * @param struct the struct's C name
 * @param field the member's C name
 * @returns the member's offset and width
 * @throws Error if the struct has no such member
 */
export function mpField<S extends MpStruct>(struct: S, field: MpField<S>): FieldPlace {
  const fields: Record<string, FieldPlace> = MP_STRUCTS[struct].fields;
  const f = fields[field];
  if (f === undefined) throw new Error(`${struct} has no member ${field}`);
  return f;
}
