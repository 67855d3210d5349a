/*L:170 The e820 map is how a PC tells the kernel where its RAM is (the name
 * is the BIOS call that used to produce it). The seed's guest had one entry:
 * all of memory is RAM. A kernel on a PC expects more ceremony. The 384 KiB
 * below 1 MiB that once held video memory and the BIOS is never RAM, and the
 * last KiB before it is where the BIOS data area lives and where we put the
 * MP table, so we report [0x9fc00, 1 MiB) as reserved; the kernel will then
 * leave our tables alone. Above that, each piece of guest RAM is RAM, and
 * any extra ranges the caller names (KVM's TSS pages, say) are carved out
 * and marked reserved so the kernel never hands them out. :*/

import type { GuestMemory, MemoryRegion } from "../memory.ts";
import { E820_ENTRY_SIZE, E820_MAX_ENTRIES, fieldBytes, getField, setField } from "./bootparam.ts";
import { BootError, sizeText } from "./errors.ts";
import { EBDA_START, HIMEM_START } from "./layout.ts";

/** e820 type: usable RAM. */
export const E820_RAM = 1;
/** e820 type: reserved, not for the kernel's use. */
export const E820_RESERVED = 2;
/** The smallest guest we agree to build a memory map for. */
export const MIN_GUEST_MEMORY = 2 * 1024 * 1024;

/** One e820 entry. */
export interface E820Entry {
  /** First guest physical address. */
  readonly addr: number;
  /** Length in bytes. */
  readonly size: number;
  /** {@link E820_RAM} or {@link E820_RESERVED}. */
  readonly type: number;
}

/** A guest physical range to report as reserved. */
export interface ReservedRange {
  /** First guest physical address. */
  readonly addr: number;
  /** Length in bytes. */
  readonly size: number;
}

/**
 * Rejects guest sizes too small to boot: the first MiB is spoken for, and a
 * kernel needs room above it.
 * @throws BootError if `size` is below {@link MIN_GUEST_MEMORY}
 */
export function validateMemorySize(size: number): void {
  if (!Number.isSafeInteger(size) || size < MIN_GUEST_MEMORY) {
    throw new BootError(
      `guest memory of ${sizeText(size)} is too small (need at least ${sizeText(MIN_GUEST_MEMORY)})`,
    );
  }
}

function subtract(
  entries: readonly E820Entry[],
  cut: ReservedRange,
): E820Entry[] {
  const out: E820Entry[] = [];
  const cutEnd = cut.addr + cut.size;
  for (const e of entries) {
    const end = e.addr + e.size;
    if (cutEnd <= e.addr || cut.addr >= end) {
      out.push(e);
      continue;
    }
    if (cut.addr > e.addr) {
      out.push({ addr: e.addr, size: cut.addr - e.addr, type: e.type });
    }
    if (cutEnd < end) {
      out.push({ addr: cutEnd, size: end - cutEnd, type: e.type });
    }
  }
  return out;
}

/**
 * Builds the guest's e820 map.
 * @param regions the guest's RAM regions (GuestMemory.regions), the first starting at 0
 * @param reserved extra ranges to report as reserved (they may lie inside or outside RAM)
 * @returns entries sorted by address, non-overlapping, adjacent equal types merged
 * @throws BootError if RAM is too small or the map would not fit in the zero page
 */
export function buildE820(
  regions: readonly MemoryRegion[],
  reserved: readonly ReservedRange[] = [],
): E820Entry[] {
  const first = regions[0];
  if (first === undefined || first.gpa !== 0 || first.size <= HIMEM_START) {
    throw new BootError(
      `guest memory is too small: the first RAM region must start at 0 and reach past 1 MiB`,
    );
  }
  let entries: E820Entry[] = [
    { addr: 0, size: EBDA_START, type: E820_RAM },
    { addr: EBDA_START, size: HIMEM_START - EBDA_START, type: E820_RESERVED },
    { addr: HIMEM_START, size: first.size - HIMEM_START, type: E820_RAM },
    ...regions.slice(1).map((r) => ({
      addr: r.gpa,
      size: r.size,
      type: E820_RAM,
    })),
  ];
  for (const r of reserved) {
    if (r.size <= 0) continue;
    entries = subtract(entries, r);
    entries.push({ addr: r.addr, size: r.size, type: E820_RESERVED });
  }
  entries.sort((a, b) => a.addr - b.addr);
  const merged: E820Entry[] = [];
  for (const e of entries) {
    const last = merged[merged.length - 1];
    if (
      last !== undefined && last.type === e.type &&
      last.addr + last.size >= e.addr
    ) {
      const end = Math.max(last.addr + last.size, e.addr + e.size);
      merged[merged.length - 1] = {
        addr: last.addr,
        size: end - last.addr,
        type: e.type,
      };
    } else {
      merged.push(e);
    }
  }
  if (merged.length > E820_MAX_ENTRIES) {
    throw new BootError(
      `e820 map has ${merged.length} entries; the zero page holds ${E820_MAX_ENTRIES}`,
    );
  }
  return merged;
}

/** The e820 map for a guest's memory, plus any extra reserved ranges. */
export function e820ForMemory(
  mem: GuestMemory,
  reserved: readonly ReservedRange[] = [],
): E820Entry[] {
  validateMemorySize(mem.size);
  return buildE820(mem.regions, reserved);
}

/**
 * Writes e820_entries and e820_table into a zero page.
 * @param zeroPage the 4 KiB struct boot_params
 * @param entries the map (see {@link buildE820})
 */
export function writeE820(
  zeroPage: Uint8Array,
  entries: readonly E820Entry[],
): void {
  if (entries.length > E820_MAX_ENTRIES) {
    throw new BootError(
      `e820 map has ${entries.length} entries; the zero page holds ${E820_MAX_ENTRIES}`,
    );
  }
  const table = fieldBytes(zeroPage, "e820_table");
  const view = new DataView(table.buffer, table.byteOffset, table.byteLength);
  entries.forEach((e, i) => {
    const at = i * E820_ENTRY_SIZE;
    view.setBigUint64(at, BigInt(e.addr), true);
    view.setBigUint64(at + 8, BigInt(e.size), true);
    view.setUint32(at + 16, e.type, true);
  });
  setField(zeroPage, "e820_entries", entries.length);
}

/** Reads the e820 map back out of a zero page (for tests and diagnostics). */
export function readE820(zeroPage: Uint8Array): E820Entry[] {
  const count = Math.min(getField(zeroPage, "e820_entries"), E820_MAX_ENTRIES);
  const table = fieldBytes(zeroPage, "e820_table");
  const view = new DataView(table.buffer, table.byteOffset, table.byteLength);
  const out: E820Entry[] = [];
  for (let i = 0; i < count; i++) {
    const at = i * E820_ENTRY_SIZE;
    out.push({
      addr: Number(view.getBigUint64(at, true)),
      size: Number(view.getBigUint64(at + 8, true)),
      type: view.getUint32(at + 16, true),
    });
  }
  return out;
}
