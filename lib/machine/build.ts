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
import type { Vcpu } from "../kvm/vcpu.ts";
import { cpuCount, createVcpus } from "./vcpus.ts";
import { type LoadedKernel, loadKernelImage } from "../boot/kernel.ts";
import { type InitrdPlacement, placeInitrd } from "../boot/initrd.ts";
import { encodeCmdline, joinCmdline, writeCmdline } from "../boot/cmdline.ts";
import { imageLabel, readImage } from "../boot/file.ts";
import { E820_RESERVED, type E820Entry, e820ForMemory, validateMemorySize } from "../boot/e820.ts";
import { buildZeroPage } from "../boot/zeropage.ts";
import { writeGdt } from "../boot/gdt.ts";
import { writeMpTable } from "../boot/mptable.ts";
import { buildAcpiTables } from "../boot/acpi/build.ts";
import { BootError, span } from "../boot/errors.ts";
import { KVM_IDENTITY_MAP_ADDR, KVM_TSS_ADDR, VIRTIO_MMIO_SIZE } from "../boot/layout.ts";
import { layoutMmio, mmioCmdline, type MmioSlot } from "../virtio/mmio/set.ts";
import { type BootInfo, type MachineConfig, MAX_MEMORY_MIB } from "./config.ts";
import { chooseEntry, setBootEntry } from "./entry.ts";

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
  /** The vCPUs, index = APIC id: vCPU 0 at the kernel's entry, the others waiting for INIT/SIPI (L:118). */
  readonly vcpus: readonly Vcpu[];
  /** What went where. */
  readonly info: BootInfo;
}

/**
 * Checks the memory size, the devices' count, the kernel, the initrd and the command line, opening
 * nothing but the kernel and initrd files.
 * @throws RangeError for a bad memory size, vCPU count or too many devices; BootError for images that cannot boot
 */
export function planBoot(config: MachineConfig): BootPlan {
  const bytes = memoryBytes(config.memoryMiB);
  validateMemorySize(bytes);
  cpuCount(config.cpus);
  const slots = layoutMmio(config.devices ?? []);
  const images = readImages(config);
  const { kernel } = placeImages(new MemoryLayout(bytes), config, images, declarations(config, slots));
  chooseEntry(kernel, config.entry, imageLabel(config.kernel));
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

  const info = layOut(memory, config, plan);
  const vcpus = createVcpus(kvm, vm, cpuCount(config.cpus), undo);
  setBootEntry(vcpus[0]!, memory, info);
  return { kvm, vm, memory, vcpus, info };
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
    kernel: readImage(config.kernel, "kernel"),
    initrd: config.initrd === undefined ? undefined : readImage(config.initrd, "initrd"),
  };
}

/** Loads the kernel and initrd into `memory` (or a {@link MemoryLayout}, to check them) and checks the command line fits. */
function placeImages(
  memory: LoadTarget,
  config: MachineConfig,
  images: BootImages,
  extraArgs: readonly string[],
): { kernel: LoadedKernel; initrd: InitrdPlacement | undefined; cmdline: string } {
  const kernel = loadKernelImage(memory, images.kernel, imageLabel(config.kernel));
  const limits = { kernelEnd: kernel.kernelEnd, addrMax: kernel.initrdAddrMax };
  const initrd = images.initrd === undefined
    ? undefined
    : placeInitrd(memory, images.initrd, limits, imageLabel(config.initrd ?? ""));
  const raw = config.cmdline ?? "";
  const user = typeof raw === "string" ? raw : joinCmdline(raw);
  const cmdline = [user, ...extraArgs].filter((s) => s.length > 0).join(" ");
  encodeCmdline(cmdline, kernel.cmdlineSize);
  return { kernel, initrd, cmdline };
}

/*L:116 How the guest learns where its devices are. A kernel with ACPI reads
 * the DSDT, which names each virtio-mmio window and its interrupt, so the
 * command line stays the user's own. A kernel without ACPI (the project's
 * tinyconfig build, the test guest) gets the original launcher's answer, one
 * virtio_mmio.device= word per device appended to its command line; those
 * machines are built with `acpi: false` and have no ACPI tables at all. :*/
function declarations(config: MachineConfig, slots: readonly MmioSlot[]): string[] {
  return config.acpi === false ? mmioCmdline(slots) : [];
}

/*L:115 The boot data, in dependency order: the kernel first (its size and
 * limits decide where the initrd may go and how long the command line may
 * be), then the initrd, the command line, and last the zero page that points
 * at all of them. The GDT, the MP table (how a kernel without ACPI finds the
 * IOAPIC that routes our devices' interrupts) and the ACPI tables (the same
 * facts, and the devices, for a kernel with ACPI) sit in low memory the
 * kernel leaves alone; both tables are built for the same CPUs and IOAPIC,
 * so a kernel sees one machine whichever it reads. Exported so the host
 * tests can lay a machine out in plain memory, without KVM. :*/
export function layOut(memory: GuestMemory, config: MachineConfig, plan: BootPlan): BootInfo {
  const { kernel, initrd, cmdline } = placeImages(memory, config, plan.images, declarations(config, plan.slots));
  const placed = writeCmdline(memory, cmdline, kernel.cmdlineSize);
  const e820 = e820ForMemory(memory);
  const cpus = config.cpus ?? 1;
  const rsdp = config.acpi === false ? undefined : writeAcpi(memory, e820, cpus, plan.slots);
  buildZeroPage(memory, { setupHeader: kernel.setupHeader, cmdline: placed, initrd, e820, rsdp });
  const gdt = writeGdt(memory);
  writeMpTable(memory, { cpus });
  return {
    kernel,
    initrd,
    cmdline,
    e820,
    gdt,
    rsdp,
    entry: chooseEntry(kernel, config.entry, imageLabel(config.kernel)),
  };
}

/** Builds the ACPI tables for the machine, copies them into guest RAM and returns the RSDP's address. */
function writeAcpi(memory: GuestMemory, e820: readonly E820Entry[], cpus: number, slots: readonly MmioSlot[]): number {
  const virtioMmio = slots.map((s) => ({ base: s.base, size: VIRTIO_MMIO_SIZE, irq: s.irq }));
  const tables = buildAcpiTables({ cpus, virtioMmio });
  const end = tables.at + tables.bytes.length;
  // The kernel must read the tables and never reuse their memory: they have to lie in a reserved range.
  if (!e820.some((e) => e.type === E820_RESERVED && e.addr <= tables.at && end <= e.addr + e.size)) {
    throw new BootError(`ACPI tables at ${span(tables.at, tables.bytes.length)} are not in a reserved e820 range`);
  }
  memory.write(tables.at, tables.bytes, "ACPI tables");
  return tables.rsdpAt;
}
