/** What a machine is built from, and what it reports: the types of lib/machine.ts's public API. */

import type { LoadedKernel } from "../boot/kernel.ts";
import type { InitrdPlacement } from "../boot/initrd.ts";
import type { E820Entry } from "../boot/e820.ts";
import type { VcpuExit } from "../vcpu_protocol.ts";
import type { VirtioDevice } from "../virtio/device.ts";
import type { BootEntry, EntryChoice } from "./entry.ts";
import type { BootTimings } from "../timings.ts";

/** How to build a machine. */
export interface MachineConfig {
  /** Guest RAM in MiB. */
  memoryMiB: number;
  /** An ELF vmlinux or a bzImage: its path, or its bytes (read in place, not copied). */
  kernel: string | Uint8Array;
  /** An initrd / initramfs, if any: its path, or its bytes. */
  initrd?: string | Uint8Array | undefined;
  /** Kernel command line: a string, or arguments joined with spaces. */
  cmdline?: string | readonly string[] | undefined;
  /** Log unclaimed device accesses and boot decisions to stderr. */
  verbose?: boolean | undefined;
  /**
   * Who holds the serial console: "stdio" (the default) wires it to `consoleOutputFd` and
   * `consoleInputFd`; "script" wires it to `Machine.console`, a console this program reads, waits
   * on and types into (the two fds are then ignored, and three Ctrl-C in the input are just bytes).
   */
  console?: "stdio" | "script" | undefined;
  /** Where the serial console writes (default 1, stdout). */
  consoleOutputFd?: number | undefined;
  /** Where the serial console reads (default 0, stdin; null for none). */
  consoleInputFd?: number | null | undefined;
  /** Back guest RAM with transparent huge pages. */
  hugePages?: boolean | undefined;
  /** /dev/kvm path (default /dev/kvm). */
  kvmPath?: string | undefined;
  /**
   * Virtio devices, in the order the guest should find them. The last `ConsoleDevice` among them is
   * hvc0: it gets the keyboard when the command line's last console= names hvc0. The machine owns them
   * from the moment `Machine.create` is called, whether it succeeds or not: a failed create() closes
   * them, and so does `Machine.close`.
   */
  devices?: readonly VirtioDevice[] | undefined;
  /**
   * Describe the machine with ACPI tables (default true): an RSDP in the BIOS area, a DSDT that
   * declares COM1 and every virtio device, and power-off through the FADT's sleep register. With
   * false there are no ACPI tables and the devices are declared with `virtio_mmio.device=` words on
   * the command line instead, for kernels built without CONFIG_ACPI.
   */
  acpi?: boolean | undefined;
  /** vCPUs (default 1, 1..64): local APIC ids 0..cpus-1 in the MP table and the MADT. */
  cpus?: number | undefined;
  /**
   * How the boot vCPU enters the kernel (default "auto"): "auto" takes the 32-bit PVH entry when the
   * kernel is an ELF with Xen's PHYS32_ENTRY note and Linux's 64-bit boot protocol otherwise; "pvh"
   * insists on the note; "linux64" always takes the 64-bit boot protocol.
   */
  entry?: EntryChoice | undefined;
  /**
   * Where to note the boot's phases (`BootTimings.start()` from lib/timings.ts, made as early as the
   * caller can): the machine marks the vCPU Worker's modules loaded, the VM built, the kernel entered,
   * the first console byte, every boot-timer write (each also printed on stderr), the guest stopped
   * and the machine torn down; the caller marks "runtime up" and reads `report()` after close().
   */
  timings?: BootTimings | undefined;
}

/** What the launcher placed where, for --verbose and tests. */
export interface BootInfo {
  /** The kernel as loaded. */
  kernel: LoadedKernel;
  /** The initrd placement, if any. */
  initrd: InitrdPlacement | undefined;
  /** The command line as written. */
  cmdline: string;
  /** The memory map handed to the guest. */
  e820: readonly E820Entry[];
  /** Where the boot GDT is. */
  gdt: { base: number; limit: number };
  /** Where the ACPI RSDP is (also in boot_params.acpi_rsdp_addr); undefined with `acpi: false`. */
  rsdp: number | undefined;
  /** The entry the boot vCPU starts at: the PVH entry, or Linux's 64-bit boot protocol. */
  entry: BootEntry;
}

/** How a run ended. */
export type RunResult = VcpuExit;

/** The most vCPUs we accept (`MachineConfig.cpus`). */
export const MAX_CPUS = 64;

/** The most guest RAM we accept, in MiB (1 TiB). */
export const MAX_MEMORY_MIB = 1024 * 1024;
