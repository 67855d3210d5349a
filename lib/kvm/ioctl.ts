/*K:100 An ioctl request number is not arbitrary: Linux packs four things into
 * 32 bits, the data direction (2 bits), the argument size (14 bits), a
 * subsystem type byte (0xAE for KVM) and a command number. We rebuild the
 * numbers from that recipe and the struct sizes in structs.ts rather than
 * pasting hex, so a wrong size shows up as a wrong number in the layout test,
 * which checks each one against the C header. :*/

import * as S from "./structs.ts";

const NRBITS = 8;
const TYPEBITS = 8;
const SIZEBITS = 14;
const NRSHIFT = 0;
const TYPESHIFT = NRSHIFT + NRBITS;
const SIZESHIFT = TYPESHIFT + TYPEBITS;
const DIRSHIFT = SIZESHIFT + SIZEBITS;
const NONE = 0;
const WRITE = 1;
const READ = 2;

/** Encodes an ioctl request as Linux's _IOC macro does. */
export function ioc(dir: number, type: number, nr: number, size: number): number {
  if (size >= 1 << SIZEBITS) throw new RangeError(`ioctl argument size ${size} too large`);
  return ((dir << DIRSHIFT) | (type << TYPESHIFT) | (nr << NRSHIFT) | (size << SIZESHIFT)) >>> 0;
}

/** _IO(type, nr): no argument data. */
export const io = (type: number, nr: number): number => ioc(NONE, type, nr, 0);
/** _IOR(type, nr, size): the kernel writes `size` bytes. */
export const ior = (type: number, nr: number, size: number): number => ioc(READ, type, nr, size);
/** _IOW(type, nr, size): the kernel reads `size` bytes. */
export const iow = (type: number, nr: number, size: number): number => ioc(WRITE, type, nr, size);
/** _IOWR(type, nr, size): both directions. */
export const iowr = (type: number, nr: number, size: number): number => ioc(READ | WRITE, type, nr, size);

const KVMIO = 0xae;

/** The KVM ioctls the launcher uses, named as in <linux/kvm.h>. */
export const KVM = {
  GET_API_VERSION: io(KVMIO, 0x00),
  CREATE_VM: io(KVMIO, 0x01),
  CHECK_EXTENSION: io(KVMIO, 0x03),
  GET_VCPU_MMAP_SIZE: io(KVMIO, 0x04),
  GET_SUPPORTED_CPUID: iowr(KVMIO, 0x05, S.KVM_CPUID2.size),
  CREATE_VCPU: io(KVMIO, 0x41),
  SET_USER_MEMORY_REGION: iow(KVMIO, 0x46, S.KVM_USERSPACE_MEMORY_REGION.size),
  SET_TSS_ADDR: io(KVMIO, 0x47),
  SET_IDENTITY_MAP_ADDR: iow(KVMIO, 0x48, 8),
  CREATE_IRQCHIP: io(KVMIO, 0x60),
  IRQ_LINE: iow(KVMIO, 0x61, S.KVM_IRQ_LEVEL.size),
  SET_GSI_ROUTING: iow(KVMIO, 0x6a, S.KVM_IRQ_ROUTING.size),
  IRQFD: iow(KVMIO, 0x76, S.KVM_IRQFD.size),
  CREATE_PIT2: iow(KVMIO, 0x77, S.KVM_PIT_CONFIG.size),
  IOEVENTFD: iow(KVMIO, 0x79, S.KVM_IOEVENTFD.size),
  SIGNAL_MSI: iow(KVMIO, 0xa5, S.KVM_MSI.size),
  RUN: io(KVMIO, 0x80),
  GET_REGS: ior(KVMIO, 0x81, S.KVM_REGS.size),
  SET_REGS: iow(KVMIO, 0x82, S.KVM_REGS.size),
  GET_SREGS: ior(KVMIO, 0x83, S.KVM_SREGS.size),
  SET_SREGS: iow(KVMIO, 0x84, S.KVM_SREGS.size),
  SET_MSRS: iow(KVMIO, 0x89, S.KVM_MSRS.size),
  GET_FPU: ior(KVMIO, 0x8c, S.KVM_FPU.size),
  SET_FPU: iow(KVMIO, 0x8d, S.KVM_FPU.size),
  GET_LAPIC: ior(KVMIO, 0x8e, S.KVM_LAPIC_STATE.size),
  SET_LAPIC: iow(KVMIO, 0x8f, S.KVM_LAPIC_STATE.size),
  SET_CPUID2: iow(KVMIO, 0x90, S.KVM_CPUID2.size),
  GET_MP_STATE: ior(KVMIO, 0x98, S.KVM_MP_STATE.size),
  SET_MP_STATE: iow(KVMIO, 0x99, S.KVM_MP_STATE.size),
} as const;

/** KVM_CHECK_EXTENSION capability numbers we ask about. */
export const KVM_CAP = {
  IRQCHIP: 0,
  HLT: 1,
  USER_MEMORY: 3,
  SET_TSS_ADDR: 4,
  EXT_CPUID: 7,
  NR_VCPUS: 9,
  PIT2: 33,
  IOEVENTFD: 36,
  IRQFD: 32,
  IRQ_ROUTING: 25,
  SIGNAL_MSI: 77,
  TSC_DEADLINE_TIMER: 72,
  IMMEDIATE_EXIT: 136,
  MP_STATE: 14,
  MAX_VCPUS: 66,
} as const;

/** Exit reasons reported in kvm_run.exit_reason. */
export const KVM_EXIT = {
  UNKNOWN: 0,
  EXCEPTION: 1,
  IO: 2,
  HYPERCALL: 3,
  DEBUG: 4,
  HLT: 5,
  MMIO: 6,
  IRQ_WINDOW_OPEN: 7,
  SHUTDOWN: 8,
  FAIL_ENTRY: 9,
  INTR: 10,
  NMI: 16,
  INTERNAL_ERROR: 17,
  SYSTEM_EVENT: 24,
} as const;

/** kvm_mp_state values (KVM_MP_STATE_*): where a vCPU is in the INIT/SIPI dance. */
export const MP_STATE = {
  RUNNABLE: 0,
  /** An application processor waiting for INIT and SIPI; KVM_RUN sleeps in the kernel until they come. */
  UNINITIALIZED: 1,
  INIT_RECEIVED: 2,
  HALTED: 3,
  SIPI_RECEIVED: 4,
} as const;

/** KVM_EXIT_SYSTEM_EVENT types. */
export const KVM_SYSTEM_EVENT = { SHUTDOWN: 1, RESET: 2, CRASH: 3 } as const;

/** Other constants from <linux/kvm.h>. */
export const KVM_CONST = {
  API_VERSION: 12,
  IRQ_ROUTING_IRQCHIP: 1,
  IRQ_ROUTING_MSI: 2,
  IRQCHIP_PIC_MASTER: 0,
  IRQCHIP_PIC_SLAVE: 1,
  IRQCHIP_IOAPIC: 2,
  IOEVENTFD_FLAG_DATAMATCH: 1,
  IOEVENTFD_FLAG_PIO: 2,
  IOEVENTFD_FLAG_DEASSIGN: 4,
  IRQFD_FLAG_DEASSIGN: 1,
  PIT_SPEAKER_DUMMY: 1,
  EXIT_IO_IN: 0,
  EXIT_IO_OUT: 1,
  MAX_CPUID_ENTRIES: 256,
} as const;
