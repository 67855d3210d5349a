/*L:178 A kernel booted without ACPI still has to find out what interrupt
 * hardware it is sitting on, and the older answer is the table from Intel's
 * MultiProcessor Specification (1.4). Linux reads it when built with
 * CONFIG_X86_MPPARSE, and it is our only way to say three things: how many
 * CPUs there are and which local APIC id each one answers to, that an IOAPIC
 * lives at 0xfec00000, and which IOAPIC pin each bus interrupt arrives on.
 * Without it the kernel believes it runs on a lone CPU with nothing but the
 * two 8259 PICs: sixteen lines, none of them above 15, so the virtio-mmio
 * devices we put on IRQs 5..23 would be unreachable or, worse, silently
 * routed the wrong way.
 *
 * The table comes in two parts. The 16-byte "floating pointer" is the part
 * the kernel hunts for: it walks the last KiB of base memory (and the BIOS
 * ROM) in 16-byte steps, looking for "_MP_" whose bytes sum to zero. Its one
 * useful field points at the configuration table: a 44-byte "PCMP" header
 * followed by entries of two sizes, processors first, then buses, IOAPICs,
 * the I/O interrupt assignments and the local interrupt assignments, in the
 * order the specification lists them. Every structure carries a checksum
 * byte chosen so that its bytes sum to 0 mod 256; the kernel discards a
 * table that fails the sum, so our decoder refuses one too. Both parts go in
 * the kilobyte at 0x9fc00, which the e820 map already reports as reserved,
 * so the kernel reads it but never hands the memory out. :*/

import type { GuestMemory } from "../memory.ts";
import { BootError, hex } from "./errors.ts";
import { IOAPIC_ADDR, LAPIC_ADDR, MPTABLE_ADDR, MPTABLE_END } from "./layout.ts";

/** One field of a packed C struct: byte offset and width. */
interface FieldPlace {
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

// CPU signature (family 6, model 0, stepping 0) and CPUID.1:EDX flags (FPU,
// APIC). Linux only prints these; the CPUs describe themselves through CPUID.
const CPU_SIGNATURE = 0x600;
const CPU_FEATURES = (1 << 0) | (1 << 9);
const OEM_ID = "LGUEST  ";
const PRODUCT_ID = "DENO KVM    ";
const BUS_TYPE_ISA = "ISA   ";

const MPF = MP_STRUCTS.mpf_intel;
const MPC = MP_STRUCTS.mpc_table;

function place<S extends MpStruct>(struct: S, field: MpField<S>): FieldPlace {
  const fields: Record<string, FieldPlace> = MP_STRUCTS[struct].fields;
  const f = fields[field];
  if (f === undefined) throw new Error(`${struct} has no member ${field}`);
  return f;
}

/** Writes one member of a struct at `base`: an integer little-endian, a string as ASCII. */
function put<S extends MpStruct>(
  mem: GuestMemory,
  base: number,
  struct: S,
  field: MpField<S>,
  value: number | string,
): void {
  const { offset, size } = place(struct, field);
  const at = base + offset;
  if (typeof value === "string") {
    if (value.length !== size) throw new Error(`${struct}.${field} needs ${size} characters, got "${value}"`);
    mem.write(at, new TextEncoder().encode(value), `${struct}.${field}`);
    return;
  }
  switch (size) {
    case 1:
      mem.writeU8(at, value);
      break;
    case 2:
      mem.writeU16(at, value);
      break;
    case 4:
      mem.writeU32(at, value >>> 0);
      break;
    default:
      throw new Error(`${struct}.${field} is ${size} bytes, not an integer`);
  }
}

/** Reads one integer member of a struct at `base`. */
function get<S extends MpStruct>(mem: GuestMemory, base: number, struct: S, field: MpField<S>): number {
  const { offset, size } = place(struct, field);
  const at = base + offset;
  switch (size) {
    case 1:
      return mem.readU8(at);
    case 2:
      return mem.readU16(at);
    case 4:
      return mem.readU32(at);
    default:
      throw new Error(`${struct}.${field} is ${size} bytes, not an integer`);
  }
}

/** Reads one character-array member of a struct at `base`. */
function text<S extends MpStruct>(mem: GuestMemory, base: number, struct: S, field: MpField<S>): string {
  const { offset, size } = place(struct, field);
  return String.fromCharCode(...mem.slice(base + offset, size));
}

/** The byte sum of a guest range, mod 256 (0 for a well-formed structure). */
function byteSum(mem: GuestMemory, addr: number, length: number): number {
  let sum = 0;
  for (const b of mem.slice(addr, length, "MP table")) sum += b;
  return sum & 0xff;
}

/** Sets a structure's checksum byte so that its bytes sum to 0 mod 256. */
function seal(mem: GuestMemory, addr: number, length: number, checksumAt: number): void {
  mem.writeU8(checksumAt, 0);
  mem.writeU8(checksumAt, (0x100 - byteSum(mem, addr, length)) & 0xff);
}

/** Options for {@link writeMpTable}. */
export interface MpTableOptions {
  /** Number of vCPUs; their local APIC ids are 0..cpus-1 and CPU 0 boots. */
  cpus: number;
  /** The IOAPIC's APIC id (default: `cpus`, the first id after the CPUs'). */
  ioapicId?: number;
  /** The IOAPIC's MMIO address (default {@link IOAPIC_ADDR}). */
  ioapicAddr?: number;
  /** IOAPIC pins to declare, ISA IRQ n on pin n (default {@link DEFAULT_IOAPIC_PINS}). */
  irqs?: number;
}

/** Bytes the floating pointer plus configuration table take for `cpus` CPUs and `irqs` pins. */
export function mpTableSize(cpus: number, irqs: number = DEFAULT_IOAPIC_PINS): number {
  const S = MP_STRUCTS;
  return S.mpf_intel.size + S.mpc_table.size + cpus * S.mpc_cpu.size + S.mpc_bus.size + S.mpc_ioapic.size +
    irqs * S.mpc_intsrc.size + 2 * S.mpc_lintsrc.size;
}

function checkByte(what: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new BootError(`MP table: ${what} ${value} is out of range (${min}..${max})`);
  }
}

/**
 * Writes the MP floating pointer and configuration table at
 * {@link MPTABLE_ADDR}: one processor entry per vCPU, the ISA bus, one
 * IOAPIC, ISA IRQ n on IOAPIC pin n for every declared pin, and the PC's
 * wiring of LINT0 (ExtINT) and LINT1 (NMI).
 * @param mem guest memory; the table's kilobyte must be RAM
 * @param options CPU count and IOAPIC details
 * @returns where the table starts (the floating pointer) and how many bytes it takes
 * @throws BootError if an option is out of range or the table would not fit below {@link MPTABLE_END}
 */
export function writeMpTable(mem: GuestMemory, options: MpTableOptions): { addr: number; size: number } {
  const { cpus } = options;
  const irqs = options.irqs ?? DEFAULT_IOAPIC_PINS;
  const ioapicId = options.ioapicId ?? cpus;
  const ioapicAddr = options.ioapicAddr ?? IOAPIC_ADDR;
  // APIC ids are a byte and 0xff means "all", so 254 CPUs plus the IOAPIC
  // is the most ids there are; the kilobyte runs out well before that.
  checkByte("CPU count", cpus, 1, 0xfe);
  checkByte("IOAPIC pin count", irqs, 1, 0x100);
  checkByte("IOAPIC id", ioapicId, 0, 0xfe);
  if (ioapicId < cpus) {
    throw new BootError(`MP table: IOAPIC id ${ioapicId} is already the local APIC id of CPU ${ioapicId}`);
  }
  if (!Number.isInteger(ioapicAddr) || ioapicAddr <= 0 || ioapicAddr > 0xffff_ffff) {
    throw new BootError(`MP table: IOAPIC address ${hex(ioapicAddr)} is not a 32-bit address`);
  }
  const addr = MPTABLE_ADDR;
  const size = mpTableSize(cpus, irqs);
  if (addr + size > MPTABLE_END) {
    const room = MPTABLE_END - addr;
    throw new BootError(`MP table for ${cpus} CPUs and ${irqs} IRQs needs ${size} bytes; ${room} fit at ${hex(addr)}`);
  }
  mem.fill(addr, size, 0, "MP table");

  const table = addr + MPF.size;
  let at = table + MPC.size;
  let entries = 0;
  const entry = (struct: Exclude<MpStruct, "mpf_intel" | "mpc_table">, type: number): number => {
    const base = at;
    mem.writeU8(base + place(struct, "type").offset, type);
    at += MP_STRUCTS[struct].size;
    entries++;
    return base;
  };

  for (let id = 0; id < cpus; id++) {
    const e = entry("mpc_cpu", MP_PROCESSOR);
    put(mem, e, "mpc_cpu", "apicid", id);
    put(mem, e, "mpc_cpu", "apicver", LAPIC_VERSION);
    put(mem, e, "mpc_cpu", "cpuflag", CPU_ENABLED | (id === 0 ? CPU_BOOTPROCESSOR : 0));
    put(mem, e, "mpc_cpu", "cpufeature", CPU_SIGNATURE);
    put(mem, e, "mpc_cpu", "featureflag", CPU_FEATURES);
  }

  const bus = entry("mpc_bus", MP_BUS);
  put(mem, bus, "mpc_bus", "busid", ISA_BUS_ID);
  put(mem, bus, "mpc_bus", "bustype", BUS_TYPE_ISA);

  const io = entry("mpc_ioapic", MP_IOAPIC);
  put(mem, io, "mpc_ioapic", "apicid", ioapicId);
  put(mem, io, "mpc_ioapic", "apicver", IOAPIC_VERSION);
  put(mem, io, "mpc_ioapic", "flags", MPC_APIC_USABLE);
  put(mem, io, "mpc_ioapic", "apicaddr", ioapicAddr);

  // ISA IRQ n goes to IOAPIC pin n, IRQ 0 included. Real chipsets put the
  // 8259's output on pin 0 and the timer on pin 2, which is why ACPI tables
  // carry an "IRQ 0 is GSI 2" override and why mpparse.c's built-in default
  // table (used only when a BIOS lists no interrupts) sends IRQ 0 to INTIN2.
  // What matters here is where KVM delivers the in-kernel PIT: the launcher
  // keeps KVM's default GSI routing (it never calls KVM_SET_GSI_ROUTING),
  // which sends GSI n to IOAPIC pin n, so the PIT's GSI 0 arrives on pin 0.
  // Linux's check_timer() asks this table which pin carries ISA IRQ 0 and
  // tests the timer there, so the table has to say pin 0. Firecracker keeps
  // the default routing and declares the same; QEMU and Dragonball reroute
  // GSI 0 to pin 2 and declare pin 2. (On a CPU with the TSC-deadline timer
  // Linux 6.1 registers no PIT clock event and skips check_timer() entirely;
  // the pin still matters for any kernel that does use the PIT.) If the
  // launcher ever installs its own routing, this loop must follow it.
  for (let irq = 0; irq < irqs; irq++) {
    const e = entry("mpc_intsrc", MP_INTSRC);
    put(mem, e, "mpc_intsrc", "irqtype", MP_INT);
    put(mem, e, "mpc_intsrc", "irqflag", MP_IRQ_CONFORMS);
    put(mem, e, "mpc_intsrc", "srcbus", ISA_BUS_ID);
    put(mem, e, "mpc_intsrc", "srcbusirq", irq);
    put(mem, e, "mpc_intsrc", "dstapic", ioapicId);
    put(mem, e, "mpc_intsrc", "dstirq", irq);
  }

  // The LINT wiring cpu_setup.ts programs into every LAPIC (chapter L:220).
  for (const [irqtype, lint] of [[MP_EXTINT, 0], [MP_NMI, 1]] as const) {
    const e = entry("mpc_lintsrc", MP_LINTSRC);
    put(mem, e, "mpc_lintsrc", "irqtype", irqtype);
    put(mem, e, "mpc_lintsrc", "irqflag", MP_IRQ_CONFORMS);
    put(mem, e, "mpc_lintsrc", "srcbusid", ISA_BUS_ID);
    put(mem, e, "mpc_lintsrc", "srcbusirq", 0);
    put(mem, e, "mpc_lintsrc", "destapic", MP_APIC_ALL);
    put(mem, e, "mpc_lintsrc", "destapiclint", lint);
  }

  const length = at - table;
  if (MPF.size + length !== size) throw new Error("MP table size does not add up");
  put(mem, table, "mpc_table", "signature", MPC_SIGNATURE);
  put(mem, table, "mpc_table", "length", length);
  put(mem, table, "mpc_table", "spec", MP_SPEC_REV);
  put(mem, table, "mpc_table", "oem", OEM_ID);
  put(mem, table, "mpc_table", "productid", PRODUCT_ID);
  put(mem, table, "mpc_table", "oemcount", entries);
  put(mem, table, "mpc_table", "lapic", LAPIC_ADDR);
  seal(mem, table, length, table + MPC.fields.checksum.offset);

  // feature1 = 0: a configuration table is present (no default config).
  // feature2 = 0: virtual-wire mode, no IMCR to switch at ports 0x22/0x23.
  put(mem, addr, "mpf_intel", "signature", MPF_SIGNATURE);
  put(mem, addr, "mpf_intel", "physptr", table);
  put(mem, addr, "mpf_intel", "length", MPF.size / 16);
  put(mem, addr, "mpf_intel", "specification", MP_SPEC_REV);
  seal(mem, addr, MPF.size, addr + MPF.fields.checksum.offset);

  return { addr, size };
}

/** A processor entry, decoded. */
export interface MpProcessor {
  /** Local APIC id. */
  readonly apicId: number;
  /** Local APIC version. */
  readonly apicVersion: number;
  /** The CPU may be used. */
  readonly enabled: boolean;
  /** The CPU is the bootstrap processor. */
  readonly bsp: boolean;
  /** CPU signature (family, model, stepping). */
  readonly signature: number;
  /** CPUID.1:EDX feature flags. */
  readonly features: number;
}

/** An I/O interrupt assignment, decoded. */
export interface MpIrq {
  /** {@link MP_INT}, {@link MP_NMI}, {@link MP_SMI} or {@link MP_EXTINT}. */
  readonly type: number;
  /** Polarity (bits 0-1) and trigger mode (bits 2-3); 0 conforms to the bus. */
  readonly flags: number;
  /** Source bus id. */
  readonly srcBus: number;
  /** The interrupt's number on its bus (the ISA IRQ). */
  readonly srcIrq: number;
  /** Destination IOAPIC id. */
  readonly ioapicId: number;
  /** Destination IOAPIC pin. */
  readonly pin: number;
}

/** A local interrupt assignment, decoded. */
export interface MpLint {
  /** {@link MP_INT}, {@link MP_NMI}, {@link MP_SMI} or {@link MP_EXTINT}. */
  readonly type: number;
  /** Polarity and trigger mode; 0 conforms to the bus. */
  readonly flags: number;
  /** Source bus id. */
  readonly srcBus: number;
  /** Source bus IRQ. */
  readonly srcIrq: number;
  /** Destination local APIC id ({@link MP_APIC_ALL} for all). */
  readonly dest: number;
  /** Destination pin: 0 for LINT0, 1 for LINT1. */
  readonly lint: number;
}

/** An MP table as {@link readMpTable} finds it. */
export interface MpTable {
  /** Address of the floating pointer. */
  readonly pointer: number;
  /** Address of the configuration table (the pointer's physptr). */
  readonly table: number;
  /** Bytes in the configuration table, header included. */
  readonly length: number;
  /** The header's entry count, checked against the entries found. */
  readonly entryCount: number;
  /** OEM id (8 characters). */
  readonly oem: string;
  /** Product id (12 characters). */
  readonly productId: string;
  /** Local APIC MMIO address. */
  readonly lapicAddr: number;
  /** APIC ids of the enabled CPUs, in table order. */
  readonly cpus: number[];
  /** Every processor entry. */
  readonly processors: MpProcessor[];
  /** Buses: id and type string (trailing spaces removed). */
  readonly buses: Array<{ id: number; type: string }>;
  /** The IOAPIC. */
  readonly ioapic: { id: number; addr: number; version: number; usable: boolean };
  /** I/O interrupt assignments, in table order. */
  readonly irqs: MpIrq[];
  /** Local interrupt assignments, in table order. */
  readonly lints: MpLint[];
}

function checkSum(mem: GuestMemory, what: string, addr: number, length: number): void {
  const sum = byteSum(mem, addr, length);
  if (sum !== 0) {
    throw new BootError(`${what} at ${hex(addr)}: bad checksum (its ${length} bytes sum to ${hex(sum)}, not 0)`);
  }
}

/**
 * Finds and decodes the MP table the way Linux does: scans
 * [{@link MPTABLE_ADDR}, {@link MPTABLE_END}) in 16-byte steps for the
 * floating pointer, then follows its physptr to the configuration table.
 * For tests and diagnostics.
 * @param mem guest memory holding a table written by {@link writeMpTable}
 * @returns the decoded table
 * @throws BootError on a missing signature, a bad checksum, an unknown entry
 *   type, an entry count that does not match, or anything but one IOAPIC
 */
export function readMpTable(mem: GuestMemory): MpTable {
  let pointer = -1;
  for (let a = MPTABLE_ADDR; a + MPF.size <= MPTABLE_END; a += 16) {
    if (text(mem, a, "mpf_intel", "signature") === MPF_SIGNATURE) {
      pointer = a;
      break;
    }
  }
  if (pointer < 0) {
    throw new BootError(`no MP floating pointer ("${MPF_SIGNATURE}") in ${hex(MPTABLE_ADDR)}..${hex(MPTABLE_END)}`);
  }
  checkSum(mem, "MP floating pointer", pointer, MPF.size);
  const paragraphs = get(mem, pointer, "mpf_intel", "length");
  const specification = get(mem, pointer, "mpf_intel", "specification");
  if (paragraphs !== 1 || (specification !== 1 && specification !== 4)) {
    const got = `length ${paragraphs}, revision ${specification}`;
    throw new BootError(`MP floating pointer at ${hex(pointer)}: ${got} (want length 1, revision 1 or 4)`);
  }

  const table = get(mem, pointer, "mpf_intel", "physptr");
  if (!mem.contains(table, MPC.size)) {
    throw new BootError(`MP floating pointer at ${hex(pointer)} points outside RAM (${hex(table)})`);
  }
  const signature = text(mem, table, "mpc_table", "signature");
  if (signature !== MPC_SIGNATURE) {
    throw new BootError(`MP configuration table at ${hex(table)}: signature "${signature}", not "${MPC_SIGNATURE}"`);
  }
  const length = get(mem, table, "mpc_table", "length");
  if (length < MPC.size || !mem.contains(table, length)) {
    throw new BootError(`MP configuration table at ${hex(table)}: bad length ${length}`);
  }
  checkSum(mem, "MP configuration table", table, length);
  const spec = get(mem, table, "mpc_table", "spec");
  if (spec !== 1 && spec !== 4) throw new BootError(`MP configuration table at ${hex(table)}: revision ${spec}`);

  const processors: MpProcessor[] = [];
  const buses: Array<{ id: number; type: string }> = [];
  const ioapics: Array<MpTable["ioapic"]> = [];
  const irqs: MpIrq[] = [];
  const lints: MpLint[] = [];
  const sizes: Record<number, MpStruct> = {
    [MP_PROCESSOR]: "mpc_cpu",
    [MP_BUS]: "mpc_bus",
    [MP_IOAPIC]: "mpc_ioapic",
    [MP_INTSRC]: "mpc_intsrc",
    [MP_LINTSRC]: "mpc_lintsrc",
  };
  let entries = 0;
  for (let e = table + MPC.size; e < table + length; entries++) {
    const type = mem.readU8(e);
    const struct = sizes[type];
    if (struct === undefined || e + MP_STRUCTS[struct].size > table + length) {
      throw new BootError(`MP configuration table: bad entry (type ${type}) at ${hex(e)}`);
    }
    switch (type) {
      case MP_PROCESSOR: {
        const flags = get(mem, e, "mpc_cpu", "cpuflag");
        processors.push({
          apicId: get(mem, e, "mpc_cpu", "apicid"),
          apicVersion: get(mem, e, "mpc_cpu", "apicver"),
          enabled: (flags & CPU_ENABLED) !== 0,
          bsp: (flags & CPU_BOOTPROCESSOR) !== 0,
          signature: get(mem, e, "mpc_cpu", "cpufeature"),
          features: get(mem, e, "mpc_cpu", "featureflag"),
        });
        break;
      }
      case MP_BUS:
        buses.push({ id: get(mem, e, "mpc_bus", "busid"), type: text(mem, e, "mpc_bus", "bustype").trimEnd() });
        break;
      case MP_IOAPIC:
        ioapics.push({
          id: get(mem, e, "mpc_ioapic", "apicid"),
          addr: get(mem, e, "mpc_ioapic", "apicaddr"),
          version: get(mem, e, "mpc_ioapic", "apicver"),
          usable: (get(mem, e, "mpc_ioapic", "flags") & MPC_APIC_USABLE) !== 0,
        });
        break;
      case MP_INTSRC:
        irqs.push({
          type: get(mem, e, "mpc_intsrc", "irqtype"),
          flags: get(mem, e, "mpc_intsrc", "irqflag"),
          srcBus: get(mem, e, "mpc_intsrc", "srcbus"),
          srcIrq: get(mem, e, "mpc_intsrc", "srcbusirq"),
          ioapicId: get(mem, e, "mpc_intsrc", "dstapic"),
          pin: get(mem, e, "mpc_intsrc", "dstirq"),
        });
        break;
      default:
        lints.push({
          type: get(mem, e, "mpc_lintsrc", "irqtype"),
          flags: get(mem, e, "mpc_lintsrc", "irqflag"),
          srcBus: get(mem, e, "mpc_lintsrc", "srcbusid"),
          srcIrq: get(mem, e, "mpc_lintsrc", "srcbusirq"),
          dest: get(mem, e, "mpc_lintsrc", "destapic"),
          lint: get(mem, e, "mpc_lintsrc", "destapiclint"),
        });
    }
    e += MP_STRUCTS[struct].size;
  }
  const entryCount = get(mem, table, "mpc_table", "oemcount");
  if (entryCount !== entries) {
    const where = `MP configuration table at ${hex(table)}`;
    throw new BootError(`${where}: the header counts ${entryCount} entries, the table holds ${entries}`);
  }
  const [ioapic, ...more] = ioapics;
  if (ioapic === undefined || more.length > 0) {
    throw new BootError(`MP configuration table at ${hex(table)}: ${ioapics.length} IOAPIC entries, expected 1`);
  }
  return {
    pointer,
    table,
    length,
    entryCount,
    oem: text(mem, table, "mpc_table", "oem"),
    productId: text(mem, table, "mpc_table", "productid"),
    lapicAddr: get(mem, table, "mpc_table", "lapic"),
    cpus: processors.filter((p) => p.enabled).map((p) => p.apicId),
    processors,
    buses,
    ioapic,
    irqs,
    lints,
  };
}
