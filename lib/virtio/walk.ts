/*V:125 Walking a chain. Each descriptor is read exactly once into locals,
 * so a guest changing it under us cannot make the check and the use see
 * different values. A `next` must stay inside its table, and since a
 * well-formed chain visits each descriptor at most once, counting steps is
 * enough to catch a cycle without remembering which ones we saw.
 *
 * An indirect descriptor swaps the table we walk: the chain continues at
 * entry 0 of a table elsewhere in guest RAM, bounded by that table's own
 * length. It must be the last descriptor of the main chain (no NEXT), its
 * own WRITE flag means nothing (the spec tells the device to ignore it),
 * and tables do not nest. The readable-before-writable order runs across
 * the whole chain, direct and indirect parts together.
 *
 * Addresses are 64-bit; we read them as two 32-bit halves, and any high
 * half that would make the address 2^53 or more is rejected outright (no
 * guest is that big), so everything else stays in exact Number arithmetic
 * and GuestMemory does the bounds check without BigInt. :*/

import type { GuestMemory } from "../memory.ts";
import {
  type Chain,
  DESC_SIZE,
  hex,
  MAX_INDIRECT_ENTRIES,
  type Segment,
  VirtqueueError,
  VRING_DESC_F_INDIRECT,
  VRING_DESC_F_NEXT,
  VRING_DESC_F_WRITE,
} from "./ring.ts";

const U32 = 0x1_0000_0000;
/** addr's high word at or above this makes the address >= 2^53: outside any guest. */
const HIGH_LIMIT = 0x20_0000;

/** What a {@link ChainWalker} needs to know about its queue. */
export interface ChainWalkerOptions {
  /** The queue's name, for errors. */
  name: string;
  /** Descriptors in the queue's own table. */
  size: number;
  /** VIRTIO_RING_F_INDIRECT_DESC was negotiated. */
  indirect: boolean;
}

/** Walks and checks descriptor chains of one queue; reads guest memory, never writes it. */
export class ChainWalker {
  readonly #mem: GuestMemory;
  readonly #name: string;
  readonly #size: number;
  readonly #indirect: boolean;

  /**
   * @param mem guest RAM
   * @param options the queue's name, size and whether indirect tables are allowed
   */
  constructor(mem: GuestMemory, options: ChainWalkerOptions) {
    this.#mem = mem;
    this.#name = options.name;
    this.#size = options.size;
    this.#indirect = options.indirect;
  }

  /**
   * Follows the chain from `head`, checking every descriptor on the way.
   * @param descTable where the queue's descriptor table starts in guest memory's view
   * @param head the chain's first descriptor, already checked to be below the queue size
   * @returns the chain's buffers, readable then writable
   * @throws VirtqueueError naming the first rule the chain breaks
   */
  walk(descTable: number, head: number): Chain {
    const mem = this.#mem;
    const view = mem.view;
    const readable: Segment[] = [];
    const writable: Segment[] = [];
    let readableBytes = 0;
    let writableBytes = 0;
    let table = descTable;
    let entries = this.#size;
    let indirect = false;
    let seenWritable = false;
    let where = "descriptor";
    let steps = 0;
    let i = head;
    for (;;) {
      if (++steps > entries) {
        this.#fail(
          "loop",
          `chain from head ${head} runs past ${entries} descriptors${indirect ? " of its indirect table" : ""}: a loop`,
        );
      }
      const d = table + DESC_SIZE * i;
      const lo = view.getUint32(d, true);
      const hi = view.getUint32(d + 4, true);
      const len = view.getUint32(d + 8, true);
      const flags = view.getUint16(d + 12, true);
      const next = view.getUint16(d + 14, true);
      const addr = hi * U32 + lo;
      if (flags & VRING_DESC_F_INDIRECT) {
        if (!this.#indirect) {
          this.#fail(
            "indirect-feature",
            `${where} ${i} is indirect, but VIRTIO_RING_F_INDIRECT_DESC was not negotiated`,
          );
        }
        if (indirect) this.#fail("nested-indirect", `${where} ${i} of an indirect table is itself indirect`);
        if (flags & VRING_DESC_F_NEXT) this.#fail("indirect-next", `${where} ${i} is indirect and also has NEXT`);
        if (len === 0 || len % DESC_SIZE !== 0 || len > DESC_SIZE * MAX_INDIRECT_ENTRIES) {
          this.#fail(
            "indirect-size",
            `${where} ${i}: indirect table length ${len} is not a non-zero multiple of 16 up to ${
              DESC_SIZE * MAX_INDIRECT_ENTRIES
            }`,
          );
        }
        const off = hi >= HIGH_LIMIT ? -1 : mem.tryOffset(addr, len);
        if (off < 0) {
          this.#fail(
            "out-of-ram",
            `${where} ${i}: indirect table ${this.#addr(lo, hi)}+${hex(len)} is outside guest RAM`,
          );
        }
        table = off;
        entries = len / DESC_SIZE;
        indirect = true;
        where = "indirect descriptor";
        steps = 0;
        i = 0;
        continue;
      }
      if (flags & VRING_DESC_F_WRITE) {
        seenWritable = true;
        if (len !== 0) {
          if (hi >= HIGH_LIMIT || mem.tryOffset(addr, len) < 0) this.#outOfRam(where, i, lo, hi, len);
          writable.push({ addr, len });
          writableBytes += len;
        }
      } else {
        if (seenWritable) {
          this.#fail("write-before-read", `${where} ${i} is readable but follows a writable one in chain ${head}`);
        }
        if (len !== 0) {
          if (hi >= HIGH_LIMIT || mem.tryOffset(addr, len) < 0) this.#outOfRam(where, i, lo, hi, len);
          readable.push({ addr, len });
          readableBytes += len;
        }
      }
      if (readableBytes + writableBytes > 0xffffffff) {
        this.#fail(
          "too-long",
          `chain from head ${head} adds up to ${readableBytes + writableBytes} bytes, over 2^32 - 1`,
        );
      }
      if (!(flags & VRING_DESC_F_NEXT)) break;
      if (next >= entries) {
        this.#fail(
          "desc-index",
          `${where} ${i} of chain ${head} has next ${next}, past the ${
            indirect ? "indirect table" : "ring"
          } of ${entries}`,
        );
      }
      i = next;
    }
    return { head, readable, writable, readableBytes, writableBytes };
  }

  #addr(lo: number, hi: number): string {
    return hex((BigInt(hi) << 32n) | BigInt(lo));
  }

  #outOfRam(where: string, i: number, lo: number, hi: number, len: number): never {
    this.#fail("out-of-ram", `${where} ${i}: buffer ${this.#addr(lo, hi)}+${hex(len)} is outside guest RAM`);
  }

  #fail(rule: string, detail: string): never {
    throw new VirtqueueError(this.#name, rule, detail);
  }
}
