/*L:180 The 64-bit entry point must be entered in long mode, and long mode
 * means paging is on, so before the first instruction we owe the kernel page
 * tables. boot.rst asks only that the kernel, the zero page and the command
 * line be identity mapped; we map the whole first 4 GiB, virtual equals
 * physical, which covers all of those and the device hole besides. The seed
 * built a linear map with one PTE per page; with 2 MiB pages the job takes
 * just six pages: one PML4, one PDPT and four page directories of 512
 * entries each. The kernel replaces them within microseconds of starting.
 *
 * translate() walks the tables the way the MMU would, so tests can read back
 * what we built instead of trusting the code that built it. :*/

import type { GuestMemory } from "../memory.ts";
import { PAGE_TABLES_END, PD_ADDR, PDPT_ADDR, PML4_ADDR } from "./layout.ts";

/** Page table entry bit: present. */
export const PTE_PRESENT = 1n << 0n;
/** Page table entry bit: writable. */
export const PTE_WRITABLE = 1n << 1n;
/** Page table entry bit: this entry maps a large page (2 MiB in a PD, 1 GiB in a PDPT). */
export const PTE_PAGE_SIZE = 1n << 7n;
/** How much the identity map covers. */
export const IDENTITY_MAP_SIZE = 4 * 1024 ** 3;

const TABLE_SIZE = 4096;
const ENTRIES = 512;
const HUGE_2M = 2n * 1024n * 1024n;
const ADDRESS_MASK = 0x000f_ffff_ffff_f000n;
const PD_COUNT = IDENTITY_MAP_SIZE / (ENTRIES * Number(HUGE_2M));

/**
 * Writes the identity map of the first 4 GiB (2 MiB pages).
 * @param mem guest memory holding PML4_ADDR..PAGE_TABLES_END
 * @returns the value for CR3 (the PML4's physical address)
 */
export function buildIdentityMap(mem: GuestMemory): number {
  mem.fill(PML4_ADDR, PAGE_TABLES_END - PML4_ADDR, 0, "page tables");
  const table = PTE_PRESENT | PTE_WRITABLE;
  mem.writeU64(PML4_ADDR, BigInt(PDPT_ADDR) | table);
  for (let d = 0; d < PD_COUNT; d++) {
    const pd = PD_ADDR + d * TABLE_SIZE;
    mem.writeU64(PDPT_ADDR + d * 8, BigInt(pd) | table);
    for (let i = 0; i < ENTRIES; i++) {
      const phys = BigInt(d * ENTRIES + i) * HUGE_2M;
      mem.writeU64(pd + i * 8, phys | table | PTE_PAGE_SIZE);
    }
  }
  return PML4_ADDR;
}

function entryAt(
  mem: GuestMemory,
  table: bigint,
  index: bigint,
): bigint | null {
  const gpa = (table & ADDRESS_MASK) + index * 8n;
  if (!mem.contains(gpa, 8)) return null;
  return mem.readU64(gpa);
}

/**
 * Translates a virtual address through 4-level page tables in guest memory.
 * @param mem guest memory holding the tables
 * @param cr3 the PML4's physical address
 * @param va the virtual address (must be canonical)
 * @returns the physical address, or null if unmapped or the walk leaves RAM
 */
export function translate(
  mem: GuestMemory,
  cr3: number | bigint,
  va: number | bigint,
): bigint | null {
  const v = BigInt(va);
  const upper = v >> 47n;
  if (v < 0n || (upper !== 0n && upper !== 0x1_ffffn)) return null;
  let table = BigInt(cr3);
  for (let level = 3; level >= 0; level--) {
    const shift = 12n + 9n * BigInt(level);
    const entry = entryAt(mem, table, (v >> shift) & 0x1ffn);
    if (entry === null || (entry & PTE_PRESENT) === 0n) return null;
    const large = level === 1 || level === 2;
    if (level === 0 || (large && (entry & PTE_PAGE_SIZE) !== 0n)) {
      const pageMask = (1n << shift) - 1n;
      return (entry & ADDRESS_MASK & ~pageMask) | (v & pageMask);
    }
    table = entry;
  }
  return null;
}
