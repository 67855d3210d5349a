/*L:160 The initial RAM disk goes where the seed put it: at the top of
 * memory, out of everyone's way. "The top" needs two qualifications on a
 * modern machine. The kernel states the highest address it can read an
 * initrd from (initrd_addr_max), and RAM above 4 GiB is only reachable
 * through fields we do not need, so we stay in the first RAM region, below
 * the device hole. And the initrd must not sit anywhere the kernel will
 * unpack itself into, so it must stay above kernelEnd (and, whatever the
 * caller says, above the launcher's own structures below 1 MiB). Within
 * those bounds we take the highest page-aligned spot that fits. :*/

import type { LoadTarget } from "../memory.ts";
import { BootError, hex, sizeText } from "./errors.ts";
import { readImageFile } from "./file.ts";
import { HIMEM_START } from "./layout.ts";

const PAGE = 4096;

/** Where an initrd was placed. */
export interface InitrdPlacement {
  /** Guest physical address of its first byte (page aligned). */
  readonly addr: number;
  /** Its size in bytes (the file's size, not rounded). */
  readonly size: number;
}

/** The constraints {@link placeInitrd} works within. */
export interface InitrdLimits {
  /** First address past the kernel; the initrd must start at or above it. */
  readonly kernelEnd: number;
  /** Highest address the initrd may occupy (inclusive), from the kernel. */
  readonly addrMax: number;
}

/**
 * Chooses the initrd's address: as high as possible, page aligned, ending at
 * or below min(addrMax + 1, end of the first RAM region), above the kernel.
 * @param mem guest memory (only its layout is consulted)
 * @param size the initrd's size in bytes
 * @param limits the kernel's end and its initrd_addr_max
 * @param name the file's name, for error messages
 * @throws BootError if it does not fit
 */
export function initrdAddress(
  mem: LoadTarget,
  size: number,
  limits: InitrdLimits,
  name: string,
): number {
  const low = mem.regions[0];
  const ceiling = Math.min(
    limits.addrMax + 1,
    low === undefined ? 0 : low.gpa + low.size,
  );
  const floor = Math.max(
    HIMEM_START,
    Math.ceil(limits.kernelEnd / PAGE) * PAGE,
  );
  const addr = Math.floor((ceiling - size) / PAGE) * PAGE;
  if (size <= 0 || addr < floor || !mem.contains(addr, size)) {
    const where = `below ${hex(limits.addrMax)} and above the kernel (${hex(limits.kernelEnd)})`;
    throw new BootError(`initrd ${name} (${sizeText(size)}) does not fit ${where} in ${sizeText(mem.size)} of RAM`);
  }
  return addr;
}

/**
 * Places initrd bytes in guest memory (see {@link initrdAddress}).
 * @param mem guest memory to write into
 * @param data the initrd's contents, not empty
 * @param limits the kernel's end and its initrd_addr_max
 * @param name the file's name, for error messages
 * @returns where it went and how big it is
 * @throws BootError if it is empty or does not fit
 */
export function placeInitrd(
  mem: LoadTarget,
  data: Uint8Array,
  limits: InitrdLimits,
  name = "initrd",
): InitrdPlacement {
  if (data.length === 0) throw new BootError(`initrd ${name}: file is empty`);
  const addr = initrdAddress(mem, data.length, limits, name);
  mem.write(addr, data, `initrd ${name}`);
  return { addr, size: data.length };
}

/**
 * Reads an initrd file and places it in guest memory.
 * @param mem guest memory to write into
 * @param path the initrd file
 * @param limits the kernel's end and its initrd_addr_max
 * @throws BootError if it cannot be read, is empty, or does not fit
 */
export function loadInitrd(
  mem: LoadTarget,
  path: string,
  limits: InitrdLimits,
): InitrdPlacement {
  return placeInitrd(mem, readImageFile(path, "initrd"), limits, path);
}
