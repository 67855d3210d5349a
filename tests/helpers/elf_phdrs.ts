/*T:041 Tests that check what the ELF loader found read the program headers
 * themselves, straight from the bytes (ELF64, little-endian), so a loader
 * bug cannot hide behind the same bug in the test. :*/

/** One ELF64 program header. */
export interface Phdr {
  /** p_type. */
  type: number;
  /** p_flags. */
  flags: number;
  /** p_offset. */
  offset: number;
  /** p_paddr. */
  paddr: number;
  /** p_filesz. */
  filesz: number;
  /** p_memsz. */
  memsz: number;
  /** p_align. */
  align: number;
}

/** The program headers of an ELF64 image. */
export function programHeaders(image: Uint8Array): Phdr[] {
  const v = new DataView(image.buffer, image.byteOffset, image.byteLength);
  const phoff = Number(v.getBigUint64(32, true));
  return Array.from({ length: v.getUint16(56, true) }, (_, i) => {
    const at = phoff + i * 56;
    return {
      type: v.getUint32(at, true),
      flags: v.getUint32(at + 4, true),
      offset: Number(v.getBigUint64(at + 8, true)),
      paddr: Number(v.getBigUint64(at + 24, true)),
      filesz: Number(v.getBigUint64(at + 32, true)),
      memsz: Number(v.getBigUint64(at + 40, true)),
      align: Number(v.getBigUint64(at + 48, true)),
    };
  });
}
