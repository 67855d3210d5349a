/** What a machine is built from, and what it reports: the types of lib/machine.ts's public API. */

import type { LoadedKernel } from "../boot/kernel.ts";
import type { InitrdPlacement } from "../boot/initrd.ts";
import type { E820Entry } from "../boot/e820.ts";
import type { VcpuExit } from "../vcpu_protocol.ts";
import type { VirtioDevice } from "../virtio/device.ts";

/** How to build a machine. */
export interface MachineConfig {
  /** Guest RAM in MiB. */
  memoryMiB: number;
  /** Path of an ELF vmlinux or a bzImage. */
  kernel: string;
  /** Path of an initrd / initramfs, if any. */
  initrd?: string | undefined;
  /** Kernel command line: a string, or arguments joined with spaces. */
  cmdline?: string | readonly string[] | undefined;
  /** Log unclaimed device accesses and boot decisions to stderr. */
  verbose?: boolean | undefined;
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
}

/** How a run ended. */
export type RunResult = VcpuExit;

/** The most guest RAM we accept, in MiB (1 TiB). */
export const MAX_MEMORY_MIB = 1024 * 1024;
