/*L:117 Which way into the kernel. There are two, and a kernel file may
 * offer both. A bzImage, and any vmlinux, can be entered by Linux's 64-bit
 * boot protocol: the vCPU starts in long mode on our page tables with the
 * zero page in rsi (L:200). An ELF vmlinux built with CONFIG_PVH also carries
 * Xen's PHYS32_ENTRY note (L:134), a 32-bit entry that wants nothing but a
 * flat protected-mode CPU and an hvm_start_info (L:192, L:205); that is how
 * QEMU and Firecracker boot a distribution's vmlinux, and it is the path that
 * kernel's authors test for "a VM with no firmware". So the rule, unless the
 * user says otherwise with `entry`: PVH when the note is there, the 64-bit
 * protocol when it is not. Asking for PVH from a kernel without the note is
 * an error, found while planning, before KVM is opened. --verbose prints
 * which entry was taken and why. :*/

import type { GuestMemory } from "../memory.ts";
import type { Vcpu } from "../kvm/vcpu.ts";
import { setLongModeEntry, setPvhEntry } from "../kvm/cpu_setup.ts";
import type { LoadedKernel } from "../boot/kernel.ts";
import { BootError, hex } from "../boot/errors.ts";
import { writePvhStartInfo } from "../boot/pvh.ts";
import { buildIdentityMap } from "../boot/pagetables.ts";
import { BOOT_CS, BOOT_CS32, BOOT_DS } from "../boot/gdt.ts";
import { BOOT_STACK_TOP, IDT_ADDR, ZERO_PAGE_ADDR } from "../boot/layout.ts";
import type { BootInfo } from "./config.ts";

/** What the user may ask for: the PVH entry where there is one ("auto"), always "pvh", or always "linux64". */
export type EntryChoice = "auto" | "pvh" | "linux64";
/** The entry taken: the 32-bit PVH entry or Linux's 64-bit boot protocol. */
export type BootEntry = "pvh" | "linux64";

/** The accepted values of {@link EntryChoice}. */
export const ENTRY_CHOICES: readonly EntryChoice[] = ["auto", "pvh", "linux64"];

/**
 * Chooses the boot vCPU's entry for a loaded kernel.
 * @param kernel the kernel as loaded (its `pvhEntry` is the note's address, if it has one)
 * @param wanted what the user asked for (default "auto")
 * @param name the kernel's file name, for the error
 * @returns "pvh" or "linux64"
 * @throws RangeError for an unknown choice; BootError if PVH is asked for and the kernel has no PVH note
 */
export function chooseEntry(kernel: LoadedKernel, wanted: EntryChoice = "auto", name = "kernel"): BootEntry {
  if (!ENTRY_CHOICES.includes(wanted)) {
    throw new RangeError(`entry must be one of ${ENTRY_CHOICES.join(", ")}, not ${JSON.stringify(wanted)}`);
  }
  if (wanted === "linux64") return "linux64";
  if (kernel.pvhEntry !== undefined) return "pvh";
  if (wanted === "auto") return "linux64";
  throw new BootError(
    kernel.kind === "bzimage"
      ? `${name}: the PVH entry needs an ELF vmlinux with the PVH note, and this is a bzImage`
      : `${name}: the PVH entry was asked for, but this ELF has no XEN_ELFNOTE_PHYS32_ENTRY note`,
  );
}

/**
 * Says which entry was taken and why, for --verbose.
 * @param kernel the kernel as loaded
 * @param entry the entry taken
 * @returns e.g. "PVH entry 0x1000abc (ELF note XEN_ELFNOTE_PHYS32_ENTRY)"
 */
export function describeEntry(kernel: LoadedKernel, entry: BootEntry): string {
  if (entry === "pvh" && kernel.pvhEntry !== undefined) {
    return `PVH entry ${hex(kernel.pvhEntry)} (ELF note XEN_ELFNOTE_PHYS32_ENTRY)`;
  }
  const why = kernel.kind === "bzimage"
    ? "bzImage"
    : kernel.pvhEntry === undefined
    ? "ELF without the PVH note"
    : "ELF with the PVH note, entry linux64 asked for";
  return `64-bit boot protocol entry ${hex(kernel.entry)} (${why})`;
}

/**
 * Puts the boot vCPU at the entry `info.entry` names. For PVH this first writes the hvm_start_info,
 * its memory map and module list (everything else, the command line, initrd and ACPI tables, is
 * already in place); for the 64-bit protocol it builds the identity-mapped page tables.
 * @param vcpu the boot vCPU
 * @param memory guest RAM, laid out by layOut()
 * @param info what layOut() placed, with the entry it chose
 */
export function setBootEntry(vcpu: Vcpu, memory: GuestMemory, info: BootInfo): void {
  const idt = { base: IDT_ADDR, limit: 0 };
  const pvhEntry = info.kernel.pvhEntry;
  if (info.entry === "pvh") {
    if (pvhEntry === undefined) throw new BootError(`the PVH entry was chosen for a kernel without a PVH note`);
    const startInfo = writePvhStartInfo(memory, {
      cmdline: info.cmdline,
      cmdlineSize: info.kernel.cmdlineSize,
      initrd: info.initrd,
      e820: info.e820,
      rsdp: info.rsdp,
    });
    setPvhEntry(vcpu, {
      entry: pvhEntry,
      startInfo,
      gdt: info.gdt,
      idt,
      codeSelector: BOOT_CS32,
      dataSelector: BOOT_DS,
    });
    return;
  }
  setLongModeEntry(vcpu, {
    entry: info.kernel.entry,
    zeroPage: ZERO_PAGE_ADDR,
    cr3: buildIdentityMap(memory),
    gdt: info.gdt,
    idt,
    codeSelector: BOOT_CS,
    dataSelector: BOOT_DS,
    stack: BOOT_STACK_TOP,
  });
}
