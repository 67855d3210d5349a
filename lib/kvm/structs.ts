/*K:110 KVM speaks in C structs. Each one the launcher touches is declared
 * here once, as data: its C name, its size, and the offset and width of every
 * member we read or write, keyed by the member's C path (so "io.port" is
 * offsetof(struct kvm_run, io.port)). tests/kvm/layout_test.ts compiles a C
 * program against <linux/kvm.h> and checks every number in this file; nothing
 * else in the project spells an offset. :*/

/** One struct member: byte offset and width. */
export interface Field {
  /** Byte offset from the start of the struct. */
  readonly offset: number;
  /** Width in bytes. */
  readonly size: number;
}

/** A C struct layout: name, size and members by C path. */
export interface Layout {
  /** The C type, e.g. "struct kvm_regs". */
  readonly c: string;
  /** sizeof() the struct. */
  readonly size: number;
  /** Members by C path. */
  readonly fields: Readonly<Record<string, Field>>;
}

function f(offset: number, size: number): Field {
  return { offset, size };
}

/** Consecutive 64-bit members starting at `start`. */
function u64s(names: readonly string[], start = 0): Record<string, Field> {
  return Object.fromEntries(names.map((n, i) => [n, f(start + i * 8, 8)]));
}

/** The shared page KVM fills on every exit (the parts we decode). */
export const KVM_RUN = {
  c: "struct kvm_run",
  size: 2352,
  fields: {
    request_interrupt_window: f(0, 1),
    immediate_exit: f(1, 1),
    exit_reason: f(8, 4),
    ready_for_interrupt_injection: f(12, 1),
    if_flag: f(13, 1),
    cr8: f(16, 8),
    apic_base: f(24, 8),
    "hw.hardware_exit_reason": f(32, 8),
    "fail_entry.hardware_entry_failure_reason": f(32, 8),
    "fail_entry.cpu": f(40, 4),
    "io.direction": f(32, 1),
    "io.size": f(33, 1),
    "io.port": f(34, 2),
    "io.count": f(36, 4),
    "io.data_offset": f(40, 8),
    "mmio.phys_addr": f(32, 8),
    "mmio.data": f(40, 8),
    "mmio.len": f(48, 4),
    "mmio.is_write": f(52, 1),
    "internal.suberror": f(32, 4),
    "internal.ndata": f(36, 4),
    "internal.data": f(40, 128),
    "system_event.type": f(32, 4),
    "system_event.ndata": f(36, 4),
  },
} as const satisfies Layout;

/** General-purpose registers. */
export const KVM_REGS = {
  c: "struct kvm_regs",
  size: 144,
  fields: u64s([
    "rax",
    "rbx",
    "rcx",
    "rdx",
    "rsi",
    "rdi",
    "rsp",
    "rbp",
    "r8",
    "r9",
    "r10",
    "r11",
    "r12",
    "r13",
    "r14",
    "r15",
    "rip",
    "rflags",
  ]),
} as const satisfies Layout;

/** A segment register as KVM describes it. */
export const KVM_SEGMENT = {
  c: "struct kvm_segment",
  size: 24,
  fields: {
    base: f(0, 8),
    limit: f(8, 4),
    selector: f(12, 2),
    type: f(14, 1),
    present: f(15, 1),
    dpl: f(16, 1),
    db: f(17, 1),
    s: f(18, 1),
    l: f(19, 1),
    g: f(20, 1),
    avl: f(21, 1),
    unusable: f(22, 1),
  },
} as const satisfies Layout;

/** A descriptor-table register (GDTR/IDTR). */
export const KVM_DTABLE = {
  c: "struct kvm_dtable",
  size: 16,
  fields: { base: f(0, 8), limit: f(8, 2) },
} as const satisfies Layout;

/** Segment, control and system registers. */
export const KVM_SREGS = {
  c: "struct kvm_sregs",
  size: 312,
  fields: {
    cs: f(0, 24),
    ds: f(24, 24),
    es: f(48, 24),
    fs: f(72, 24),
    gs: f(96, 24),
    ss: f(120, 24),
    tr: f(144, 24),
    ldt: f(168, 24),
    gdt: f(192, 16),
    idt: f(208, 16),
    cr0: f(224, 8),
    cr2: f(232, 8),
    cr3: f(240, 8),
    cr4: f(248, 8),
    cr8: f(256, 8),
    efer: f(264, 8),
    apic_base: f(272, 8),
    interrupt_bitmap: f(280, 32),
  },
} as const satisfies Layout;

/** x87/SSE state. */
export const KVM_FPU = {
  c: "struct kvm_fpu",
  size: 416,
  fields: { fpr: f(0, 128), fcw: f(128, 2), fsw: f(130, 2), ftwx: f(132, 1), mxcsr: f(408, 4) },
} as const satisfies Layout;

/** Header of struct kvm_cpuid2; entries follow. */
export const KVM_CPUID2 = {
  c: "struct kvm_cpuid2",
  size: 8,
  fields: { nent: f(0, 4), entries: f(8, 0) },
} as const satisfies Layout;

/** One CPUID leaf/subleaf. */
export const KVM_CPUID_ENTRY2 = {
  c: "struct kvm_cpuid_entry2",
  size: 40,
  fields: {
    function: f(0, 4),
    index: f(4, 4),
    flags: f(8, 4),
    eax: f(12, 4),
    ebx: f(16, 4),
    ecx: f(20, 4),
    edx: f(24, 4),
  },
} as const satisfies Layout;

/** Header of struct kvm_msrs; entries follow. */
export const KVM_MSRS = {
  c: "struct kvm_msrs",
  size: 8,
  fields: { nmsrs: f(0, 4), entries: f(8, 0) },
} as const satisfies Layout;

/** One MSR index/value pair. */
export const KVM_MSR_ENTRY = {
  c: "struct kvm_msr_entry",
  size: 16,
  fields: { index: f(0, 4), data: f(8, 8) },
} as const satisfies Layout;

/** A slot of guest RAM backed by our mapping. */
export const KVM_USERSPACE_MEMORY_REGION = {
  c: "struct kvm_userspace_memory_region",
  size: 32,
  fields: { slot: f(0, 4), flags: f(4, 4), guest_phys_addr: f(8, 8), memory_size: f(16, 8), userspace_addr: f(24, 8) },
} as const satisfies Layout;

/** An interrupt line level for KVM_IRQ_LINE. */
export const KVM_IRQ_LEVEL = {
  c: "struct kvm_irq_level",
  size: 8,
  fields: { irq: f(0, 4), level: f(4, 4) },
} as const satisfies Layout;

/** Binds an eventfd to a GSI: a write to the fd injects the interrupt. */
export const KVM_IRQFD = {
  c: "struct kvm_irqfd",
  size: 32,
  fields: { fd: f(0, 4), gsi: f(4, 4), flags: f(8, 4), resamplefd: f(12, 4) },
} as const satisfies Layout;

/** Binds an eventfd to a guest MMIO/PIO write: no exit to userspace. */
export const KVM_IOEVENTFD = {
  c: "struct kvm_ioeventfd",
  size: 64,
  fields: { datamatch: f(0, 8), addr: f(8, 8), len: f(16, 4), fd: f(20, 4), flags: f(24, 4) },
} as const satisfies Layout;

/** Header of the GSI routing table; entries follow. */
export const KVM_IRQ_ROUTING = {
  c: "struct kvm_irq_routing",
  size: 8,
  fields: { nr: f(0, 4), flags: f(4, 4), entries: f(8, 0) },
} as const satisfies Layout;

/** One GSI route (irqchip pin or MSI). */
export const KVM_IRQ_ROUTING_ENTRY = {
  c: "struct kvm_irq_routing_entry",
  size: 48,
  fields: {
    gsi: f(0, 4),
    type: f(4, 4),
    flags: f(8, 4),
    "u.irqchip.irqchip": f(16, 4),
    "u.irqchip.pin": f(20, 4),
    "u.msi.address_lo": f(16, 4),
    "u.msi.address_hi": f(20, 4),
    "u.msi.data": f(24, 4),
  },
} as const satisfies Layout;

/** An MSI to inject directly. */
export const KVM_MSI = {
  c: "struct kvm_msi",
  size: 32,
  fields: { address_lo: f(0, 4), address_hi: f(4, 4), data: f(8, 4), flags: f(12, 4) },
} as const satisfies Layout;

/** PIT creation options. */
export const KVM_PIT_CONFIG = {
  c: "struct kvm_pit_config",
  size: 64,
  fields: { flags: f(0, 4) },
} as const satisfies Layout;

/** The local APIC's register page. */
export const KVM_LAPIC_STATE = {
  c: "struct kvm_lapic_state",
  size: 1024,
  fields: { regs: f(0, 1024) },
} as const satisfies Layout;

/** A vCPU's multiprocessing state (KVM_GET_MP_STATE / KVM_SET_MP_STATE): one of ioctl.ts's MP_STATE values. */
export const KVM_MP_STATE = {
  c: "struct kvm_mp_state",
  size: 4,
  fields: { mp_state: f(0, 4) },
} as const satisfies Layout;

/** Every layout, for the checker. */
export const ALL_LAYOUTS: readonly Layout[] = [
  KVM_RUN,
  KVM_REGS,
  KVM_SEGMENT,
  KVM_DTABLE,
  KVM_SREGS,
  KVM_FPU,
  KVM_CPUID2,
  KVM_CPUID_ENTRY2,
  KVM_MSRS,
  KVM_MSR_ENTRY,
  KVM_USERSPACE_MEMORY_REGION,
  KVM_IRQ_LEVEL,
  KVM_IRQFD,
  KVM_IOEVENTFD,
  KVM_IRQ_ROUTING,
  KVM_IRQ_ROUTING_ENTRY,
  KVM_MSI,
  KVM_PIT_CONFIG,
  KVM_LAPIC_STATE,
  KVM_MP_STATE,
];

/** Reads an unsigned member (1, 2, 4 or 8 bytes) at `base` + its offset. */
export function getField(view: DataView, base: number, field: Field): number {
  const o = base + field.offset;
  switch (field.size) {
    case 1:
      return view.getUint8(o);
    case 2:
      return view.getUint16(o, true);
    case 4:
      return view.getUint32(o, true);
    case 8:
      return Number(view.getBigUint64(o, true));
    default:
      throw new RangeError(`cannot read a ${field.size}-byte member as a number`);
  }
}

/** Writes an unsigned member (1, 2, 4 or 8 bytes) at `base` + its offset. */
export function setField(view: DataView, base: number, field: Field, value: number | bigint): void {
  const o = base + field.offset;
  switch (field.size) {
    case 1:
      return view.setUint8(o, Number(value));
    case 2:
      return view.setUint16(o, Number(value), true);
    case 4:
      return view.setUint32(o, Number(value), true);
    case 8:
      return view.setBigUint64(o, BigInt(value), true);
    default:
      throw new RangeError(`cannot write a ${field.size}-byte member as a number`);
  }
}
