/*L:175 The zero page is the kernel's one parcel of facts from its loader,
 * and the 64-bit boot protocol is explicit about how to fill it: start from
 * a page of zeroes, copy in the kernel's own setup header (so every field we
 * do not understand keeps the value the kernel chose), then fill in the
 * fields a loader owns. Those are: who we are (type_of_loader 0xff, "no
 * registered id"), that the heap pointer is valid, where the command line
 * and initrd went, and the memory map. Addresses wider than 32 bits spill
 * into the ext_ fields, which protocol 2.12 added for exactly that.
 *
 * A vmlinux brings no setup header, but the kernel still reads parts of
 * one: a zero hdr.version, for instance, is how early setup decides it has
 * not yet copied the zero page. So for an ELF kernel we write a minimal
 * header of our own: the signature, the boot flag, protocol 2.15 and the
 * 16 MiB alignment x86_64 kernels are linked for.
 *
 * One more field is ours when the machine has ACPI tables: acpi_rsdp_addr
 * (protocol 2.14) names the RSDP, so the kernel need not scan for it. :*/

import type { GuestMemory } from "../memory.ts";
import {
  BOOT_FLAG_MAGIC,
  BOOT_PARAMS,
  CAN_USE_HEAP,
  getField,
  HDRS_MAGIC,
  LOADED_HIGH,
  LOADER_TYPE_UNDEFINED,
  setField,
  SETUP_HEADER_LIMIT,
  SETUP_HEADER_OFFSET,
} from "./bootparam.ts";
import { type E820Entry, writeE820 } from "./e820.ts";
import { BootError, span } from "./errors.ts";
import { ZERO_PAGE_ADDR } from "./layout.ts";

/** The boot protocol version we claim for an ELF kernel (2.15). */
export const ELF_BOOT_PROTOCOL = 0x020f;
/** heap_end_ptr: end of the real-mode heap, relative to the setup code, per boot.rst. */
export const HEAP_END_PTR = 0xfe00;
/** kernel_alignment we report for an ELF kernel (16 MiB, as x86_64 kernels are linked). */
export const ELF_KERNEL_ALIGNMENT = 0x100_0000;

/** What goes into the zero page. */
export interface ZeroPageOptions {
  /** A bzImage's setup header bytes (from 0x1f1); absent for an ELF kernel. */
  readonly setupHeader?: Uint8Array | undefined;
  /** Where the command line is and how long it is (without the NUL). */
  readonly cmdline: { readonly addr: number; readonly length: number };
  /** Where the initrd is, if there is one. */
  readonly initrd?:
    | { readonly addr: number; readonly size: number }
    | undefined;
  /** The memory map. */
  readonly e820: readonly E820Entry[];
  /** Where the ACPI RSDP is, for acpi_rsdp_addr; absent for a machine without ACPI tables. */
  readonly rsdp?: number | undefined;
}

function low32(value: number): number {
  return value % 2 ** 32;
}

function high32(value: number): number {
  return Math.floor(value / 2 ** 32);
}

function writeElfHeader(page: Uint8Array): void {
  setField(page, "hdr.boot_flag", BOOT_FLAG_MAGIC);
  setField(page, "hdr.header", HDRS_MAGIC);
  setField(page, "hdr.version", ELF_BOOT_PROTOCOL);
  setField(page, "hdr.loadflags", LOADED_HIGH);
  setField(page, "hdr.kernel_alignment", ELF_KERNEL_ALIGNMENT);
}

/**
 * Builds struct boot_params at ZERO_PAGE_ADDR.
 * @param mem guest memory
 * @param options setup header, command line, initrd and memory map
 * @returns the zero page's guest physical address (for %rsi at entry)
 * @throws BootError if the setup header does not fit its slot, or the
 *   command line or initrd lies outside guest RAM
 */
export function buildZeroPage(
  mem: GuestMemory,
  options: ZeroPageOptions,
): number {
  const page = mem.slice(ZERO_PAGE_ADDR, BOOT_PARAMS.size, "zero page");
  page.fill(0);
  const { setupHeader } = options;
  if (setupHeader === undefined) {
    writeElfHeader(page);
  } else {
    if (SETUP_HEADER_OFFSET + setupHeader.length > SETUP_HEADER_LIMIT) {
      throw new BootError(
        `setup header of ${setupHeader.length} bytes does not fit in the zero page`,
      );
    }
    page.set(setupHeader, SETUP_HEADER_OFFSET);
  }

  setField(page, "hdr.type_of_loader", LOADER_TYPE_UNDEFINED);
  setField(
    page,
    "hdr.loadflags",
    getField(page, "hdr.loadflags") | CAN_USE_HEAP,
  );
  setField(page, "hdr.heap_end_ptr", HEAP_END_PTR);

  const { cmdline, initrd } = options;
  if (!mem.contains(cmdline.addr, cmdline.length + 1)) {
    throw new BootError(
      `kernel command line at ${span(cmdline.addr, cmdline.length + 1)} is outside guest RAM`,
    );
  }
  if (initrd !== undefined && !mem.contains(initrd.addr, initrd.size)) {
    throw new BootError(
      `initrd at ${span(initrd.addr, initrd.size)} is outside guest RAM`,
    );
  }
  setField(page, "hdr.cmd_line_ptr", low32(cmdline.addr));
  setField(page, "ext_cmd_line_ptr", high32(cmdline.addr));
  if (initrd !== undefined) {
    setField(page, "hdr.ramdisk_image", low32(initrd.addr));
    setField(page, "ext_ramdisk_image", high32(initrd.addr));
    setField(page, "hdr.ramdisk_size", low32(initrd.size));
    setField(page, "ext_ramdisk_size", high32(initrd.size));
  }
  writeE820(page, options.e820);
  if (options.rsdp !== undefined) setField(page, "acpi_rsdp_addr", BigInt(options.rsdp));
  return ZERO_PAGE_ADDR;
}
