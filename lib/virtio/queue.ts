/*V:101 The Virtqueue below is the device's half of one split ring: it
 * checks the layout the driver chose, takes requests off the available
 * ring (walking each chain with the ChainWalker of walk.ts, chapter V:125),
 * gives them back on the used ring, and decides when either side needs to
 * hear about it. The ring's vocabulary (flags, layout, chains and the
 * errors a hostile driver earns) lives in ring.ts, and is exported from
 * here too. :*/

import type { GuestMemory } from "../memory.ts";
import {
  type Chain,
  DESC_SIZE,
  hex,
  MAX_QUEUE_SIZE,
  type QueueFeatures,
  type QueueLayout,
  type QueueStart,
  VirtqueueError,
  VRING_AVAIL_F_NO_INTERRUPT,
  VRING_USED_F_NO_NOTIFY,
} from "./ring.ts";
import { ChainWalker } from "./walk.ts";

export {
  type Chain,
  MAX_INDIRECT_ENTRIES,
  MAX_QUEUE_SIZE,
  type QueueFeatures,
  type QueueLayout,
  type QueueStart,
  type Segment,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
  VirtqueueError,
  VRING_AVAIL_F_NO_INTERRUPT,
  VRING_DESC_F_INDIRECT,
  VRING_DESC_F_NEXT,
  VRING_DESC_F_WRITE,
  VRING_USED_F_NO_NOTIFY,
} from "./ring.ts";

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
  readonly #walker: ChainWalker;
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
    this.#walker = new ChainWalker(mem, { name, size, indirect: features.indirect });
    this.#lastAvail = start.lastAvailIdx;
    this.#used16 = start.usedIdx;
    this.#signalled = start.usedIdx;
  }

  /** The next avail ring index the device will read (16-bit). */
  get lastAvailIdx(): number {
    return this.#lastAvail;
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
    const table = this.#mem.offset(this.#desc, this.#descLen, `${this.name} descriptor table`);
    const chain = this.#walker.walk(table, head);
    this.#lastAvail = (last + 1) & 0xffff;
    if (this.#undoable < this.size) this.#undoable++;
    return chain;
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
