/*S:130 A struct iovec is two 64-bit words: base address and length. Zero-copy
 * I/O means the bases are host addresses inside guest memory, so a disk read
 * lands straight in the guest's buffer. An IoVecs is a reusable array of them,
 * allocated once per device queue rather than per request. :*/

/** A growable, reusable `struct iovec[]` for readv/writev/preadv/pwritev. */
export class IoVecs {
  /** The raw array to hand to libc: [base0, len0, base1, len1, ...]. */
  readonly raw: BigUint64Array<ArrayBuffer>;
  /** How many entries are in use. */
  count = 0;
  /** Sum of the lengths in use. */
  bytes = 0;

  /** The most entries this array can hold. */
  readonly capacity: number;

  /**
   * An empty array, allocated once (a device keeps one per queue and clear()s it per request).
   * @param capacity the most entries this array can hold
   */
  constructor(capacity: number) {
    this.capacity = capacity;
    this.raw = new BigUint64Array(capacity * 2);
  }

  /** Forgets all entries. */
  clear(): this {
    this.count = 0;
    this.bytes = 0;
    return this;
  }

  /** Appends one (host address, length) entry. */
  push(base: bigint, len: number): void {
    if (this.count >= this.capacity) throw new RangeError(`iovec full (${this.capacity} entries)`);
    this.raw[this.count * 2] = base;
    this.raw[this.count * 2 + 1] = BigInt(len);
    this.count++;
    this.bytes += len;
  }
}
