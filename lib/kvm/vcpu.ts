/*K:140 A vCPU is a descriptor plus a shared page, kvm_run, which KVM fills
 * in each time the guest stops for something it cannot finish alone: a port
 * access, a touch of an unbacked address, a triple fault. Here are the
 * register setters and getters; the run loop itself lives in the vCPU Worker
 * (vcpu.worker.ts), because KVM_RUN must be called synchronously from one
 * dedicated thread. :*/

import { close, ioctl, MAP, mmap, munmap } from "../sys/mod.ts";
import { KVM } from "./ioctl.ts";
import type { CpuidEntry, Kvm } from "./kvm.ts";
import type { Vm } from "./vm.ts";
import {
  getField,
  KVM_CPUID2,
  KVM_CPUID_ENTRY2,
  KVM_DTABLE,
  KVM_FPU,
  KVM_LAPIC_STATE,
  KVM_MP_STATE,
  KVM_MSR_ENTRY,
  KVM_MSRS,
  KVM_REGS,
  KVM_SEGMENT,
  KVM_SREGS,
  setField,
} from "./structs.ts";

/** General-purpose registers (names as in struct kvm_regs). */
export type Regs = Record<keyof typeof KVM_REGS.fields, bigint>;

/** A segment register. */
export interface Segment {
  /** Base address. */
  base: bigint;
  /** Limit (bytes, or 4 KiB units scaled by g). */
  limit: number;
  /** Selector. */
  selector: number;
  /** Type nibble (e.g. 0xb: code, execute/read, accessed). */
  type: number;
  /** Present. */
  present: number;
  /** Privilege level. */
  dpl: number;
  /** Default operand size (32-bit) bit. */
  db: number;
  /** Code/data (1) vs system (0) descriptor. */
  s: number;
  /** 64-bit code segment. */
  l: number;
  /** Granularity (limit in pages). */
  g: number;
  /** Available bit. */
  avl: number;
  /** Marks a null/unusable segment. */
  unusable: number;
}

/** A descriptor-table register. */
export interface DTable {
  /** Base address. */
  base: bigint;
  /** Limit. */
  limit: number;
}

/** Segment, control and system registers. */
export interface Sregs {
  /** Segment registers. */
  cs: Segment;
  /** Segment registers. */
  ds: Segment;
  /** Segment registers. */
  es: Segment;
  /** Segment registers. */
  fs: Segment;
  /** Segment registers. */
  gs: Segment;
  /** Segment registers. */
  ss: Segment;
  /** Task register. */
  tr: Segment;
  /** LDT register. */
  ldt: Segment;
  /** GDTR. */
  gdt: DTable;
  /** IDTR. */
  idt: DTable;
  /** Control registers. */
  cr0: bigint;
  /** Control registers. */
  cr2: bigint;
  /** Control registers. */
  cr3: bigint;
  /** Control registers. */
  cr4: bigint;
  /** Control registers. */
  cr8: bigint;
  /** Extended feature enable register. */
  efer: bigint;
  /** APIC base MSR. */
  apic_base: bigint;
}

const SEG_NAMES = ["cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt"] as const;
const CR_NAMES = ["cr0", "cr2", "cr3", "cr4", "cr8", "efer", "apic_base"] as const;
const SEG_BYTES = ["type", "present", "dpl", "db", "s", "l", "g", "avl", "unusable"] as const;

function readSegment(v: DataView, base: number): Segment {
  const F = KVM_SEGMENT.fields;
  const seg = {
    base: v.getBigUint64(base + F.base.offset, true),
    limit: getField(v, base, F.limit),
    selector: getField(v, base, F.selector),
  } as Segment;
  for (const k of SEG_BYTES) seg[k] = getField(v, base, F[k]);
  return seg;
}

function writeSegment(v: DataView, base: number, seg: Segment): void {
  const F = KVM_SEGMENT.fields;
  setField(v, base, F.base, seg.base);
  setField(v, base, F.limit, seg.limit);
  setField(v, base, F.selector, seg.selector);
  for (const k of SEG_BYTES) setField(v, base, F[k], seg[k]);
}

/** Decodes a struct kvm_sregs buffer. */
export function decodeSregs(buf: Uint8Array<ArrayBuffer>): Sregs {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const F = KVM_SREGS.fields;
  const D = KVM_DTABLE.fields;
  const out: Partial<Sregs> = {};
  for (const s of SEG_NAMES) out[s] = readSegment(v, F[s].offset);
  for (const t of ["gdt", "idt"] as const) {
    out[t] = { base: v.getBigUint64(F[t].offset + D.base.offset, true), limit: getField(v, F[t].offset, D.limit) };
  }
  for (const c of CR_NAMES) out[c] = v.getBigUint64(F[c].offset, true);
  return out as Sregs;
}

/** Encodes Sregs into `buf` (a struct kvm_sregs), keeping interrupt_bitmap. */
export function encodeSregs(s: Sregs, buf: Uint8Array<ArrayBuffer>): void {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const F = KVM_SREGS.fields;
  const D = KVM_DTABLE.fields;
  for (const n of SEG_NAMES) writeSegment(v, F[n].offset, s[n]);
  for (const t of ["gdt", "idt"] as const) {
    setField(v, F[t].offset, D.base, s[t].base);
    setField(v, F[t].offset, D.limit, s[t].limit);
  }
  for (const c of CR_NAMES) v.setBigUint64(F[c].offset, s[c], true);
}

/** One vCPU: its descriptor and its mapped kvm_run page. */
export class Vcpu {
  /** The vCPU index. */
  readonly id: number;
  #fd: number;
  /** Host address of this vCPU's kvm_run mapping. */
  readonly runAddress: bigint;
  /** Size of the kvm_run mapping. */
  readonly runSize: number;

  private constructor(id: number, fd: number, runAddress: bigint, runSize: number) {
    this.id = id;
    this.#fd = fd;
    this.runAddress = runAddress;
    this.runSize = runSize;
  }

  /** Creates vCPU `id` and maps its kvm_run page. */
  static create(kvm: Kvm, vm: Vm, id: number): Vcpu {
    const fd = vm.createVcpuFd(id);
    const size = kvm.vcpuMmapSize();
    const addr = mmap(size, MAP.PROT_READ | MAP.PROT_WRITE, MAP.SHARED, fd, 0);
    return new Vcpu(id, fd, addr, size);
  }

  /** The vCPU descriptor. */
  get fd(): number {
    return this.#fd;
  }

  /** KVM_GET_REGS. */
  getRegs(): Regs {
    const buf = new Uint8Array(KVM_REGS.size);
    ioctl(this.#fd, KVM.GET_REGS, buf, "KVM_GET_REGS");
    const v = new DataView(buf.buffer);
    const out: Partial<Regs> = {};
    for (const [k, f] of Object.entries(KVM_REGS.fields)) out[k as keyof Regs] = v.getBigUint64(f.offset, true);
    return out as Regs;
  }

  /** KVM_SET_REGS; registers not named are zero. */
  setRegs(regs: Partial<Regs>): void {
    const buf = new Uint8Array(KVM_REGS.size);
    const v = new DataView(buf.buffer);
    for (const [k, f] of Object.entries(KVM_REGS.fields)) v.setBigUint64(f.offset, regs[k as keyof Regs] ?? 0n, true);
    ioctl(this.#fd, KVM.SET_REGS, buf, "KVM_SET_REGS");
  }

  /** KVM_GET_SREGS. */
  getSregs(): Sregs {
    const buf = new Uint8Array(KVM_SREGS.size);
    ioctl(this.#fd, KVM.GET_SREGS, buf, "KVM_GET_SREGS");
    return decodeSregs(buf);
  }

  /** Reads sregs, lets `edit` change them, writes them back. */
  updateSregs(edit: (s: Sregs) => void): void {
    const buf = new Uint8Array(KVM_SREGS.size);
    ioctl(this.#fd, KVM.GET_SREGS, buf, "KVM_GET_SREGS");
    const s = decodeSregs(buf);
    edit(s);
    encodeSregs(s, buf);
    ioctl(this.#fd, KVM.SET_SREGS, buf, "KVM_SET_SREGS");
  }

  /** KVM_SET_CPUID2. */
  setCpuid(entries: readonly CpuidEntry[]): void {
    const E = KVM_CPUID_ENTRY2;
    const buf = new Uint8Array(KVM_CPUID2.size + entries.length * E.size);
    const v = new DataView(buf.buffer);
    setField(v, 0, KVM_CPUID2.fields.nent, entries.length);
    entries.forEach((e, i) => {
      const b = KVM_CPUID2.size + i * E.size;
      for (const k of ["function", "index", "flags", "eax", "ebx", "ecx", "edx"] as const) {
        setField(v, b, E.fields[k], e[k] >>> 0);
      }
    });
    ioctl(this.#fd, KVM.SET_CPUID2, buf, "KVM_SET_CPUID2");
  }

  /** KVM_SET_MSRS; throws unless every MSR was accepted. */
  setMsrs(msrs: ReadonlyArray<[number, bigint]>): void {
    const E = KVM_MSR_ENTRY;
    const buf = new Uint8Array(KVM_MSRS.size + msrs.length * E.size);
    const v = new DataView(buf.buffer);
    setField(v, 0, KVM_MSRS.fields.nmsrs, msrs.length);
    msrs.forEach(([index, data], i) => {
      const b = KVM_MSRS.size + i * E.size;
      setField(v, b, E.fields.index, index);
      setField(v, b, E.fields.data, data);
    });
    const n = ioctl(this.#fd, KVM.SET_MSRS, buf, "KVM_SET_MSRS");
    if (n !== msrs.length) {
      const bad = msrs[n]?.[0] ?? 0;
      throw new Error(`KVM_SET_MSRS accepted ${n} of ${msrs.length} MSRs (stopped at 0x${bad.toString(16)})`);
    }
  }

  /** KVM_SET_FPU with the x87 control word and MXCSR at their reset values. */
  resetFpu(): void {
    const buf = new Uint8Array(KVM_FPU.size);
    const v = new DataView(buf.buffer);
    setField(v, 0, KVM_FPU.fields.fcw, 0x37f);
    setField(v, 0, KVM_FPU.fields.mxcsr, 0x1f80);
    ioctl(this.#fd, KVM.SET_FPU, buf, "KVM_SET_FPU");
  }

  /** Reads the LAPIC page, lets `edit` change registers, writes it back. */
  updateLapic(edit: (regs: DataView) => void): void {
    const buf = new Uint8Array(KVM_LAPIC_STATE.size);
    ioctl(this.#fd, KVM.GET_LAPIC, buf, "KVM_GET_LAPIC");
    edit(new DataView(buf.buffer));
    ioctl(this.#fd, KVM.SET_LAPIC, buf, "KVM_SET_LAPIC");
  }

  /** KVM_GET_MP_STATE: one of ioctl.ts's MP_STATE values. */
  mpState(): number {
    const buf = new Uint8Array(KVM_MP_STATE.size);
    ioctl(this.#fd, KVM.GET_MP_STATE, buf, "KVM_GET_MP_STATE");
    return getField(new DataView(buf.buffer), 0, KVM_MP_STATE.fields.mp_state);
  }

  /** KVM_SET_MP_STATE. */
  setMpState(state: number): void {
    const buf = new Uint8Array(KVM_MP_STATE.size);
    setField(new DataView(buf.buffer), 0, KVM_MP_STATE.fields.mp_state, state);
    ioctl(this.#fd, KVM.SET_MP_STATE, buf, "KVM_SET_MP_STATE");
  }

  /** Unmaps kvm_run and closes the descriptor; safe twice. */
  close(): void {
    if (this.#fd < 0) return;
    munmap(this.runAddress, this.runSize);
    close(this.#fd);
    this.#fd = -1;
  }
}
