/*L:300 When the guest touches a port or an address nothing backs, KVM stops
 * and asks us. The bus answers "who owns this address?": devices register a
 * [base, base+length) range and ranges may not overlap, so two devices can
 * never both think they own a register. Ports nobody owns read as all ones
 * and swallow writes, like an empty ISA bus; --verbose logs them. :*/

/** What a device write may ask of the machine: to reset it, or to turn it off (both end the run). */
export type BusAction = void | "reset" | "power-off";

/** A device reached through port I/O or MMIO. */
export interface BusDevice {
  /** Short name for logs, e.g. "serial" or "i8042". */
  readonly name: string;
  /** Reads `size` bytes at `offset` within the device's range. */
  read(offset: number, size: number): number;
  /** Writes `size` bytes of `value` at `offset`; may request a reset or a power-off. */
  write(offset: number, size: number, value: number): BusAction;
}

/** A registered range. */
export interface BusRange {
  /** First address. */
  readonly base: number;
  /** Length in bytes. */
  readonly length: number;
  /** The owner. */
  readonly device: BusDevice;
}

/** An address-range map that refuses overlaps. */
export class Bus {
  readonly #ranges: BusRange[] = [];
  #last: BusRange | undefined;

  /** @param name "pio" or "mmio", for messages */
  constructor(readonly name: string) {}

  /** Registers `device` at [base, base+length); throws on overlap. */
  add(base: number, length: number, device: BusDevice): void {
    if (length <= 0) throw new RangeError(`${this.name}: ${device.name} has an empty range`);
    for (const r of this.#ranges) {
      if (base < r.base + r.length && r.base < base + length) {
        throw new RangeError(
          `${this.name}: ${device.name} at 0x${base.toString(16)}+${length} overlaps ${r.device.name} at 0x${
            r.base.toString(16)
          }+${r.length}`,
        );
      }
    }
    this.#ranges.push({ base, length, device });
    this.#ranges.sort((a, b) => a.base - b.base);
  }

  /** The range containing `addr`, if any. The last hit is tried first: a guest tends to talk to one device at a time. */
  find(addr: number): BusRange | undefined {
    const last = this.#last;
    if (last !== undefined && addr >= last.base && addr < last.base + last.length) return last;
    for (const r of this.#ranges) {
      if (addr >= r.base && addr < r.base + r.length) return (this.#last = r);
    }
    return undefined;
  }

  /** All registered ranges, in address order. */
  get ranges(): readonly BusRange[] {
    return this.#ranges;
  }
}
