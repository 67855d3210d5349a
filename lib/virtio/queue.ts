/*V:100 A virtqueue is how a virtio driver and a device pass buffers to each
 * other, and the split layout is three arrays the driver places in its own
 * RAM. The descriptor table says where buffers are (address, length, flags,
 * and the index of the next descriptor when a request spans several
 * buffers). The available ring is the driver's outbox: a free-running 16-bit
 * counter and a ring of chain heads it has filled in. The used ring is our
 * outbox: the same kind of counter and a ring of (head, bytes written)
 * pairs. Each side only ever writes its own counter, so neither needs a lock.
 *
 * The original launcher read these arrays in get_vq_desc() and wrote them in
 * add_used(). What changes here is the attitude: the guest is not a friend
 * who might have a bug, it is an adversary who may be actively trying to get
 * the launcher to read or write outside guest RAM, spin forever, or corrupt
 * its own bookkeeping. So every number we take from those arrays is checked
 * before it is used, and a chain is accepted only after all of it has been
 * checked. :*/

import type { GuestMemory } from "../memory.ts";

/** Descriptor flag: the chain continues at `next`. */
export const VRING_DESC_F_NEXT = 1;
/** Descriptor flag: the buffer is device-writable (otherwise device-readable). */
export const VRING_DESC_F_WRITE = 2;
/** Descriptor flag: the buffer holds a table of descriptors (needs VIRTIO_RING_F_INDIRECT_DESC). */
export const VRING_DESC_F_INDIRECT = 4;
/** avail.flags bit: the driver asks not to be interrupted (ignored with EVENT_IDX). */
export const VRING_AVAIL_F_NO_INTERRUPT = 1;
/** used.flags bit: the device asks not to be notified (ignored with EVENT_IDX). */
export const VRING_USED_F_NO_NOTIFY = 1;
/** Feature bit number: indirect descriptor tables. */
export const VIRTIO_RING_F_INDIRECT_DESC = 28;
/** Feature bit number: used_event / avail_event notification suppression. */
export const VIRTIO_RING_F_EVENT_IDX = 29;

/** The largest queue a split ring allows (virtio 1.x). */
export const MAX_QUEUE_SIZE = 32768;
/** The most entries an indirect table may have: `next` is 16 bits, so more are unreachable. */
export const MAX_INDIRECT_ENTRIES = 65536;

/** Where the driver placed a queue's three areas, as guest physical addresses. */
export interface QueueLayout {
  /** Number of descriptors (a power of two, 1..32768). */
  size: number;
  /** Descriptor table: 16 * size bytes, 16-byte aligned. */
  desc: bigint;
  /** Available ring: 6 + 2 * size bytes, 2-byte aligned. */
  avail: bigint;
  /** Used ring: 6 + 8 * size bytes, 4-byte aligned. */
  used: bigint;
}

/** The ring features the driver accepted. */
export interface QueueFeatures {
  /** VIRTIO_RING_F_EVENT_IDX was negotiated. */
  eventIdx: boolean;
  /** VIRTIO_RING_F_INDIRECT_DESC was negotiated. */
  indirect: boolean;
}

/** Where the ring indices start (both default to 0, as after a reset). */
export interface QueueStart {
  /** The first avail ring index the device will read. */
  lastAvailIdx: number;
  /** The first used ring index the device will write. */
  usedIdx: number;
}

/** A validated guest buffer: `[addr, addr + len)` lies wholly inside guest RAM, and len > 0. */
export interface Segment {
  /** Guest physical address. */
  addr: number;
  /** Length in bytes. */
  len: number;
}

/** One request popped from the available ring: its readable buffers, then its writable ones. */
export interface Chain {
  /** The head descriptor index: give it back with {@link Virtqueue.pushUsed}. */
  head: number;
  /** Device-readable buffers, in chain order. */
  readable: Segment[];
  /** Device-writable buffers, in chain order. */
  writable: Segment[];
  /** Sum of the readable lengths. */
  readableBytes: number;
  /** Sum of the writable lengths. */
  writableBytes: number;
}

/** A guest broke a virtqueue rule. The queue's state was not advanced by the call that threw. */
export class VirtqueueError extends Error {
  /** The queue's name, e.g. "virtio-blk queue 0". */
  readonly queue: string;
  /** A short stable id for the rule, e.g. "desc-index" or "loop". */
  readonly rule: string;

  /**
   * Makes the error; the message reads "<queue>: <detail> [<rule>]".
   * @param queue the queue's name
   * @param rule the rule's stable id
   * @param detail what the guest did, with the offending values
   */
  constructor(queue: string, rule: string, detail: string) {
    super(`${queue}: ${detail} [${rule}]`);
    this.name = "VirtqueueError";
    this.queue = queue;
    this.rule = rule;
  }
}

/*V:105 The rules, and the short names the errors carry. Each is something
 * the spec forbids the driver to do, and each, if we did not check it,
 * would let the guest hurt the launcher:
 *
 *   queue-size         size is not a power of two from 1 to 32768
 *   ring-alignment     desc not 16-aligned, avail not 2, used not 4
 *   ring-out-of-ram    a ring does not lie wholly inside guest RAM
 *   avail-index        avail.idx ran more than `size` ahead of us
 *   desc-index         a head or a `next` past the end of its table
 *   loop               more descriptors than the table has: a cycle
 *   indirect-feature   an indirect descriptor without the feature
 *   indirect-next      an indirect descriptor that also says NEXT
 *   nested-indirect    an indirect descriptor inside an indirect table
 *   indirect-size      a table of 0 bytes, not a multiple of 16, or over
 *                      65536 entries (a 16-bit `next` cannot reach more)
 *   out-of-ram         a buffer or a table not wholly inside guest RAM
 *   write-before-read  a readable buffer after a writable one
 *   too-long           the chain adds up to more than 2^32 - 1 bytes
 *
 * Zero-length buffers are allowed (the spec does not forbid them) but carry
 * nothing, so we check their flags and their place in the order and then
 * leave them out of the chain; their address is not looked at. Every
 * Segment a device sees therefore has a length of at least one byte.
 *
 * We do not enforce "a chain with its indirect table no longer than the
 * queue size": Linux drivers have been known to exceed it with indirect
 * tables, and the table's own bound already keeps the walk finite. :*/

const DESC_SIZE = 16;
const U32 = 0x1_0000_0000;
/** addr's high word at or above this makes the address >= 2^53: outside any guest. */
const HIGH_LIMIT = 0x20_0000;

/*V:145 Memory ordering. The guest's vCPUs run on other threads while we
 * read and write its rings, and x86 keeps loads in order with loads and
 * stores in order with stores, so reading avail.idx before the ring, and
 * writing a used element before used.idx, is enough there. What x86 does
 * reorder is a store followed by a load: it may let our load of avail.idx
 * pass our store of avail_event (or used.idx pass ahead of our load of
 * used_event), and then each side would wait for the other to speak. The
 * kernel puts a full barrier at those two points; we get one from a locked
 * atomic instruction on a private word, which on x86 orders everything. :*/
const FENCE = new Int32Array(new SharedArrayBuffer(4));
function fence(): void {
  Atomics.add(FENCE, 0, 0);
}

function isU16(n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n <= 0xffff;
}

function hex(n: number | bigint): string {
  return `0x${n.toString(16)}`;
}

/** The device's side of one split virtqueue, hardened against a hostile driver. */
export class Virtqueue {
  /** For messages, e.g. "virtio-blk queue 0". */
  readonly name: string;
  /** Number of descriptors. */
  readonly size: number;
  /** The layout the driver chose (validated). */
  readonly layout: Readonly<QueueLayout>;
  /** The negotiated ring features. */
  readonly features: Readonly<QueueFeatures>;
  readonly #mem: GuestMemory;
  readonly #mask: number;
  readonly #desc: number;
  readonly #descLen: number;
  readonly #avail: number;
  readonly #availLen: number;
  readonly #used: number;
  readonly #usedLen: number;
  #lastAvail: number;
  #used16: number;
  #signalled: number;
  #undoable = 0;

  /*V:110 The driver tells us where the rings are and how big, and that is
   * the first thing to check: the size must be a power of two (ring slots
   * are found by masking a free-running index) no larger than 32768, each
   * ring must be aligned as the spec demands, and each must lie wholly
   * inside one piece of guest RAM. The sizes include the event index fields
   * at the ends of the rings whether or not that feature is on. After this
   * each call still takes a ring's offset from GuestMemory (a few compares,
   * and it refuses once the memory is closed, where a stale offset would
   * fault), but the real suspects are the addresses inside descriptors.
   * The constructor reads and writes nothing in the rings. :*/

  /**
   * Validates the layout; throws {@link VirtqueueError} if the driver got it wrong.
   * @param mem guest RAM
   * @param layout ring addresses and size, as the driver set them
   * @param features the negotiated ring features
   * @param name for error messages, e.g. "virtio-blk queue 0"
   * @param start initial ring indices (default 0 and 0, as after reset)
   */
  constructor(
    mem: GuestMemory,
    layout: QueueLayout,
    features: QueueFeatures,
    name: string,
    start: QueueStart = { lastAvailIdx: 0, usedIdx: 0 },
  ) {
    this.name = name;
    const size = layout.size;
    if (!Number.isInteger(size) || size < 1 || size > MAX_QUEUE_SIZE || (size & (size - 1)) !== 0) {
      throw new VirtqueueError(
        name,
        "queue-size",
        `queue size ${size} is not a power of two from 1 to ${MAX_QUEUE_SIZE}`,
      );
    }
    if (!isU16(start.lastAvailIdx) || !isU16(start.usedIdx)) {
      throw new RangeError(`${name}: start indices ${start.lastAvailIdx}/${start.usedIdx} are not 16-bit`);
    }
    this.size = size;
    this.#mask = size - 1;
    this.layout = Object.freeze({ ...layout });
    this.features = Object.freeze({ eventIdx: features.eventIdx, indirect: features.indirect });
    this.#mem = mem;
    const ring = (what: string, gpa: bigint, align: number, len: number): number => {
      if (typeof gpa !== "bigint") throw new TypeError(`${name}: ${what} address must be a bigint`);
      if (gpa % BigInt(align) !== 0n) {
        throw new VirtqueueError(name, "ring-alignment", `${what} at ${hex(gpa)} is not ${align}-byte aligned`);
      }
      if (!mem.contains(gpa, len)) {
        throw new VirtqueueError(
          name,
          "ring-out-of-ram",
          `${what} at ${hex(gpa)}+${hex(len)} (size ${size}) is not inside guest RAM`,
        );
      }
      return Number(gpa);
    };
    this.#descLen = DESC_SIZE * size;
    this.#availLen = 6 + 2 * size;
    this.#usedLen = 6 + 8 * size;
    this.#desc = ring("descriptor table", layout.desc, 16, this.#descLen);
    this.#avail = ring("available ring", layout.avail, 2, this.#availLen);
    this.#used = ring("used ring", layout.used, 4, this.#usedLen);
    this.#lastAvail = start.lastAvailIdx;
    this.#used16 = start.usedIdx;
    this.#signalled = start.usedIdx;
  }

  /** The next avail ring index the device will read (16-bit). */
  get lastAvailIdx(): number {
    return this.#lastAvail;
  }

  /** The used ring index the device last published (16-bit). */
  get usedIdx(): number {
    return this.#used16;
  }

  /** Byte offset of the available ring in guest memory's view. */
  #availOff(): number {
    return this.#mem.offset(this.#avail, this.#availLen, `${this.name} available ring`);
  }

  /** Byte offset of the used ring in guest memory's view. */
  #usedOff(): number {
    return this.#mem.offset(this.#used, this.#usedLen, `${this.name} used ring`);
  }

  #fail(rule: string, detail: string): never {
    throw new VirtqueueError(this.name, rule, detail);
  }

  /** True if pop() would return something (does not validate). */
  hasAvailable(): boolean {
    return this.#mem.view.getUint16(this.#availOff() + 2, true) !== this.#lastAvail;
  }

  /*V:120 Taking a request. avail.idx is read once, first; only then the
   * ring slot it covers, and only then the descriptors that slot names.
   * If avail.idx claims more than a ring's worth of new entries, the driver
   * has lost count (or is lying), and the ring slot we would read next might
   * be one it is rewriting: that is an error, not something to guess at.
   *
   * Then the whole chain is walked and checked before anything changes: the
   * one piece of state pop() advances, lastAvailIdx, moves only once the
   * chain has passed every rule. A VirtqueueError therefore leaves the queue
   * exactly as it was (and guest memory untouched: pop() never writes). :*/

  /**
   * Takes the next available chain, checking every rule first.
   * @returns the chain, or undefined when the driver has posted nothing new
   * @throws VirtqueueError if the driver broke a rule (the queue is not advanced)
   */
  pop(): Chain | undefined {
    const view = this.#mem.view;
    const avail = this.#availOff();
    const last = this.#lastAvail;
    const availIdx = view.getUint16(avail + 2, true);
    const pending = (availIdx - last) & 0xffff;
    if (pending === 0) return undefined;
    if (pending > this.size) {
      this.#fail(
        "avail-index",
        `avail.idx ${availIdx} is ${pending} entries ahead of the last one read (${last}), more than the ring of ${this.size}`,
      );
    }
    const head = view.getUint16(avail + 4 + 2 * (last & this.#mask), true);
    if (head >= this.size) {
      this.#fail("desc-index", `avail.ring[${last & this.#mask}] names head ${head}, past the ring of ${this.size}`);
    }
    const chain = this.#walk(head);
    this.#lastAvail = (last + 1) & 0xffff;
    if (this.#undoable < this.size) this.#undoable++;
    return chain;
  }

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
  #walk(head: number): Chain {
    const mem = this.#mem;
    const view = mem.view;
    const readable: Segment[] = [];
    const writable: Segment[] = [];
    let readableBytes = 0;
    let writableBytes = 0;
    let table = mem.offset(this.#desc, this.#descLen, `${this.name} descriptor table`);
    let entries = this.size;
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
        if (!this.features.indirect) {
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

  /**
   * Gives back the chain last popped (e.g. no room for it yet): the next pop() returns it again, re-reading
   * and re-validating it, since the guest may have changed it. Several pops may be undone in turn, but
   * not past a pushUsed (each pushUsed uses up one undo).
   * @throws Error if there is no pop to undo
   */
  unpop(): void {
    if (this.#undoable === 0) throw new Error(`${this.name}: unpop() without a pop() to undo`);
    this.#undoable--;
    this.#lastAvail = (this.#lastAvail - 1) & 0xffff;
  }

  /*V:130 Giving a buffer back. The element goes in first, at the slot the
   * used index points to, and only then the index moves on, so a driver
   * that sees the new index also sees the element. Our copy of used.idx is
   * the truth; we never read the guest's, which it could have scribbled on.
   * `written` is what the device actually wrote into the writable buffers:
   * drivers trust it (a network driver hands that many bytes up the stack),
   * so devices must report exactly that and nothing more. :*/

  /**
   * Returns a chain to the driver: used.ring[usedIdx % size] = {id: head, len: written}, then used.idx++.
   * @param head the chain's head, as popped
   * @param written bytes the device wrote into the chain's writable buffers
   * @throws RangeError if head or written is out of range (a device bug, not the guest's)
   */
  pushUsed(head: number, written: number): void {
    if (!Number.isInteger(head) || head < 0 || head >= this.size) {
      throw new RangeError(`${this.name}: pushUsed head ${head} is not a descriptor index below ${this.size}`);
    }
    if (!Number.isInteger(written) || written < 0 || written > 0xffffffff) {
      throw new RangeError(`${this.name}: pushUsed length ${written} is not a 32-bit byte count`);
    }
    const view = this.#mem.view;
    const used = this.#usedOff();
    const slot = used + 4 + 8 * (this.#used16 & this.#mask);
    view.setUint32(slot, head, true);
    view.setUint32(slot + 4, written, true);
    this.#used16 = (this.#used16 + 1) & 0xffff;
    view.setUint16(used + 2, this.#used16, true);
    if (this.#undoable > 0) this.#undoable--;
  }

  /*V:140 Interrupts are expensive for the guest, so the driver can say
   * when it wants them. Without EVENT_IDX it is one bit, NO_INTERRUPT in
   * avail.flags: a hint we honour. With EVENT_IDX the driver writes
   * used_event, the used index whose publication it wants to hear about,
   * into the slot after the avail ring, and we interrupt exactly when the
   * used index has stepped over it since the last time we asked:
   * (new - event - 1) < (new - old), all in 16 bits, which is the kernel's
   * vring_need_event. "Old" is the used index at our previous decision, so
   * each window is checked once, and if nothing was used since then there
   * is nothing to tell. :*/

  /**
   * After one or more pushUsed: should the device interrupt the driver now?
   * Honours VRING_AVAIL_F_NO_INTERRUPT, or with EVENT_IDX the used_event field (vring_need_event,
   * 16-bit wrap). Each call closes the window: the next call looks only at entries pushed after it.
   */
  needsInterrupt(): boolean {
    const old = this.#signalled;
    const now = this.#used16;
    this.#signalled = now;
    if (old === now) return false;
    fence();
    const view = this.#mem.view;
    const avail = this.#availOff();
    if (this.features.eventIdx) {
      const event = view.getUint16(avail + 4 + 2 * this.size, true);
      return ((now - event - 1) & 0xffff) < ((now - old) & 0xffff);
    }
    return (view.getUint16(avail, true) & VRING_AVAIL_F_NO_INTERRUPT) === 0;
  }

  /*V:141 The other direction: the driver's doorbell is an exit, costly for
   * both sides, so a busy device turns it off while it drains the queue and
   * back on when it runs dry. Without EVENT_IDX that is NO_NOTIFY in
   * used.flags; with it, avail_event (after the used ring) names the avail
   * index that should ring the bell, and "on" means "the very next one".
   * Turning off with EVENT_IDX writes nothing: the driver rings at most once
   * more, when it crosses the avail_event already there.
   *
   * Turning on has a race: the driver may have added a buffer just before
   * it could see the change, and so not rung. That is why enabling ends with
   * a barrier and a fresh look at avail.idx, and returns true if something
   * is waiting: the caller pops again instead of sleeping forever. :*/

  /**
   * Asks for (on) or suppresses (off) driver notifications.
   * @param on true to ask for a notification on the next available buffer
   * @returns true if buffers are available now (the caller should pop again)
   */
  enableNotifications(on: boolean): boolean {
    const view = this.#mem.view;
    const used = this.#usedOff();
    if (this.features.eventIdx) {
      if (on) view.setUint16(used + 4 + 8 * this.size, this.#lastAvail, true);
    } else {
      view.setUint16(used, on ? 0 : VRING_USED_F_NO_NOTIFY, true);
    }
    fence();
    return this.hasAvailable();
  }
}
