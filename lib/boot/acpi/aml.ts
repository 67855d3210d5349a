/*L:184 The DSDT is not a table of fields but a program: ACPI Machine
 * Language, the bytecode an ACPI-aware kernel runs (or, for the few objects
 * we need, merely looks up) to learn which devices the machine has. Firmware
 * writers produce it by compiling ASL with iasl; we have no compiler at run
 * time and need very little of the language, so we write the bytes directly
 * with the handful of encoders below, each one a grammar rule from chapter
 * 20 of the ACPI specification (6.3).
 *
 * Two encodings carry the whole language. A name is a string of 4-character
 * segments ("_SB_", "COM1"), short names padded with '_', optionally rooted
 * with '\' or climbing with '^'. A container (Scope, Device, Package,
 * Buffer) says how long it is before its contents, in a PkgLength of one to
 * four bytes whose count includes itself: the top two bits of the first byte
 * say how many bytes follow; the first byte's low nibble holds the length's
 * low 4 bits and each following byte 8 more. Integers take the smallest of Zero, One, or a 1-, 2-, 4-
 * or 8-byte constant; iasl makes the same choice, so a disassembly reads the
 * way the ASL would have been written. :*/

/** An encoded AML term: the bytes one grammar rule produces. */
export type Aml = Uint8Array;

/** AML opcodes and prefixes used here (ACPI 6.3, section 20.3). */
export const AML_OP = {
  ZERO: 0x00,
  ONE: 0x01,
  NAME: 0x08,
  BYTE_PREFIX: 0x0a,
  WORD_PREFIX: 0x0b,
  DWORD_PREFIX: 0x0c,
  STRING_PREFIX: 0x0d,
  QWORD_PREFIX: 0x0e,
  SCOPE: 0x10,
  BUFFER: 0x11,
  PACKAGE: 0x12,
  DUAL_NAME_PREFIX: 0x2e,
  MULTI_NAME_PREFIX: 0x2f,
  EXT_PREFIX: 0x5b,
  ROOT_CHAR: 0x5c,
  PARENT_PREFIX: 0x5e,
  /** Follows EXT_PREFIX. */
  DEVICE: 0x82,
} as const;

/** The largest value a PkgLength can hold (28 bits). */
export const PKG_LENGTH_MAX = (1 << 28) - 1;

/** Joins encoded terms into one. */
export function concat(...parts: readonly Aml[]): Aml {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * Encodes the PkgLength that precedes `contentLength` bytes of a container.
 * The encoded value counts its own bytes too, so the smallest encoding is
 * chosen with them included.
 * @param contentLength bytes following the PkgLength
 * @returns 1 to 4 bytes
 * @throws RangeError if the total exceeds {@link PKG_LENGTH_MAX}
 */
export function pkgLength(contentLength: number): Aml {
  if (!Number.isSafeInteger(contentLength) || contentLength < 0) {
    throw new RangeError(`AML: bad package content length ${contentLength}`);
  }
  if (contentLength + 1 <= 0x3f) return Uint8Array.of(contentLength + 1);
  for (let follow = 1; follow <= 3; follow++) {
    const total = contentLength + 1 + follow;
    if (total < 2 ** (4 + 8 * follow)) {
      const out = new Uint8Array(1 + follow);
      out[0] = (follow << 6) | (total & 0x0f);
      for (let i = 1; i <= follow; i++) out[i] = (total >>> (4 + 8 * (i - 1))) & 0xff;
      return out;
    }
  }
  throw new RangeError(`AML: package of ${contentLength} bytes is too long for a PkgLength`);
}

/**
 * Decodes a PkgLength, the inverse of {@link pkgLength}.
 * @param bytes AML holding a PkgLength at `offset`
 * @param offset where it starts
 * @returns the encoded value (own bytes included) and how many bytes it took
 * @throws RangeError if it runs past the end, or a multi-byte form sets the lead byte's reserved bits 4-5
 */
export function readPkgLength(bytes: Uint8Array, offset = 0): { value: number; size: number } {
  const lead = bytes[offset];
  if (lead === undefined) throw new RangeError(`AML: no PkgLength at ${offset}`);
  const follow = lead >> 6;
  if (follow === 0) return { value: lead & 0x3f, size: 1 };
  if ((lead & 0x30) !== 0) {
    throw new RangeError(`AML: PkgLength lead byte 0x${lead.toString(16)} has reserved bits set`);
  }
  let value = lead & 0x0f;
  for (let i = 1; i <= follow; i++) {
    const b = bytes[offset + i];
    if (b === undefined) throw new RangeError(`AML: PkgLength at ${offset} runs past the end`);
    value |= b << (4 + 8 * (i - 1));
  }
  return { value: value >>> 0, size: 1 + follow };
}

/** Wraps `content` in `opcode(s) PkgLength content`. */
function container(opcode: Aml, content: Aml): Aml {
  return concat(opcode, pkgLength(content.length), content);
}

const LEAD = /^[A-Z_]$/;
const REST = /^[A-Z0-9_]*$/;

/**
 * Encodes one NameSeg: 1 to 4 characters, the first A-Z or '_', the rest
 * A-Z, 0-9 or '_', padded to 4 with '_'.
 * @throws RangeError on a malformed segment
 */
export function nameSeg(seg: string): Aml {
  if (seg.length < 1 || seg.length > 4 || !LEAD.test(seg[0]!) || !REST.test(seg)) {
    throw new RangeError(`AML: "${seg}" is not a name segment`);
  }
  return new TextEncoder().encode(seg.padEnd(4, "_"));
}

/**
 * Encodes a NameString: an optional root ('\') or parent ('^'...) prefix,
 * then zero or more segments joined by '.'; one segment is written bare,
 * two with DualNamePrefix, more with MultiNamePrefix and a count.
 * @param path e.g. "_HID", "\\_SB.COM1", "^PCI0"
 * @throws RangeError on a malformed path
 */
export function namePath(path: string): Aml {
  let rest = path;
  const prefix: number[] = [];
  if (rest.startsWith("\\")) {
    prefix.push(AML_OP.ROOT_CHAR);
    rest = rest.slice(1);
  } else {
    while (rest.startsWith("^")) {
      prefix.push(AML_OP.PARENT_PREFIX);
      rest = rest.slice(1);
    }
  }
  const segs = rest === "" ? [] : rest.split(".").map(nameSeg);
  if (segs.length > 255) throw new RangeError(`AML: "${path}" has too many segments`);
  const head = segs.length === 0
    ? [AML_OP.ZERO]
    : segs.length === 1
    ? []
    : segs.length === 2
    ? [AML_OP.DUAL_NAME_PREFIX]
    : [AML_OP.MULTI_NAME_PREFIX, segs.length];
  return concat(Uint8Array.from([...prefix, ...head]), ...segs);
}

/**
 * Encodes an integer constant with the smallest encoding: ZeroOp, OneOp,
 * or a Byte/Word/DWord/QWord prefix and the value little-endian.
 * @param value 0 to 2^64 - 1
 * @throws RangeError if out of range
 */
export function integer(value: number | bigint): Aml {
  const v = BigInt(value);
  if ((typeof value === "number" && !Number.isSafeInteger(value)) || v < 0n || v > 0xffff_ffff_ffff_ffffn) {
    throw new RangeError(`AML: integer ${value} is out of range`);
  }
  if (v === 0n) return Uint8Array.of(AML_OP.ZERO);
  if (v === 1n) return Uint8Array.of(AML_OP.ONE);
  const [prefix, size] = v <= 0xffn
    ? [AML_OP.BYTE_PREFIX, 1]
    : v <= 0xffffn
    ? [AML_OP.WORD_PREFIX, 2]
    : v <= 0xffff_ffffn
    ? [AML_OP.DWORD_PREFIX, 4]
    : [AML_OP.QWORD_PREFIX, 8];
  const out = new Uint8Array(1 + size);
  out[0] = prefix;
  for (let i = 0; i < size; i++) out[1 + i] = Number((v >> BigInt(8 * i)) & 0xffn);
  return out;
}

/**
 * Encodes a string constant: StringPrefix, ASCII 0x01-0x7f, NUL.
 * @throws RangeError on a character outside that range
 */
export function string(text: string): Aml {
  const out = new Uint8Array(text.length + 2);
  out[0] = AML_OP.STRING_PREFIX;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x01 || c > 0x7f) throw new RangeError(`AML: string "${text}" is not plain ASCII`);
    out[1 + i] = c;
  }
  return out;
}

/**
 * The 32-bit value ASL's EISAID("PNP0501") stands for: three letters of 5
 * bits each and four hex digits, packed big-endian and read as a
 * little-endian DWord (so "PNP0501" is 0x0105d041).
 * @throws RangeError unless `id` is three capital letters and four hex digits
 */
export function eisaIdValue(id: string): number {
  if (!/^[A-Z]{3}[0-9A-F]{4}$/.test(id)) throw new RangeError(`AML: "${id}" is not an EISA id`);
  const letter = (i: number) => id.charCodeAt(i) - 0x40;
  const product = parseInt(id.slice(3), 16);
  const be = [
    (letter(0) << 2) | (letter(1) >> 3),
    ((letter(1) & 7) << 5) | letter(2),
    product >> 8,
    product & 0xff,
  ];
  return (be[0]! | (be[1]! << 8) | (be[2]! << 16) | (be[3]! << 24)) >>> 0;
}

/** Encodes EISAID(id) as iasl does: always a DWord constant. */
export function eisaId(id: string): Aml {
  const v = eisaIdValue(id);
  return Uint8Array.of(AML_OP.DWORD_PREFIX, v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24);
}

/** Encodes Name(path, value): NameOp NameString DataRefObject. */
export function name(path: string, value: Aml): Aml {
  return concat(Uint8Array.of(AML_OP.NAME), namePath(path), value);
}

/** Encodes Scope(path) { terms }: ScopeOp PkgLength NameString TermList. */
export function scope(path: string, ...terms: readonly Aml[]): Aml {
  return container(Uint8Array.of(AML_OP.SCOPE), concat(namePath(path), ...terms));
}

/** Encodes Device(path) { terms }: ExtOpPrefix DeviceOp PkgLength NameString TermList. */
export function device(path: string, ...terms: readonly Aml[]): Aml {
  return container(Uint8Array.of(AML_OP.EXT_PREFIX, AML_OP.DEVICE), concat(namePath(path), ...terms));
}

/**
 * Encodes Package() { elements }: PackageOp PkgLength NumElements elements.
 * @param elements encoded data objects (integers, strings, packages, ...)
 * @throws RangeError past 255 elements (that needs VarPackage, unused here)
 */
export function pkg(...elements: readonly Aml[]): Aml {
  if (elements.length > 255) throw new RangeError(`AML: a package of ${elements.length} elements needs VarPackageOp`);
  return container(Uint8Array.of(AML_OP.PACKAGE), concat(Uint8Array.of(elements.length), ...elements));
}

/** Encodes Buffer() { bytes }: BufferOp PkgLength BufferSize ByteList. */
export function buffer(bytes: Uint8Array): Aml {
  return container(Uint8Array.of(AML_OP.BUFFER), concat(integer(bytes.length), bytes));
}
