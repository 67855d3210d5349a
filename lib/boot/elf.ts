/*L:130 A "vmlinux" is the kernel as the linker left it: an ELF executable.
 * ELF describes itself with a header and a table of "program headers", each
 * saying "these bytes of the file belong at that address, followed by so many
 * zeroes". We only care about the loadable ones (PT_LOAD), and about the
 * physical address each gives: the guest has no paging set up by the kernel
 * yet, and the kernel will map itself to its virtual addresses soon enough.
 *
 * The seed trusted its kernel; we do not. The file may be truncated, built
 * for the wrong machine, or simply not fit in the RAM we were given, and the
 * guest is the wrong place to find that out. So every number in the headers
 * is checked before a byte is copied, in BigInt (ELF64 fields are 64-bit,
 * beyond what a JavaScript number holds exactly), and only when the whole
 * image has passed do we touch guest memory. :*/

import type { LoadTarget } from "../memory.ts";
import { BootError, hex, sizeText, span } from "./errors.ts";
import { HIMEM_START } from "./layout.ts";

/** e_machine for x86_64. */
export const EM_X86_64 = 62;
/** e_type for a fixed-address executable. */
export const ET_EXEC = 2;
/** p_type of a segment to load. */
export const PT_LOAD = 1;
/** p_type of a segment holding notes. */
export const PT_NOTE = 4;
/** The Xen note whose payload is the 32-bit PVH entry point. */
export const XEN_ELFNOTE_PHYS32_ENTRY = 18;

const EHDR_SIZE = 64;
const PHDR_SIZE = 56;
const MAX_PHNUM = 128;
const KERNEL_VIRTUAL_BASE = 0xffff_ffff_8000_0000n;

/** One loaded PT_LOAD segment, in guest physical terms. */
export interface ElfSegment {
  /** Where it was loaded. */
  readonly paddr: number;
  /** Bytes it occupies in memory (file part plus zero fill). */
  readonly memsz: number;
  /** Bytes copied from the file. */
  readonly filesz: number;
}

/** What {@link loadElf} placed in guest memory. */
export interface ElfImage {
  /** Physical entry point (e_entry, translated if it was a kernel virtual address). */
  readonly entry: number;
  /** The loaded segments, in program header order. */
  readonly segments: readonly ElfSegment[];
  /** Lowest guest address occupied by a segment. */
  readonly lowest: number;
  /** First guest address past the highest segment. */
  readonly highest: number;
  /** The 32-bit PVH entry point from a Xen PHYS32_ENTRY note, if present. */
  readonly pvhEntry?: number;
}

interface ProgramHeader {
  readonly index: number;
  readonly type: number;
  readonly offset: bigint;
  readonly vaddr: bigint;
  readonly paddr: bigint;
  readonly filesz: bigint;
  readonly memsz: bigint;
  readonly align: bigint;
}

/** True when `image` starts with the ELF magic "\x7fELF". */
export function isElf(image: Uint8Array): boolean {
  return image.length >= 4 && image[0] === 0x7f && image[1] === 0x45 &&
    image[2] === 0x4c && image[3] === 0x46;
}

/*L:131 The file header first. We insist on exactly what a 64-bit x86 kernel
 * is: ELFCLASS64, little-endian, EM_X86_64, ET_EXEC, and program headers of
 * the size ELF64 defines. A 32-bit vmlinux is the classic mistake here (the
 * seed only ever loaded those), so the messages say which field was wrong
 * and what it held. :*/

function readHeader(image: Uint8Array, name: string, view: DataView) {
  if (image.length < EHDR_SIZE) {
    throw new BootError(
      `${name}: truncated (ELF header needs ${EHDR_SIZE} bytes, file has ${image.length})`,
    );
  }
  if (!isElf(image)) {
    throw new BootError(`${name}: not an ELF file (bad magic)`);
  }
  if (image[4] !== 2) {
    throw new BootError(`${name}: not a 64-bit ELF (EI_CLASS ${image[4]})`);
  }
  if (image[5] !== 1) {
    throw new BootError(
      `${name}: not a little-endian ELF (EI_DATA ${image[5]})`,
    );
  }
  const machine = view.getUint16(18, true);
  if (machine !== EM_X86_64) {
    throw new BootError(`${name}: not an x86_64 ELF (e_machine ${machine})`);
  }
  const type = view.getUint16(16, true);
  if (type !== ET_EXEC) {
    throw new BootError(
      `${name}: not an executable ELF (e_type ${type}, need ET_EXEC)`,
    );
  }
  const phentsize = view.getUint16(54, true);
  if (phentsize !== PHDR_SIZE) {
    throw new BootError(
      `${name}: unexpected program header size ${phentsize} (ELF64 uses ${PHDR_SIZE})`,
    );
  }
  const phnum = view.getUint16(56, true);
  if (phnum < 1 || phnum > MAX_PHNUM) {
    throw new BootError(
      `${name}: unreasonable number of program headers (${phnum}, expected 1..${MAX_PHNUM})`,
    );
  }
  return {
    entry: view.getBigUint64(24, true),
    phoff: view.getBigUint64(32, true),
    phnum,
  };
}

function readProgramHeaders(
  image: Uint8Array,
  name: string,
  view: DataView,
  phoff: bigint,
  phnum: number,
): ProgramHeader[] {
  const headers: ProgramHeader[] = [];
  for (let i = 0; i < phnum; i++) {
    const at = phoff + BigInt(i * PHDR_SIZE);
    if (at + BigInt(PHDR_SIZE) > BigInt(image.length)) {
      throw new BootError(
        `${name}: truncated (program header ${i} outside the file)`,
      );
    }
    const p = Number(at);
    headers.push({
      index: i,
      type: view.getUint32(p, true),
      offset: view.getBigUint64(p + 8, true),
      vaddr: view.getBigUint64(p + 16, true),
      paddr: view.getBigUint64(p + 24, true),
      filesz: view.getBigUint64(p + 32, true),
      memsz: view.getBigUint64(p + 40, true),
      align: view.getBigUint64(p + 48, true),
    });
  }
  return headers;
}

/*L:132 Then each loadable segment. Its file bytes must be in the file, it
 * must not claim more file bytes than memory bytes, it must land wholly in
 * guest RAM, and it must stay above 1 MiB, because below that the launcher
 * keeps the zero page, the page tables and the command line, which it writes
 * after the kernel and would silently overwrite it. Finally no two segments
 * may overlap: a linker never produces that, and if a file does, one of the
 * two copies would quietly win. :*/

function checkSegments(
  mem: LoadTarget,
  image: Uint8Array,
  name: string,
  headers: readonly ProgramHeader[],
): ProgramHeader[] {
  const loads: ProgramHeader[] = [];
  for (const ph of headers) {
    if (ph.type !== PT_LOAD) continue;
    const i = ph.index;
    if (ph.filesz > ph.memsz) {
      throw new BootError(
        `${name}: segment ${i} has p_filesz ${hex(ph.filesz)} larger than p_memsz ${hex(ph.memsz)}`,
      );
    }
    if (ph.offset + ph.filesz > BigInt(image.length)) {
      throw new BootError(
        `${name}: truncated (segment ${i} data at ${span(ph.offset, ph.filesz)} lies past the end of the file)`,
      );
    }
    if (ph.memsz === 0n) continue;
    if (!mem.contains(ph.paddr, ph.memsz)) {
      throw new BootError(
        `${name}: segment ${i} at ${span(ph.paddr, ph.memsz)} does not fit in ${sizeText(mem.size)} of guest RAM`,
      );
    }
    if (ph.paddr < BigInt(HIMEM_START)) {
      throw new BootError(
        `${name}: segment ${i} at ${hex(ph.paddr)} is below ${hex(HIMEM_START)}, where the launcher keeps boot data`,
      );
    }
    loads.push(ph);
  }
  if (loads.length === 0) throw new BootError(`${name}: no loadable segments`);
  const sorted = [...loads].sort((a, b) => (a.paddr < b.paddr ? -1 : a.paddr > b.paddr ? 1 : 0));
  for (let k = 1; k < sorted.length; k++) {
    const prev = sorted[k - 1]!;
    const next = sorted[k]!;
    if (prev.paddr + prev.memsz > next.paddr) {
      const ranges = `${span(prev.paddr, prev.memsz)} and ${span(next.paddr, next.memsz)}`;
      throw new BootError(`${name}: segments ${prev.index} and ${next.index} overlap (${ranges})`);
    }
  }
  return loads;
}

/*L:133 The entry point. ELF says e_entry is a virtual address, and Linux's
 * own linker script makes it the physical address of startup_64 anyway. Other
 * kernels link it at the high kernel mapping (0xffffffff80000000 and up); for
 * those we find the segment that holds it and apply that segment's virtual to
 * physical offset. Either way the result must point into something we loaded:
 * jumping into zeroes makes for a very confusing first triple fault. :*/

function physicalEntry(
  name: string,
  entry: bigint,
  loads: readonly ProgramHeader[],
): number {
  if (entry >= KERNEL_VIRTUAL_BASE) {
    const seg = loads.find((s) => entry >= s.vaddr && entry - s.vaddr < s.memsz);
    if (seg === undefined) {
      throw new BootError(
        `${name}: entry point ${hex(entry)} is not inside any loadable segment`,
      );
    }
    return Number(entry - seg.vaddr + seg.paddr);
  }
  if (!loads.some((s) => entry >= s.paddr && entry - s.paddr < s.memsz)) {
    throw new BootError(
      `${name}: entry point ${hex(entry)} is not inside any loadable segment`,
    );
  }
  return Number(entry);
}

/*L:134 Kernels built with PVH support carry an ELF note (owner "Xen", type
 * 18) holding a 32-bit protected-mode entry point, which lets a launcher skip
 * the 64-bit setup entirely. Notes are a packed list of (namesz, descsz, type)
 * triples, each name and payload padded to the segment's alignment (4 bytes,
 * or 8 for some toolchains). Notes are advice, not loading instructions: a
 * note segment outside the file means the file is broken, but a note list we
 * cannot follow only means we stop looking in it. :*/

function findPvhEntry(
  image: Uint8Array,
  name: string,
  view: DataView,
  headers: readonly ProgramHeader[],
): number | undefined {
  for (const ph of headers) {
    if (ph.type !== PT_NOTE) continue;
    if (ph.offset + ph.filesz > BigInt(image.length)) {
      throw new BootError(
        `${name}: truncated (note segment ${ph.index} is outside the file)`,
      );
    }
    const align = ph.align === 8n ? 8 : 4;
    const pad = (n: number) => Math.ceil(n / align) * align;
    let at = Number(ph.offset);
    const end = at + Number(ph.filesz);
    while (at + 12 <= end) {
      const namesz = view.getUint32(at, true);
      const descsz = view.getUint32(at + 4, true);
      const type = view.getUint32(at + 8, true);
      const desc = at + 12 + pad(namesz);
      const next = desc + pad(descsz);
      if (next > end) break;
      if (
        type === XEN_ELFNOTE_PHYS32_ENTRY && isXenOwner(image, at + 12, namesz)
      ) {
        if (descsz === 4) return view.getUint32(desc, true);
        if (descsz === 8) {
          const value = view.getBigUint64(desc, true);
          if (value <= 0xffff_ffffn) return Number(value);
        }
      }
      at = next;
    }
  }
  return undefined;
}

function isXenOwner(image: Uint8Array, at: number, namesz: number): boolean {
  return namesz === 4 && image[at] === 0x58 && image[at + 1] === 0x65 &&
    image[at + 2] === 0x6e && image[at + 3] === 0;
}

/**
 * Validates an ELF64 x86_64 executable and copies its PT_LOAD segments into
 * guest memory at their physical addresses, zero-filling each p_memsz tail.
 * Nothing is written unless the whole image is valid.
 * @param mem guest memory to load into
 * @param image the whole file
 * @param name the file's name, for error messages
 * @returns entry point, segments and the span they occupy
 * @throws BootError naming the file and the problem
 */
export function loadElf(
  mem: LoadTarget,
  image: Uint8Array,
  name = "vmlinux",
): ElfImage {
  const view = new DataView(image.buffer, image.byteOffset, image.byteLength);
  const { entry, phoff, phnum } = readHeader(image, name, view);
  const headers = readProgramHeaders(image, name, view, phoff, phnum);
  const loads = checkSegments(mem, image, name, headers);
  const physEntry = physicalEntry(name, entry, loads);
  const pvhEntry = findPvhEntry(image, name, view, headers);

  const segments: ElfSegment[] = [];
  for (const ph of loads) {
    const paddr = Number(ph.paddr);
    const filesz = Number(ph.filesz);
    const memsz = Number(ph.memsz);
    const offset = Number(ph.offset);
    mem.write(
      paddr,
      image.subarray(offset, offset + filesz),
      `${name} segment ${ph.index}`,
    );
    mem.fill(paddr + filesz, memsz - filesz, 0, `${name} segment ${ph.index}`);
    segments.push({ paddr, memsz, filesz });
  }
  const lowest = Math.min(...segments.map((s) => s.paddr));
  const highest = Math.max(...segments.map((s) => s.paddr + s.memsz));
  const result = { entry: physEntry, segments, lowest, highest };
  return pvhEntry === undefined ? result : { ...result, pvhEntry };
}
