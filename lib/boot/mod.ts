/**
 * Booting a Linux guest: loading the kernel (vmlinux or bzImage) and the
 * initrd into guest memory, and building what the 64-bit entry point expects
 * to find there: the zero page with its e820 map, the command line, identity
 * page tables and the boot GDT.
 * @module
 */

export type { GuestMemory, MemoryRegion } from "../memory.ts";
export * from "./bootparam.ts";
export * from "./bzimage.ts";
export * from "./cmdline.ts";
export * from "./e820.ts";
export * from "./elf.ts";
export * from "./errors.ts";
export * from "./file.ts";
export * from "./gdt.ts";
export * from "./initrd.ts";
export * from "./kernel.ts";
export * from "./layout.ts";
export * from "./pagetables.ts";
export * from "./zeropage.ts";
export * from "./mptable.ts";
