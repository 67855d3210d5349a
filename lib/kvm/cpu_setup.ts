/*L:200 A real PC starts in 16-bit real mode and a bootloader climbs to long
 * mode. We skip the climb: the vCPU wakes already in 64-bit mode, with
 * paging on (our identity map in CR3), flat code and data segments from our
 * GDT, and rsi pointing at the zero page. That is the 64-bit entry of
 * Documentation/x86/boot.rst, and it is also what this host's PVM flavour of
 * KVM wants, since it emulates every guest-kernel instruction and a shorter
 * climb is a faster boot. :*/

import type { CpuidEntry } from "./kvm.ts";
import type { Segment, Vcpu } from "./vcpu.ts";

/** Everything the vCPU needs for the 64-bit boot entry. */
export interface EntryState {
  /** Guest physical address of the first instruction. */
  entry: number;
  /** rsi: the zero page. */
  zeroPage: number;
  /** CR3: the PML4 of the identity map. */
  cr3: number;
  /** GDTR base and limit. */
  gdt: { base: number; limit: number };
  /** IDTR base and limit. */
  idt: { base: number; limit: number };
  /** Code and data selectors in that GDT. */
  codeSelector: number;
  /** Data selector. */
  dataSelector: number;
  /** Initial rsp. */
  stack: number;
}

const CR0_PE = 1n << 0n;
const CR0_MP = 1n << 1n;
const CR0_ET = 1n << 4n;
const CR0_NE = 1n << 5n;
const CR0_WP = 1n << 16n;
const CR0_PG = 1n << 31n;
const CR4_PAE = 1n << 5n;
const EFER_LME = 1n << 8n;
const EFER_LMA = 1n << 10n;

/** A flat 4 GiB ring-0 segment: data, 64-bit code, or (for the PVH entry) 32-bit code. */
function flat(selector: number, code: boolean, bits: 32 | 64 = 64): Segment {
  const long = code && bits === 64;
  return {
    base: 0n,
    limit: 0xffffffff,
    selector,
    type: code ? 0xb : 0x3,
    present: 1,
    dpl: 0,
    db: long ? 0 : 1,
    s: 1,
    l: long ? 1 : 0,
    g: 1,
    avl: 0,
    unusable: 0,
  };
}

/** Puts the vCPU in 64-bit mode at `state.entry`. */
export function setLongModeEntry(vcpu: Vcpu, state: EntryState): void {
  vcpu.updateSregs((s) => {
    const data = flat(state.dataSelector, false);
    s.cs = flat(state.codeSelector, true);
    s.ds = data;
    s.es = { ...data };
    s.fs = { ...data };
    s.gs = { ...data };
    s.ss = { ...data };
    s.tr = { ...s.tr, base: 0n, limit: 0xffff, selector: 0, type: 0xb, present: 1, s: 0, unusable: 0 };
    s.gdt = { base: BigInt(state.gdt.base), limit: state.gdt.limit };
    s.idt = { base: BigInt(state.idt.base), limit: state.idt.limit };
    s.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
    s.cr3 = BigInt(state.cr3);
    s.cr4 = CR4_PAE;
    s.efer = EFER_LME | EFER_LMA;
  });
  vcpu.setRegs({ rip: BigInt(state.entry), rsi: BigInt(state.zeroPage), rsp: BigInt(state.stack), rflags: 0x2n });
  vcpu.resetFpu();
}

/*L:205 The PVH entry is the other way in, for an ELF kernel that carries
 * the XEN_ELFNOTE_PHYS32_ENTRY note (L:134): no climb at all. The kernel is
 * entered where a 32-bit loader would leave it, in protected mode with
 * paging off, and it builds its own page tables and climbs to long mode
 * itself. The ABI (Xen's docs/misc/pvh.pandoc, which QEMU and Firecracker
 * follow) fixes only a few things: ebx holds the hvm_start_info (L:192); CR0
 * has PE and no other writable bit (ET reads as 1 on every CPU since the
 * 486, so we say so); CR4 is zero; CS is a flat 32-bit execute/read segment
 * and DS, ES (we do SS, FS, GS too) flat read/write data; TR is a 32-bit TSS
 * with base 0 and limit 0x67; and EFLAGS has IF, TF and VM clear. The
 * selectors are ours to pick; we use slots of the same boot GDT (BOOT_CS32,
 * BOOT_DS), so that a kernel that reloads a selector before loading its own
 * GDT gets the same segment back. No stack is promised: Linux's PVH entry
 * loads its own GDT and stack before it touches memory through esp. :*/

/** Everything the vCPU needs for the 32-bit PVH entry. */
export interface PvhEntryState {
  /** Guest physical address of the PVH entry point (from the ELF note). */
  entry: number;
  /** ebx: the struct hvm_start_info. */
  startInfo: number;
  /** GDTR base and limit. */
  gdt: { base: number; limit: number };
  /** IDTR base and limit. */
  idt: { base: number; limit: number };
  /** A 32-bit flat code selector in that GDT. */
  codeSelector: number;
  /** A flat data selector in that GDT. */
  dataSelector: number;
}

const CR0_ET_ONLY = CR0_ET;
const TSS32_LIMIT = 0x67;

/** Puts the vCPU in 32-bit protected mode, paging off, at `state.entry`, as the PVH boot ABI asks. */
export function setPvhEntry(vcpu: Vcpu, state: PvhEntryState): void {
  vcpu.updateSregs((s) => {
    const data = flat(state.dataSelector, false);
    s.cs = flat(state.codeSelector, true, 32);
    s.ds = data;
    s.es = { ...data };
    s.fs = { ...data };
    s.gs = { ...data };
    s.ss = { ...data };
    s.tr = { ...s.tr, base: 0n, limit: TSS32_LIMIT, selector: 0, type: 0xb, present: 1, s: 0, g: 0, unusable: 0 };
    s.gdt = { base: BigInt(state.gdt.base), limit: state.gdt.limit };
    s.idt = { base: BigInt(state.idt.base), limit: state.idt.limit };
    s.cr0 = CR0_PE | CR0_ET_ONLY;
    s.cr3 = 0n;
    s.cr4 = 0n;
    s.efer = 0n;
  });
  vcpu.setRegs({ rip: BigInt(state.entry), rbx: BigInt(state.startInfo), rflags: 0x2n });
  vcpu.resetFpu();
}

/*L:210 CPUID is how a kernel learns what CPU it runs on. We pass on what
 * this KVM can virtualize (KVM_GET_SUPPORTED_CPUID), and add facts of our
 * own: the "hypervisor present" bit, so the guest knows to look at the KVM
 * leaves at 0x40000000, and where this vCPU sits among the others. The host's
 * own topology must not leak through (KVM passes on the host's leaf 0xB
 * counts), because the guest compares what CPUID says with the MP table and
 * the MADT: a kernel that sees four APIC ids but is told its package holds
 * two logical processors splits them into two packages, or complains. So
 * every vCPU is one core of one package, with one thread: APIC id = vCPU
 * index, and every leaf that counts says `cpus`. :*/

const CPUID_FLAG_SIGNIFICANT_INDEX = 1;
const LEAF1_ECX_HYPERVISOR = 1 << 31;
const LEAF1_ECX_TSC_DEADLINE = 1 << 24;
const LEAF1_EDX_HTT = 1 << 28;
const EXT1_ECX_CMP_LEGACY = 1 << 1;
const TOPOLOGY_SMT = 1;
const TOPOLOGY_CORE = 2;

/** Bits an x2APIC id needs to number `n` things (ceil(log2 n)). */
function idBits(n: number): number {
  return n <= 1 ? 0 : 32 - Math.clz32(n - 1);
}

/** The leaf 0xB / 0x1F subleaves for vCPU `id` of `cpus`: SMT level (1 thread), core level (`cpus`), end. */
function topologyLeaf(fn: number, id: number, cpus: number): CpuidEntry[] {
  const e = (index: number, eax: number, ebx: number, type: number): CpuidEntry => ({
    function: fn,
    index,
    flags: CPUID_FLAG_SIGNIFICANT_INDEX,
    eax,
    ebx,
    ecx: (index | (type << 8)) >>> 0,
    edx: id,
  });
  return [e(0, 0, 1, TOPOLOGY_SMT), e(1, idBits(cpus), cpus, TOPOLOGY_CORE), e(2, 0, 0, 0)];
}

/*L:212 One bit KVM will not volunteer. Its in-kernel local APIC has the
 * TSC-deadline timer mode, but KVM_GET_SUPPORTED_CPUID leaves the bit out
 * (api.rst: ask for KVM_CAP_TSC_DEADLINE_TIMER and set it yourself). It
 * matters as soon as the guest takes the ACPI tables' word that this is a
 * hardware-reduced machine: Linux then has no PIT to calibrate the APIC
 * timer against, and with neither a calibrated APIC timer nor the deadline
 * mode its clock never ticks and the boot stops. :*/

/** What guestCpuid may add beyond KVM's supported table. */
export interface GuestCpuidOptions {
  /** KVM offers the TSC-deadline APIC timer (KVM_CAP_TSC_DEADLINE_TIMER): set CPUID.1:ECX[24]. */
  tscDeadline?: boolean;
}

/**
 * The CPUID table for vCPU `id` of `cpus`: KVM's supported entries with the hypervisor bit and this
 * vCPU's place in a one-package, `cpus`-core, one-thread-per-core topology.
 * @param supported KVM_GET_SUPPORTED_CPUID's entries (read once for all vCPUs)
 * @param id the vCPU's index, which is its APIC id (as in the MP table and the MADT)
 * @param cpus how many vCPUs the machine has
 * @param options bits KVM supports but does not list (L:212)
 * @returns the entries for KVM_SET_CPUID2
 */
export function guestCpuid(
  supported: readonly CpuidEntry[],
  id: number,
  cpus: number,
  options: GuestCpuidOptions = {},
): CpuidEntry[] {
  const out: CpuidEntry[] = [];
  const topologyDone = new Set<number>();
  for (const e of supported) {
    const x = { ...e };
    switch (e.function) {
      case 1:
        x.ecx = (e.ecx | LEAF1_ECX_HYPERVISOR | (options.tscDeadline ? LEAF1_ECX_TSC_DEADLINE : 0)) >>> 0;
        x.ebx = ((e.ebx & 0x0000ffff) | ((cpus & 0xff) << 16) | (id << 24)) >>> 0;
        x.edx = (cpus > 1 ? e.edx | LEAF1_EDX_HTT : e.edx & ~LEAF1_EDX_HTT) >>> 0;
        break;
      case 4: {
        // Intel's cache leaf: cores per package in EAX[31:26], threads sharing this cache in EAX[25:14].
        if ((e.eax & 0x1f) === 0) break;
        const level = (e.eax >> 5) & 7;
        const sharing = level >= 3 ? cpus - 1 : 0;
        x.eax = ((e.eax & 0x3fff) | (sharing << 14) | ((cpus - 1) << 26)) >>> 0;
        break;
      }
      case 0xb:
      case 0x1f:
        if (!topologyDone.has(e.function)) out.push(...topologyLeaf(e.function, id, cpus));
        topologyDone.add(e.function);
        continue;
      case 0x80000001:
        x.ecx = (cpus > 1 ? e.ecx | EXT1_ECX_CMP_LEGACY : e.ecx & ~EXT1_ECX_CMP_LEGACY) >>> 0;
        break;
      case 0x80000008:
        // AMD: cores per package - 1 in ECX[7:0], APIC id bits for them in ECX[15:12].
        x.ecx = ((e.ecx & ~0xf0ff) | (idBits(cpus) << 12) | (cpus - 1)) >>> 0;
        break;
      case 0x8000001e:
        // AMD: extended APIC id, and one thread per compute unit (unit = vCPU).
        x.eax = id;
        x.ebx = ((e.ebx & ~0xffff) | id) >>> 0;
        x.ecx = 0;
        break;
    }
    out.push(x);
  }
  return out;
}

/** MSRs a freshly reset CPU has; the SYSCALL/SYSENTER ones start at zero. */
export const BOOT_MSRS: ReadonlyArray<[number, bigint]> = [
  [0x174, 0n], // IA32_SYSENTER_CS
  [0x175, 0n], // IA32_SYSENTER_ESP
  [0x176, 0n], // IA32_SYSENTER_EIP
  [0xc0000081, 0n], // STAR
  [0xc0000082, 0n], // LSTAR
  [0xc0000083, 0n], // CSTAR
  [0xc0000084, 0n], // SYSCALL_MASK
  [0xc0000102, 0n], // KERNEL_GS_BASE
  [0x10, 0n], // TSC
  [0x1a0, 1n], // IA32_MISC_ENABLE: fast strings
];

/*L:220 The local APIC's two interrupt pins are wired as on a PC: LINT0
 * receives the legacy PIC's output as an external interrupt (ExtINT), LINT1
 * receives NMIs. Linux relies on that wiring until it switches to the
 * IOAPIC. :*/

const APIC_LVT_LINT0 = 0x350;
const APIC_LVT_LINT1 = 0x360;
const DELIVERY_EXTINT = 0x7 << 8;
const DELIVERY_NMI = 0x4 << 8;

/** Wires LINT0 to ExtINT and LINT1 to NMI. */
export function wireLapic(vcpu: Vcpu): void {
  vcpu.updateLapic((regs) => {
    regs.setUint32(APIC_LVT_LINT0, (regs.getUint32(APIC_LVT_LINT0, true) & ~0x700) | DELIVERY_EXTINT, true);
    regs.setUint32(APIC_LVT_LINT1, (regs.getUint32(APIC_LVT_LINT1, true) & ~0x700) | DELIVERY_NMI, true);
  });
}
