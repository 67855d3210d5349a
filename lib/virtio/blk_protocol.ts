/*V:330 The layout of the buffer a disk shares with its I/O threads, in one
 * place because both sides must agree on it to the byte:
 *
 *   control   SEQ (bumped per submission, the threads sleep on it), STOP
 *   state     one word per slot: FREE, SUBMITTED, RUNNING, DONE
 *   ints      per slot: operation, iovec count
 *   nums      per slot: file offset, length, result (bytes or -errno)
 *   iovecs    per slot: maxIovecs (base, length) pairs of host addresses
 *
 * Offsets and lengths are float64s: exact up to 2^53, which no disk file
 * reaches, and a float64 array needs no BigInt on either side. :*/

/** Job operations. */
export const IO_OP = { READ: 1, WRITE: 2, FLUSH: 3 } as const;

/** Word indices and slot states. */
export const SLOT = {
  /** Control words. */
  CTL_WORDS: 4,
  /** ctl[SEQ]: submission counter. */
  SEQ: 0,
  /** ctl[STOP]: 1 asks the threads to exit. */
  STOP: 1,
  /** Slot states. */
  FREE: 0,
  SUBMITTED: 1,
  RUNNING: 2,
  DONE: 3,
  /** int32 words per slot, and their indices. */
  INTS: 2,
  OP: 0,
  IOVCNT: 1,
  /** float64 words per slot, and their indices. */
  NUMS: 3,
  OFFSET: 0,
  LENGTH: 1,
  RESULT: 2,
} as const;

/** Byte offsets of each area in the shared buffer. */
export interface SlotLayout {
  /** Number of slots. */
  slots: number;
  /** iovec entries per slot. */
  maxIovecs: number;
  /** Where the state words start. */
  stateAt: number;
  /** Where the per-slot int32 words start. */
  intsAt: number;
  /** Where the per-slot float64 words start. */
  numsAt: number;
  /** Where the iovec arrays start. */
  iovAt: number;
  /** Total size. */
  bytes: number;
}

/** What the main thread posts to a new I/O thread. */
export interface WorkerInit {
  /** The shared buffer (see {@link slotLayout}). */
  shared: SharedArrayBuffer;
  /** Number of slots. */
  slots: number;
  /** iovec entries per slot. */
  maxIovecs: number;
  /** The disk file. */
  fd: number;
  /** The completion eventfd. */
  doneFd: number;
}

const align8 = (n: number) => Math.ceil(n / 8) * 8;

/**
 * Where each area sits for `slots` slots of `maxIovecs` iovecs.
 * @returns the offsets and the total size
 */
export function slotLayout(slots: number, maxIovecs: number): SlotLayout {
  if (!Number.isInteger(slots) || slots < 1 || !Number.isInteger(maxIovecs) || maxIovecs < 1) {
    throw new RangeError(`bad slot layout: ${slots} slots of ${maxIovecs} iovecs`);
  }
  const stateAt = 4 * SLOT.CTL_WORDS;
  const intsAt = stateAt + 4 * slots;
  const numsAt = align8(intsAt + 4 * SLOT.INTS * slots);
  const iovAt = numsAt + 8 * SLOT.NUMS * slots;
  return { slots, maxIovecs, stateAt, intsAt, numsAt, iovAt, bytes: iovAt + 16 * maxIovecs * slots };
}
