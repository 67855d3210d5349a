/*L:200 A real PC starts in 16-bit real mode and a bootloader climbs to long
 * mode. We skip the climb: the vCPU wakes already in 64-bit mode, with
 * paging on (our identity map in CR3), flat code and data segments from our
 * GDT, and rsi pointing at the zero page. That is the 64-bit entry of
 * Documentation/x86/boot.rst, and it is also what this host's PVM flavour of
 * KVM wants, since it emulates every guest-kernel instruction and a shorter
 * climb is a faster boot. :*/

import type { CpuidEntry, Kvm } from "./kvm.ts";
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

function flat(selector: number, code: boolean): Segment {
  return {
    base: 0n,
    limit: 0xffffffff,
    selector,
    type: code ? 0xb : 0x3,
    present: 1,
    dpl: 0,
    db: code ? 0 : 1,
    s: 1,
    l: code ? 1 : 0,
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

/*L:210 CPUID is how a kernel learns what CPU it runs on. We pass on what
 * this KVM can virtualize (KVM_GET_SUPPORTED_CPUID), and add two facts of
 * our own: the "hypervisor present" bit, so the guest knows to look at the
 * KVM leaves at 0x40000000, and the vCPU's APIC id. :*/

/** The host's supported CPUID, adjusted for vCPU `id`. */
export function guestCpuid(kvm: Kvm, id: number): CpuidEntry[] {
  return kvm.supportedCpuid().map((e) => {
    const out = { ...e };
    if (e.function === 1) {
      out.ecx = (e.ecx | (1 << 31)) >>> 0;
      out.ebx = ((e.ebx & 0x00ffffff) | (id << 24)) >>> 0;
    }
    if ((e.function === 0xb || e.function === 0x1f)) out.edx = id;
    return out;
  });
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
