/*L:100 Guest "physical" memory is one anonymous mapping in our address space,
 * exactly as in the original launcher: guest physical address X lives at host
 * address base + X. The twist on x86 is the hole below 4 GiB where devices
 * live (the IOAPIC, the LAPIC, our virtio windows), so a guest larger than
 * 3 GiB gets its RAM in two pieces, the second one starting at 4 GiB. Both
 * pieces come from the same mapping; a small region table says which guest
 * addresses map to which offset.
 *
 * The mapping is reserved with MAP_NORESERVE, so a 2 GiB guest costs only the
 * pages it touches, and it sits between two inaccessible guard pages, so a bug
 * that runs off either end faults instead of scribbling on the launcher. :*/

import { at, MADV, madvise, MAP, mmap, munmap } from "./sys/calls.ts";

/** Where the 32-bit device hole starts: RAM above this moves past 4 GiB. */
export const MMIO_HOLE_START = 0xc000_0000;
/** Where RAM resumes above the hole. */
export const HIGH_RAM_START = 0x1_0000_0000;

const PAGE = 4096;
const HUGE = 2 * 1024 * 1024;

/** One contiguous piece of guest RAM. */
export interface MemoryRegion {
  /** First guest physical address. */
  readonly gpa: number;
  /** Length in bytes. */
  readonly size: number;
  /** Offset of `gpa` within the host mapping. */
  readonly offset: number;
}

/** A guest address or length that does not lie wholly inside guest RAM. */
export class GuestMemoryError extends RangeError {
  /** The offending guest physical address. */
  readonly gpa: bigint;
  /** The requested length. */
  readonly length: bigint;

  /** Makes the error; `what` optionally names what the range was for. */
  constructor(gpa: bigint, length: bigint, what?: string) {
    const label = what === undefined ? "" : `${what}: `;
    super(`${label}guest range 0x${gpa.toString(16)}+0x${length.toString(16)} is outside guest RAM`);
    this.name = "GuestMemoryError";
    this.gpa = gpa;
    this.length = length;
  }
}

/** Options for {@link GuestMemory.create}. */
export interface GuestMemoryOptions {
  /** Ask for transparent huge pages (2 MiB) backing the RAM. */
  hugePages?: boolean;
}

/** A guest-supplied number as BigInt for messages (non-integers become -1). */
const asBigInt = (x: number | bigint): bigint => typeof x === "bigint" ? x : Number.isInteger(x) ? BigInt(x) : -1n;

/** The RAM layout for a guest of `size` bytes: below the hole, then above 4 GiB. */
export function ramRegions(size: number): MemoryRegion[] {
  if (!Number.isSafeInteger(size) || size <= 0 || size % PAGE !== 0) {
    throw new RangeError(`guest memory size ${size} is not a positive multiple of 4 KiB`);
  }
  if (size <= MMIO_HOLE_START) return [{ gpa: 0, size, offset: 0 }];
  return [
    { gpa: 0, size: MMIO_HOLE_START, offset: 0 },
    { gpa: HIGH_RAM_START, size: size - MMIO_HOLE_START, offset: MMIO_HOLE_START },
  ];
}

/*L:110 This is the heir of the seed's check_pointer, and the only door through
 * which launcher code touches guest memory. Every guest-supplied address and
 * length lands here first: a range is accepted only if it lies wholly inside
 * one RAM region, computed in BigInt so that no sum can wrap. What comes back
 * is an offset into our mapping, which typed views and zero-copy syscalls
 * then use without further checks. :*/

/** Offset in the mapping of a guest range lying wholly inside one of `regions`, or -1. */
function regionOffset(regions: readonly MemoryRegion[], gpa: number | bigint, length: number | bigint): number {
  if (typeof gpa === "number" && !Number.isSafeInteger(gpa)) return -1;
  if (typeof length === "number" && !Number.isSafeInteger(length)) return -1;
  if (typeof gpa === "number" && typeof length === "number") {
    if (!Number.isSafeInteger(gpa) || !Number.isSafeInteger(length) || gpa < 0 || length < 0) return -1;
    for (const r of regions) {
      if (gpa >= r.gpa && length <= r.size && gpa - r.gpa <= r.size - length) return r.offset + (gpa - r.gpa);
    }
    return -1;
  }
  const g = BigInt(gpa);
  const n = BigInt(length);
  if (g < 0n || n < 0n) return -1;
  for (const r of regions) {
    const start = BigInt(r.gpa);
    if (g >= start && g + n <= start + BigInt(r.size)) return r.offset + Number(g - start);
  }
  return -1;
}

/** What the boot loaders need of guest memory: its layout, a range check, and writes. */
export interface LoadTarget {
  /** Total bytes of guest RAM. */
  readonly size: number;
  /** The RAM pieces, in guest address order. */
  readonly regions: readonly MemoryRegion[];
  /** True when the whole range lies in guest RAM. */
  contains(gpa: number | bigint, length: number | bigint): boolean;
  /** Copies `data` into guest memory at `gpa`. */
  write(gpa: number | bigint, data: Uint8Array, what?: string): void;
  /** Fills a checked guest range with `value`. */
  fill(gpa: number | bigint, length: number, value?: number, what?: string): void;
}

/*L:111 The same door with nothing behind it. Before the launcher takes
 * anything from the system (a KVM descriptor, a thread, a mapping), the
 * loaders run once against the bare layout of the RAM the guest will get:
 * every range is checked exactly as it will be, and the bytes are dropped.
 * A kernel that is not a kernel, or an initrd that does not fit, is thus
 * refused while there is still nothing to give back. :*/

/** Guest RAM's layout without the RAM: ranges are checked, writes are dropped. */
export class MemoryLayout implements LoadTarget {
  /** Total bytes of guest RAM. */
  readonly size: number;
  /** The RAM pieces, in guest address order. */
  readonly regions: readonly MemoryRegion[];

  /** @param size bytes of RAM, a multiple of 4 KiB */
  constructor(size: number) {
    this.size = size;
    this.regions = ramRegions(size);
  }

  /** True when the whole range lies in guest RAM. */
  contains(gpa: number | bigint, length: number | bigint): boolean {
    return regionOffset(this.regions, gpa, length) >= 0;
  }

  /** Checks the range a write would cover. */
  write(gpa: number | bigint, data: Uint8Array, what?: string): void {
    this.fill(gpa, data.length, 0, what);
  }

  /** Checks the range a fill would cover. */
  fill(gpa: number | bigint, length: number, _value = 0, what?: string): void {
    if (!this.contains(gpa, length)) throw new GuestMemoryError(asBigInt(gpa), asBigInt(length), what);
  }
}

/** Guest physical memory: one host mapping, bounds-checked access only. */
export class GuestMemory {
  /** Total bytes of guest RAM. */
  readonly size: number;
  /** The RAM pieces, in guest address order. */
  readonly regions: readonly MemoryRegion[];
  /** Host address of the first byte of guest RAM. */
  readonly hostAddress: bigint;
  /** The whole of guest RAM as bytes (zero-copy). */
  readonly bytes: Uint8Array<ArrayBuffer>;
  /** The whole of guest RAM as a DataView (zero-copy, little-endian reads). */
  readonly view: DataView<ArrayBuffer>;
  readonly #unmap: (() => void) | undefined;
  #closed = false;

  private constructor(size: number, hostAddress: bigint, unmap: (() => void) | undefined) {
    this.size = size;
    this.regions = ramRegions(size);
    this.hostAddress = hostAddress;
    const p = at(hostAddress);
    if (p === null) throw new Error("guest memory at NULL");
    const buffer = Deno.UnsafePointerView.getArrayBuffer(p, size);
    this.bytes = new Uint8Array(buffer);
    this.view = new DataView(buffer);
    this.#unmap = unmap;
  }

  /**
   * Maps `size` bytes of zeroed guest RAM, with guard pages on both sides.
   * @param size bytes of RAM, a multiple of 4 KiB
   * @param options huge page preference
   * @returns the new guest memory, owning its mapping
   */
  static create(size: number, options: GuestMemoryOptions = {}): GuestMemory {
    ramRegions(size);
    const align = options.hugePages ? HUGE : PAGE;
    const total = size + 2 * align;
    const reserve = mmap(total, MAP.PROT_NONE, MAP.PRIVATE | MAP.ANONYMOUS | MAP.NORESERVE);
    try {
      const base = reserve + BigInt(align) - (reserve % BigInt(align));
      mmap(size, MAP.PROT_READ | MAP.PROT_WRITE, MAP.PRIVATE | MAP.ANONYMOUS | MAP.NORESERVE | MAP.FIXED, -1, 0, base);
      if (options.hugePages) madvise(base, size, MADV.HUGEPAGE);
      madvise(base, size, MADV.DONTDUMP);
      return new GuestMemory(size, base, () => munmap(reserve, total));
    } catch (e) {
      munmap(reserve, total);
      throw e;
    }
  }

  /**
   * A view onto memory mapped by another thread (e.g. inside a vCPU Worker).
   * It does not own the mapping: close() leaves it mapped.
   */
  static attach(hostAddress: bigint, size: number): GuestMemory {
    return new GuestMemory(size, hostAddress, undefined);
  }

  /**
   * Translates a guest range to an offset in the mapping, or throws.
   * @param gpa guest physical address (number or BigInt, as read from the guest)
   * @param length bytes the caller will touch
   * @param what a label for the error message, e.g. "virtqueue 0 descriptor"
   */
  offset(gpa: number | bigint, length: number | bigint, what?: string): number {
    const off = this.tryOffset(gpa, length);
    if (off < 0) throw new GuestMemoryError(asBigInt(gpa), asBigInt(length), what);
    return off;
  }

  /** Like {@link offset} but returns -1 instead of throwing. */
  tryOffset(gpa: number | bigint, length: number | bigint): number {
    if (this.#closed) return -1;
    return regionOffset(this.regions, gpa, length);
  }

  /** True when the whole range lies in guest RAM. */
  contains(gpa: number | bigint, length: number | bigint): boolean {
    return this.tryOffset(gpa, length) >= 0;
  }

  /** Host address of a checked guest range, for zero-copy syscalls. */
  hostAddr(gpa: number | bigint, length: number | bigint, what?: string): bigint {
    return this.hostAddress + BigInt(this.offset(gpa, length, what));
  }

  /** A zero-copy byte view of a checked guest range. */
  slice(gpa: number | bigint, length: number, what?: string): Uint8Array<ArrayBuffer> {
    const off = this.offset(gpa, length, what);
    return this.bytes.subarray(off, off + length);
  }

  /** Copies `data` into guest memory at `gpa`. */
  write(gpa: number | bigint, data: Uint8Array, what?: string): void {
    this.bytes.set(data, this.offset(gpa, data.length, what));
  }

  /** Fills a checked guest range with `value`. */
  fill(gpa: number | bigint, length: number, value = 0, what?: string): void {
    const off = this.offset(gpa, length, what);
    this.bytes.fill(value, off, off + length);
  }

  /** Reads a little-endian u8 at `gpa`. */
  readU8(gpa: number | bigint): number {
    return this.view.getUint8(this.offset(gpa, 1));
  }
  /** Reads a little-endian u16 at `gpa`. */
  readU16(gpa: number | bigint): number {
    return this.view.getUint16(this.offset(gpa, 2), true);
  }
  /** Reads a little-endian u32 at `gpa`. */
  readU32(gpa: number | bigint): number {
    return this.view.getUint32(this.offset(gpa, 4), true);
  }
  /** Reads a little-endian u64 at `gpa`. */
  readU64(gpa: number | bigint): bigint {
    return this.view.getBigUint64(this.offset(gpa, 8), true);
  }
  /** Writes a u8 at `gpa`. */
  writeU8(gpa: number | bigint, value: number): void {
    this.view.setUint8(this.offset(gpa, 1), value);
  }
  /** Writes a little-endian u16 at `gpa`. */
  writeU16(gpa: number | bigint, value: number): void {
    this.view.setUint16(this.offset(gpa, 2), value, true);
  }
  /** Writes a little-endian u32 at `gpa`. */
  writeU32(gpa: number | bigint, value: number): void {
    this.view.setUint32(this.offset(gpa, 4), value, true);
  }
  /** Writes a little-endian u64 at `gpa`. */
  writeU64(gpa: number | bigint, value: bigint): void {
    this.view.setBigUint64(this.offset(gpa, 8), value, true);
  }

  /*L:112 A view of guest RAM (bytes, view, slice()) is an ArrayBuffer over
   * the mapping itself, and one kept past munmap reads unmapped memory: the
   * whole process dies of SIGSEGV, in the middle of whatever it was doing
   * (a test comparing a slice after close() took a test runner down with
   * it). So close() first detaches the buffer (ArrayBuffer.transfer(0):
   * no copy, whatever the size), and every view made from it, on this
   * thread, reads as empty from then on: a use after close is an ordinary
   * JavaScript error or a failed comparison, never a fault. Views that other
   * threads made of the same mapping are not ours to detach; the close order
   * (vCPUs and device threads end first, L:105) keeps them from outliving
   * it. :*/

  /** Detaches every view this object handed out (L:112), then unmaps guest memory (if owned). Safe twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.bytes.buffer.transfer(0);
    this.#unmap?.();
  }
}
