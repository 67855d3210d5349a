/*T:121 The launcher only writes the MP table; the kernel is its one real
 * reader. To check what we wrote without booting, the tests read it back
 * the way Linux's mpparse.c does: scan for the floating pointer, check
 * both checksums, walk the entries by their type and size, and insist on
 * the one IOAPIC we declare. Being strict here is the point: a table this
 * decoder accepts is one the kernel would not throw away. :*/

import type { GuestMemory } from "../../lib/memory.ts";
import { BootError, hex } from "../../lib/boot/errors.ts";
import { MPTABLE_ADDR, MPTABLE_END } from "../../lib/boot/layout.ts";
import {
  CPU_BOOTPROCESSOR,
  CPU_ENABLED,
  MP_BUS,
  MP_INTSRC,
  MP_IOAPIC,
  MP_LINTSRC,
  MP_PROCESSOR,
  MP_STRUCTS,
  MPC_APIC_USABLE,
  MPC_SIGNATURE,
  MPF_SIGNATURE,
  type MpField,
  mpField,
  type MpStruct,
} from "../../lib/boot/mpspec.ts";

const MPF = MP_STRUCTS.mpf_intel;
const MPC = MP_STRUCTS.mpc_table;

/** Reads one integer member of a struct at `base`. */
function get<S extends MpStruct>(mem: GuestMemory, base: number, struct: S, field: MpField<S>): number {
  const { offset, size } = mpField(struct, field);
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
  const { offset, size } = mpField(struct, field);
  return String.fromCharCode(...mem.slice(base + offset, size));
}

function checkSum(mem: GuestMemory, what: string, addr: number, length: number): void {
  let sum = 0;
  for (const b of mem.slice(addr, length, "MP table")) sum += b;
  sum &= 0xff;
  if (sum !== 0) {
    throw new BootError(`${what} at ${hex(addr)}: bad checksum (its ${length} bytes sum to ${hex(sum)}, not 0)`);
  }
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

/**
 * Finds and decodes the MP table the way Linux does: scans
 * [{@link MPTABLE_ADDR}, {@link MPTABLE_END}) in 16-byte steps for the
 * floating pointer, then follows its physptr to the configuration table.
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
