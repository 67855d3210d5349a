/*L:185 Segmentation is almost dead in long mode, but not quite: the CPU
 * still loads a descriptor for every selector it is handed, and the 64-bit
 * boot protocol names the selectors it expects, __BOOT_CS (0x10) and
 * __BOOT_DS (0x18), both flat 4 GiB segments. So we need a GDT with those
 * two in slots 2 and 3, slots 0 and 1 left empty as Linux's own boot GDT
 * does. Slot 4 is for the PVH entry (L:205), which starts the kernel in
 * 32-bit protected mode and so needs a 32-bit code segment: the same flat
 * segment with D=1 (32-bit operands) and L clear.
 *
 * A descriptor is eight bytes with its fields scattered for historical
 * reasons: the base in three pieces, the limit in two, and the access byte
 * and flag nibble in between. The code segment's flags are G=1 (limit in
 * 4 KiB units) and L=1 (64-bit code), with D clear because L and D together
 * are reserved. The same fields are what KVM's kvm_segment wants for the
 * hidden part of each segment register, hence the decoder. :*/

import type { GuestMemory } from "../memory.ts";
import { GDT_ADDR } from "./layout.ts";

/** Selector of the 64-bit boot code segment (__BOOT_CS). */
export const BOOT_CS = 0x10;
/** Selector of the boot data segment (__BOOT_DS). */
export const BOOT_DS = 0x18;
/** Access byte of the code segment: present, DPL 0, code, execute/read, accessed. */
export const CODE_ACCESS = 0x9b;
/** Access byte of the data segment: present, DPL 0, data, read/write, accessed. */
export const DATA_ACCESS = 0x93;
/** Selector of the 32-bit flat code segment the PVH entry starts in. */
export const BOOT_CS32 = 0x20;
/** Flag nibble for 64-bit code: G=1, L=1. */
export const FLAGS_CODE64 = 0xa;
/** Flag nibble for 32-bit code: G=1, D=1. */
export const FLAGS_CODE32 = 0xc;
/** Flag nibble for flat data: G=1, D/B=1. */
export const FLAGS_DATA = 0xc;

/** A segment descriptor's fields, as kvm_segment spells them. */
export interface SegmentFields {
  /** Segment base (32 bits). */
  readonly base: number;
  /** Raw 20-bit limit; in 4 KiB units when g is 1. */
  readonly limit: number;
  /** Type nibble (for code: execute/conforming/read/accessed). */
  readonly type: number;
  /** 1 for code/data, 0 for system descriptors. */
  readonly s: number;
  /** Descriptor privilege level, 0..3. */
  readonly dpl: number;
  /** Present bit. */
  readonly present: number;
  /** Available-for-software bit. */
  readonly avl: number;
  /** 64-bit code bit. */
  readonly l: number;
  /** Default operand size bit (D/B). */
  readonly db: number;
  /** Granularity bit: limit in 4 KiB units. */
  readonly g: number;
}

/**
 * Encodes a segment descriptor.
 * @param base 32-bit base
 * @param limit 20-bit limit
 * @param access the access byte (P, DPL, S, type)
 * @param flags the flag nibble (G, D/B, L, AVL from high bit to low)
 */
export function gdtEntry(
  base: number,
  limit: number,
  access: number,
  flags: number,
): bigint {
  const b = BigInt(base >>> 0);
  const l = BigInt(limit & 0xfffff);
  return (l & 0xffffn) |
    ((b & 0xff_ffffn) << 16n) |
    (BigInt(access & 0xff) << 40n) |
    ((l >> 16n) << 48n) |
    (BigInt(flags & 0xf) << 52n) |
    ((b >> 24n) << 56n);
}

/** Decodes a segment descriptor into its fields. */
export function decodeSegment(descriptor: bigint): SegmentFields {
  const bits = (shift: bigint, width: bigint) => Number((descriptor >> shift) & ((1n << width) - 1n));
  return {
    base: bits(16n, 24n) + bits(56n, 8n) * 0x100_0000,
    limit: bits(0n, 16n) | (bits(48n, 4n) << 16),
    type: bits(40n, 4n),
    s: bits(44n, 1n),
    dpl: bits(45n, 2n),
    present: bits(47n, 1n),
    avl: bits(52n, 1n),
    l: bits(53n, 1n),
    db: bits(54n, 1n),
    g: bits(55n, 1n),
  };
}

/** The boot GDT: two null slots, __BOOT_CS, __BOOT_DS, then the PVH entry's 32-bit code. */
export const BOOT_GDT: readonly bigint[] = [
  0n,
  0n,
  gdtEntry(0, 0xfffff, CODE_ACCESS, FLAGS_CODE64),
  gdtEntry(0, 0xfffff, DATA_ACCESS, FLAGS_DATA),
  gdtEntry(0, 0xfffff, CODE_ACCESS, FLAGS_CODE32),
];

/** A GDTR value: the table's address and its limit (size - 1). */
export interface GdtRegister {
  /** Guest physical address of the table. */
  readonly base: number;
  /** Size of the table in bytes, minus one. */
  readonly limit: number;
}

/**
 * Writes the boot GDT at GDT_ADDR.
 * @returns the GDTR to load
 */
export function writeGdt(mem: GuestMemory): GdtRegister {
  BOOT_GDT.forEach((d, i) => mem.writeU64(GDT_ADDR + i * 8, d));
  return { base: GDT_ADDR, limit: BOOT_GDT.length * 8 - 1 };
}
