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
 * queue_thread.worker.ts). One small buffer of control words, and messages:
 *
 *   REQ        the session the main thread wants served (0: none)
 *   RING_BUSY  1 while the queue thread touches the rings (V:346)
 *   IDLE       the session the queue thread sleeps on with all answered
 *   SEEN       the avail index it had consumed when it went to sleep
 *   INFLIGHT   requests popped and not yet answered
 *   PEAK       the most requests that were with the I/O threads at once
 *   POSTED     messages the queue thread has posted
 *   CLOSED     1 once the queue thread has stopped its I/O threads
 *   UP         1 once the queue thread has set up (it takes sessions then)
 *   IO_UP      I/O threads that have started serving
 *
 * IDLE and SEEN let the main thread tell, without a word to the thread,
 * whether everything the driver posted has been answered: the thread
 * stores SEEN, then IDLE, just before it sleeps with the ring empty, and
 * clears IDLE when it wakes. A request posted since moves the avail index
 * past SEEN. POSTED is bumped before IDLE is stored, so a reader that
 * checks it last has every message the thread sent before it slept. :*/

/** Control word indices. */
export const QCTL = {
  WORDS: 10,
  REQ: 0,
  RING_BUSY: 1,
  IDLE: 2,
  SEEN: 3,
  INFLIGHT: 4,
  PEAK: 5,
  POSTED: 6,
  CLOSED: 7,
  UP: 8,
  IO_UP: 9,
} as const;

/** The first message to the queue thread: the disk and how to serve it. */
export interface QueueInit {
  /** Message kind. */
  kind: "init";
  /** The control words (QCTL.WORDS int32s). */
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

/** Messages from the queue thread: a --verbose line, or a rule the guest broke. */
export interface QueueReport {
  /** log: ctx.log; fail: ctx.fail. */
  kind: "log" | "fail";
  /** The session it happened in. */
  session: number;
  /** The line or the reason. */
  text: string;
}
