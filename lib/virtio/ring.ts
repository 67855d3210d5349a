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
  /** The head descriptor index: give it back with `Virtqueue.pushUsed`. */
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

/** Bytes in one descriptor: addr (8), len (4), flags (2), next (2). */
export const DESC_SIZE = 16;

/** A guest physical address in hex, for messages. */
export function hex(n: number | bigint): string {
  return `0x${n.toString(16)}`;
}
