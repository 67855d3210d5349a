/*L:150 Loading the kernel: we accept either a plain vmlinux (ELF) or the
 * self-unpacking bzImage that distributions ship, and tell them apart the way
 * the seed did, by the four bytes "\x7fELF" at the start. Whatever the format,
 * the rest of the launcher wants the same few facts back: where to jump, how
 * far up the kernel reaches (the initrd must go above that), the setup
 * header to put in the zero page if there is one, and the limits the kernel
 * sets for the initrd and the command line. :*/

import type { LoadTarget } from "../memory.ts";
import { loadBzImage } from "./bzimage.ts";
import { isElf, loadElf } from "./elf.ts";
import { BootError } from "./errors.ts";
import { readImageFile } from "./file.ts";

/*L:151 A vmlinux has no setup header, so it states no limits and we must
 * pick them. For the initrd we use 0x7fffffff, which is what every x86_64
 * bzImage advertises. For the command line the tempting answer is "our 64 KiB
 * buffer", but the kernel copies only COMMAND_LINE_SIZE bytes of it (2048 on
 * x86, NUL included) and silently drops the rest, so a long line would boot
 * with its tail missing. We allow 2047 characters, the same cmdline_size a
 * bzImage of the same kernel would report. :*/

/** Highest initrd address we assume for an ELF kernel (what x86_64 bzImages report). */
export const ELF_INITRD_ADDR_MAX = 0x7fff_ffff;
/** Longest command line for an ELF kernel: x86 COMMAND_LINE_SIZE (2048) minus the NUL. */
export const ELF_CMDLINE_SIZE = 2047;

/** A kernel in guest memory, whatever format it came in. */
export interface LoadedKernel {
  /** Which loader handled it. */
  readonly kind: "elf" | "bzimage";
  /** Guest physical address of the 64-bit entry point. */
  readonly entry: number;
  /** First guest address past everything the kernel occupies or needs to unpack. */
  readonly kernelEnd: number;
  /** For a bzImage: its setup header bytes, to copy into the zero page at 0x1f1. */
  readonly setupHeader?: Uint8Array;
  /** Highest address the initrd may occupy. */
  readonly initrdAddrMax: number;
  /** Longest command line, without its terminating NUL. */
  readonly cmdlineSize: number;
  /** For an ELF kernel with a Xen PVH note: the 32-bit PVH entry point. */
  readonly pvhEntry?: number;
}

/**
 * Loads a kernel image already in memory, dispatching on its format.
 * @param mem guest memory to load into
 * @param image the whole file
 * @param name the file's name, for error messages
 * @throws BootError naming the file and the problem
 */
export function loadKernelImage(
  mem: LoadTarget,
  image: Uint8Array,
  name: string,
): LoadedKernel {
  if (image.length === 0) throw new BootError(`${name}: file is empty`);
  if (isElf(image)) {
    const elf = loadElf(mem, image, name);
    const common = {
      kind: "elf",
      entry: elf.entry,
      kernelEnd: elf.highest,
      initrdAddrMax: ELF_INITRD_ADDR_MAX,
      cmdlineSize: ELF_CMDLINE_SIZE,
    } as const;
    return elf.pvhEntry === undefined ? common : { ...common, pvhEntry: elf.pvhEntry };
  }
  const bz = loadBzImage(mem, image, name);
  return {
    kind: "bzimage",
    entry: bz.entry,
    kernelEnd: bz.kernelEnd,
    setupHeader: bz.setupHeaderBytes,
    initrdAddrMax: bz.initrdAddrMax,
    cmdlineSize: bz.cmdlineSize,
  };
}

/**
 * Reads a kernel file and loads it into guest memory.
 * @param mem guest memory to load into
 * @param path the vmlinux or bzImage
 * @throws BootError if the file cannot be read, is empty, or is not a bootable kernel
 */
export function loadKernel(mem: LoadTarget, path: string): LoadedKernel {
  return loadKernelImage(mem, readImageFile(path, "kernel"), path);
}
