/*V:330 The layout of the buffer a disk shares with its I/O threads, in one
 * place because both sides must agree on it to the byte:
 *
 *   control   SEQ (bumped per submission, the threads sleep on it), STOP,
 *             UP (threads serving, unless the owner counts them elsewhere)
 *   state     one word per slot: FREE, SUBMITTED, RUNNING, DONE
 *   ints      per slot: operation, iovec count
 *   nums      per slot: file offset, length, result (bytes or -errno)
 *   iovecs    per slot: maxIovecs (base, length) pairs of host addresses
 *
 * Offsets and lengths are float64s: exact up to 2^53, which no disk file
 * reaches, and a float64 array needs no BigInt on either side. :*/

import type { QueueSession } from "../device.ts";
import { THREAD_WORDS } from "../thread/window.ts";

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
  /** ctl[UP]: threads that have started serving (when the owner gives no word of its own). */
  UP: 2,
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

/** What the queue's thread posts to a new I/O thread. */
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
  /** Holds the int32 word each thread adds 1 to once it is ready to claim jobs. */
  up: SharedArrayBuffer;
  /** Index of that word. */
  upIndex: number;
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

/*V:343 What the main thread and the request queue's own thread share (see
 * queue_thread.worker.ts): the control words every served-on-a-thread
 * device has (V:336), then the disk's own:
 *
 *   SEEN       the avail index it had consumed when it went to sleep
 *   INFLIGHT   requests popped and not yet answered
 *   PEAK       the most requests that were with the I/O threads at once
 *   IO_UP      I/O threads that have started serving
 *
 * IDLE and SEEN let the main thread tell, without a word to the thread,
 * whether everything the driver posted has been answered: the thread
 * stores SEEN, then IDLE, just before it sleeps with the ring empty, and
 * clears IDLE when it wakes. A request posted since moves the avail index
 * past SEEN. :*/

/** The disk's control words, after the common ones. */
export const QCTL = {
  SEEN: THREAD_WORDS,
  INFLIGHT: THREAD_WORDS + 1,
  PEAK: THREAD_WORDS + 2,
  IO_UP: THREAD_WORDS + 3,
  WORDS: THREAD_WORDS + 4,
} as const;

/** The first message to the queue thread: the disk and how to serve it. */
export interface QueueInit {
  /** Message kind. */
  kind: "init";
  /** The control words (THREAD_CTL, then QCTL; QCTL.WORDS int32s). */
  ctl: SharedArrayBuffer;
  /** The disk file. */
  fd: number;
  /** An eventfd the main thread writes to wake the queue thread when it withdraws a session. */
  stopFd: number;
  /** For messages, e.g. "virtio-blk (disk.img)". */
  name: string;
  /** Capacity in sectors. */
  sectors: number;
  /** Refuse writes. */
  readOnly: boolean;
  /** Data buffers per request. */
  segMax: number;
  /** The GET_ID answer, zero padded. */
  id: Uint8Array;
  /** I/O threads (0: the queue thread does every request itself). */
  threads: number;
  /** Requests handed to the I/O threads at once. */
  slots: number;
}

/** Starts serving one activation of the queue. */
export interface SessionStart {
  /** Message kind. */
  kind: "start";
  /** The session number (REQ). */
  session: number;
  /** Host address of guest RAM. */
  hostAddress: bigint;
  /** Bytes of guest RAM. */
  memSize: number;
  /** The queue, as the transport handed it to activate(). */
  queue: QueueSession;
}

/** Messages to the queue thread. */
export type QueueCommand = QueueInit | SessionStart | { kind: "close" };
