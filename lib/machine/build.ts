/*L:106 Building comes in two halves. The first, planBoot(), touches
 * nothing but the user's files: it checks the memory size, gives each
 * device its window and IRQ, reads the kernel and initrd, and runs the
 * loaders against a bare layout of guest RAM (L:111), so that a bad kernel,
 * an initrd that does not fit or a command line that is too long is found
 * while there is still nothing to give back. The second, assemble(), opens
 * KVM and builds the real thing; every step that takes something pushes the
 * step that gives it back onto the caller's undo list, so that a failure
 * half way through can unwind exactly what was done. :*/

import { GuestMemory, type LoadTarget, MemoryLayout } from "../memory.ts";
import { Kvm } from "../kvm/kvm.ts";
import { Vm } from "../kvm/vm.ts";
import { Vcpu } from "../kvm/vcpu.ts";
import { BOOT_MSRS, guestCpuid, setLongModeEntry, wireLapic } from "../kvm/cpu_setup.ts";
import { type LoadedKernel, loadKernelImage } from "../boot/kernel.ts";
import { type InitrdPlacement, placeInitrd } from "../boot/initrd.ts";
import { encodeCmdline, joinCmdline, writeCmdline } from "../boot/cmdline.ts";
import { readImageFile } from "../boot/file.ts";
import { e820ForMemory, validateMemorySize } from "../boot/e820.ts";
import { buildZeroPage } from "../boot/zeropage.ts";
import { buildIdentityMap } from "../boot/pagetables.ts";
import { BOOT_CS, BOOT_DS, writeGdt } from "../boot/gdt.ts";
import { writeMpTable } from "../boot/mptable.ts";
import { BOOT_STACK_TOP, IDT_ADDR, KVM_IDENTITY_MAP_ADDR, KVM_TSS_ADDR, ZERO_PAGE_ADDR } from "../boot/layout.ts";
import { layoutMmio, mmioCmdline, type MmioSlot } from "../virtio/mmio/set.ts";
import { type BootInfo, type MachineConfig, MAX_MEMORY_MIB } from "./config.ts";

/** The kernel and initrd files, read once. */
interface BootImages {
  readonly kernel: Uint8Array;
  readonly initrd: Uint8Array | undefined;
}

/** What planBoot() checked: everything create() needs from the user's files, before KVM is opened. */
export interface BootPlan {
  /** Guest RAM in bytes. */
  readonly bytes: number;
  /** Each device's window and IRQ. */
  readonly slots: MmioSlot[];
  /** The kernel and initrd, as read. */
  readonly images: BootImages;
}

/** The KVM side of a built machine. */
export interface MachineParts {
  /** /dev/kvm. */
  readonly kvm: Kvm;
  /** The VM, with its interrupt controllers, timer and guest RAM mapped. */
  readonly vm: Vm;
  /** Guest RAM, with the kernel, initrd and boot data in place. */
  readonly memory: GuestMemory;
  /** vCPU 0, at the kernel's 64-bit entry. */
  readonly vcpu: Vcpu;
  /** What went where. */
  readonly info: BootInfo;
}

/**
 * Checks the memory size, the devices' count, the kernel, the initrd and the command line, opening
 * nothing but the kernel and initrd files.
 * @throws RangeError for a bad memory size or too many devices; BootError for images that cannot boot
 */
export function planBoot(config: MachineConfig): BootPlan {
  const bytes = memoryBytes(config.memoryMiB);
  validateMemorySize(bytes);
  const slots = layoutMmio(config.devices ?? []);
  const images = readImages(config);
  placeImages(new MemoryLayout(bytes), config, images, mmioCmdline(slots));
  return { bytes, slots, images };
}

/**
 * Opens KVM and builds the VM, its RAM with the boot data, and vCPU 0 at the kernel's entry.
 * @param undo each resource taken pushes its release here, in order; on a throw the caller runs them backwards
 */
export function assemble(config: MachineConfig, plan: BootPlan, undo: Array<() => void>): MachineParts {
  const kvm = Kvm.open(config.kvmPath);
  undo.push(() => kvm.close());
  const vm = Vm.create(kvm);
  undo.push(() => vm.close());
  vm.setIdentityMapAddr(KVM_IDENTITY_MAP_ADDR);
  vm.setTssAddr(KVM_TSS_ADDR);
  vm.createIrqchip();
  vm.createPit();

  const memory = GuestMemory.create(plan.bytes, { hugePages: config.hugePages ?? false });
  undo.push(() => memory.close());
  vm.mapMemory(memory.hostAddress, memory.regions);

  const info = layOut(memory, config, plan.images, mmioCmdline(plan.slots));
  const vcpu = Vcpu.create(kvm, vm, 0);
  undo.push(() => vcpu.close());
  vcpu.setCpuid(guestCpuid(kvm, 0));
  vcpu.setMsrs(BOOT_MSRS);
  setLongModeEntry(vcpu, {
    entry: info.kernel.entry,
    zeroPage: ZERO_PAGE_ADDR,
    cr3: buildIdentityMap(memory),
    gdt: info.gdt,
    idt: { base: IDT_ADDR, limit: 0 },
    codeSelector: BOOT_CS,
    dataSelector: BOOT_DS,
    stack: BOOT_STACK_TOP,
  });
  wireLapic(vcpu);
  return { kvm, vm, memory, vcpu, info };
}

function memoryBytes(mib: number): number {
  if (!Number.isInteger(mib) || mib <= 0) throw new RangeError(`memory must be a positive whole number of MiB`);
  if (mib > MAX_MEMORY_MIB) {
    throw new RangeError(`memory of ${mib} MiB is more than the ${MAX_MEMORY_MIB} MiB we allow`);
  }
  return mib * 1024 * 1024;
}

function readImages(config: MachineConfig): BootImages {
  return {
    kernel: readImageFile(config.kernel, "kernel"),
    initrd: config.initrd === undefined ? undefined : readImageFile(config.initrd, "initrd"),
  };
}

/** Loads the kernel and initrd into `memory` (or a {@link MemoryLayout}, to check them) and checks the command line fits. */
function placeImages(
  memory: LoadTarget,
  config: MachineConfig,
  images: BootImages,
  extraArgs: readonly string[],
): { kernel: LoadedKernel; initrd: InitrdPlacement | undefined; cmdline: string } {
  const kernel = loadKernelImage(memory, images.kernel, config.kernel);
  const limits = { kernelEnd: kernel.kernelEnd, addrMax: kernel.initrdAddrMax };
  const initrd = images.initrd === undefined ? undefined : placeInitrd(memory, images.initrd, limits, config.initrd);
  const raw = config.cmdline ?? "";
  const user = typeof raw === "string" ? raw : joinCmdline(raw);
  const cmdline = [user, ...extraArgs].filter((s) => s.length > 0).join(" ");
  encodeCmdline(cmdline, kernel.cmdlineSize);
  return { kernel, initrd, cmdline };
}

/*L:115 The boot data, in dependency order: the kernel first (its size and
 * limits decide where the initrd may go and how long the command line may
 * be), then the initrd, the command line, and last the zero page that points
 * at all of them. The GDT and the MP table (how Linux finds the IOAPIC that
 * routes our devices' interrupts) sit in low memory the kernel leaves alone. :*/
function layOut(
  memory: GuestMemory,
  config: MachineConfig,
  images: BootImages,
  extraArgs: readonly string[],
): BootInfo {
  const { kernel, initrd, cmdline } = placeImages(memory, config, images, extraArgs);
  const placed = writeCmdline(memory, cmdline, kernel.cmdlineSize);
  const e820 = e820ForMemory(memory);
  buildZeroPage(memory, { setupHeader: kernel.setupHeader, cmdline: placed, initrd, e820 });
  const gdt = writeGdt(memory);
  writeMpTable(memory, { cpus: 1 });
  return { kernel, initrd, cmdline, e820, gdt };
}
