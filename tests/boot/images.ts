/**
 * Byte builders for synthetic boot images, shared by the boot tests. They
 * write every offset by hand (independently of lib/boot) so a wrong offset in
 * the loader cannot be cancelled out by the same mistake here.
 * @module
 */

import { BootError } from "../../lib/boot/errors.ts";
import { GuestMemory } from "../../lib/memory.ts";

/** One program header for {@link buildElf}. */
export interface SegmentSpec {
  /** p_type (default PT_LOAD). */
  type?: number;
  /** p_paddr. */
  paddr: number;
  /** p_vaddr (default: same as paddr). */
  vaddr?: bigint;
  /** p_filesz; that many pattern bytes are written to the file. */
  filesz: number;
  /** p_memsz. */
  memsz: number;
  /** File contents for the segment (default: a pattern derived from its index). */
  data?: Uint8Array;
  /** p_align (default 0x1000). */
  align?: number;
}

/** Options for {@link buildElf}. */
export interface ElfSpec {
  /** e_entry. */
  entry: bigint | number;
  /** Program headers, in order. */
  segments: SegmentSpec[];
}

/** The byte a segment's file data holds at `i` (for checking copies). */
export function patternByte(segment: number, i: number): number {
  return (segment * 37 + i * 7 + 1) & 0xff;
}

/** Builds an ELF64 x86_64 ET_EXEC image: header, program headers, then segment data. */
export function buildElf(spec: ElfSpec): Uint8Array {
  const phoff = 64;
  let dataAt = phoff + spec.segments.length * 56;
  const offsets: number[] = [];
  for (const s of spec.segments) {
    dataAt = Math.ceil(dataAt / 16) * 16;
    offsets.push(dataAt);
    dataAt += s.data?.length ?? s.filesz;
  }
  const out = new Uint8Array(dataAt);
  const v = new DataView(out.buffer);
  out.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]);
  v.setUint16(16, 2, true);
  v.setUint16(18, 62, true);
  v.setUint32(20, 1, true);
  v.setBigUint64(24, BigInt(spec.entry), true);
  v.setBigUint64(32, BigInt(phoff), true);
  v.setUint16(52, 64, true);
  v.setUint16(54, 56, true);
  v.setUint16(56, spec.segments.length, true);
  spec.segments.forEach((s, i) => {
    const p = phoff + i * 56;
    const off = offsets[i] ?? 0;
    v.setUint32(p, s.type ?? 1, true);
    v.setUint32(p + 4, 7, true);
    v.setBigUint64(p + 8, BigInt(off), true);
    v.setBigUint64(p + 16, s.vaddr ?? BigInt(s.paddr), true);
    v.setBigUint64(p + 24, BigInt(s.paddr), true);
    v.setBigUint64(p + 32, BigInt(s.filesz), true);
    v.setBigUint64(p + 40, BigInt(s.memsz), true);
    v.setBigUint64(p + 48, BigInt(s.align ?? 0x1000), true);
    const data = s.data ??
      Uint8Array.from({ length: s.filesz }, (_, k) => patternByte(i, k));
    out.set(data, off);
  });
  return out;
}

/** A Xen PVH entry note (owner "Xen", type 18) carrying `entry` as a u32 or u64. */
export function pvhNote(entry: number, width: 4 | 8 = 4): Uint8Array {
  const out = new Uint8Array(12 + 4 + width);
  const v = new DataView(out.buffer);
  v.setUint32(0, 4, true);
  v.setUint32(4, width, true);
  v.setUint32(8, 18, true);
  out.set([0x58, 0x65, 0x6e, 0], 12);
  if (width === 4) v.setUint32(16, entry, true);
  else v.setBigUint64(16, BigInt(entry), true);
  return out;
}

/** The valid two-segment ELF most tests start from (entry 0x100000). */
export function validElf(): Uint8Array {
  return buildElf({
    entry: 0x100000,
    segments: [
      { paddr: 0x100000, filesz: 0x1000, memsz: 0x3000 },
      { paddr: 0x200000, filesz: 0x800, memsz: 0x800 },
    ],
  });
}

/** Options for {@link buildBzImage}. */
export interface BzSpec {
  /** setup_sects (default 1). */
  setupSects?: number;
  /** Protocol version (default 0x20f). */
  version?: number;
  /** xloadflags (default XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G). */
  xloadflags?: number;
  /** loadflags (default LOADED_HIGH). */
  loadflags?: number;
  /** relocatable_kernel (default 1). */
  relocatable?: number;
  /** kernel_alignment (default 2 MiB). */
  kernelAlignment?: number;
  /** pref_address (default 16 MiB). */
  prefAddress?: bigint;
  /** init_size (default 8 MiB). */
  initSize?: number;
  /** initrd_addr_max (default 0x7fffffff). */
  initrdAddrMax?: number;
  /** cmdline_size (default 2047). */
  cmdlineSize?: number;
  /** Protected-mode payload (default 8 KiB of pattern). */
  payload?: Uint8Array;
}

/** The setup header's end in synthetic bzImages: 0x202 + 0x6a, as in Linux 6.x. */
export const BZ_HEADER_END = 0x26c;

/** Builds a bzImage: boot sector + setup sectors carrying the header, then the payload. */
export function buildBzImage(spec: BzSpec = {}): Uint8Array {
  const setupSects = spec.setupSects ?? 1;
  const payload = spec.payload ??
    Uint8Array.from({ length: 8192 }, (_, k) => patternByte(9, k));
  const setupBytes = ((setupSects || 4) + 1) * 512;
  const out = new Uint8Array(setupBytes + payload.length);
  const v = new DataView(out.buffer);
  v.setUint8(0x1f1, setupSects);
  v.setUint32(0x1f4, Math.ceil(payload.length / 16), true);
  v.setUint16(0x1fe, 0xaa55, true);
  v.setUint8(0x200, 0xeb);
  v.setUint8(0x201, BZ_HEADER_END - 0x202);
  out.set([0x48, 0x64, 0x72, 0x53], 0x202);
  v.setUint16(0x206, spec.version ?? 0x20f, true);
  v.setUint8(0x211, spec.loadflags ?? 0x01);
  v.setUint32(0x214, 0x100000, true);
  v.setUint32(0x22c, spec.initrdAddrMax ?? 0x7fffffff, true);
  v.setUint32(0x230, spec.kernelAlignment ?? 0x200000, true);
  v.setUint8(0x234, spec.relocatable ?? 1);
  v.setUint8(0x235, 21);
  v.setUint16(0x236, spec.xloadflags ?? 0x3, true);
  v.setUint32(0x238, spec.cmdlineSize ?? 2047, true);
  v.setBigUint64(0x258, spec.prefAddress ?? 0x1000000n, true);
  v.setUint32(0x260, spec.initSize ?? 0x800000, true);
  v.setUint32(0x268, 0x12345, true);
  out.set(payload, setupBytes);
  return out;
}

/** One mebibyte. */
export const MiB = 1024 * 1024;

/** Runs `fn` with fresh guest memory of `size` bytes, closing it afterwards. */
export function withMemory<T>(size: number, fn: (mem: GuestMemory) => T): T {
  const mem = GuestMemory.create(size);
  try {
    return fn(mem);
  } finally {
    mem.close();
  }
}

/**
 * Asserts that `fn` throws a one-line BootError matching `pattern`.
 * @returns the message
 */
export function expectBootError(fn: () => unknown, pattern: RegExp): string {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof BootError)) throw new Error(`expected BootError, got ${e}`);
    if (!pattern.test(e.message)) {
      throw new Error(`message ${JSON.stringify(e.message)} does not match ${pattern}`);
    }
    if (e.message.includes("\n")) throw new Error(`message is not one line: ${e.message}`);
    return e.message;
  }
  throw new Error(`expected a BootError matching ${pattern}, but nothing was thrown`);
}
