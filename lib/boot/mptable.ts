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
 * table that fails the sum, and so does the decoder the tests read ours
 * back with. Both parts go in the kilobyte at 0x9fc00, which the e820 map
 * already reports as reserved, so the kernel reads it but never hands the
 * memory out. :*/

import type { GuestMemory } from "../memory.ts";
import { BootError, hex } from "./errors.ts";
import { IOAPIC_ADDR, LAPIC_ADDR, MPTABLE_ADDR, MPTABLE_END } from "./layout.ts";
import {
  CPU_BOOTPROCESSOR,
  CPU_ENABLED,
  DEFAULT_IOAPIC_PINS,
  IOAPIC_VERSION,
  ISA_BUS_ID,
  LAPIC_VERSION,
  MP_APIC_ALL,
  MP_BUS,
  MP_EXTINT,
  MP_INT,
  MP_INTSRC,
  MP_IOAPIC,
  MP_IRQ_CONFORMS,
  MP_LINTSRC,
  MP_NMI,
  MP_PROCESSOR,
  MP_SPEC_REV,
  MP_STRUCTS,
  MPC_APIC_USABLE,
  MPC_SIGNATURE,
  MPF_SIGNATURE,
  type MpField,
  mpField,
  type MpStruct,
} from "./mpspec.ts";

export * from "./mpspec.ts";

// CPU signature (family 6, model 0, stepping 0) and CPUID.1:EDX flags (FPU,
// APIC). Linux only prints these; the CPUs describe themselves through CPUID.
const CPU_SIGNATURE = 0x600;
const CPU_FEATURES = (1 << 0) | (1 << 9);
const OEM_ID = "LGUEST  ";
const PRODUCT_ID = "DENO KVM    ";
const BUS_TYPE_ISA = "ISA   ";

const MPF = MP_STRUCTS.mpf_intel;
const MPC = MP_STRUCTS.mpc_table;

/** Writes one member of a struct at `base`: an integer little-endian, a string as ASCII. */
function put<S extends MpStruct>(
  mem: GuestMemory,
  base: number,
  struct: S,
  field: MpField<S>,
  value: number | string,
): void {
  const { offset, size } = mpField(struct, field);
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
    mem.writeU8(base + mpField(struct, "type").offset, type);
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
