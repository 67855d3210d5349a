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
 *   REQ       the session the main thread wants served (0: none)
 *   ACK       the session the queue thread is serving (0: none)
 *   KICKS     bumped by notify() before it rings the doorbell
 *   DONE      the KICKS value the queue thread has fully answered
 *   INFLIGHT  requests popped and not yet answered
 *   PEAK      the most requests that were in flight at once
 *   POSTED    messages the queue thread has posted
 *   CLOSED    1 once the queue thread has stopped its I/O threads
 *   UP        1 once the queue thread has set up (it takes sessions then)
 *   IO_UP     I/O threads that have started serving
 *
 * REQ and ACK make stopping safe without a lock: the main thread stores REQ
 * then reads ACK, the queue thread stores ACK then reads REQ, and with
 * sequentially consistent atomics at least one of them sees the other's
 * store; so either the queue thread never starts the old session, or the
 * main thread waits for it to end. In the first case the main thread may
 * already have activated the next session (and counted its kick in KICKS)
 * by the time the queue thread gets to the old one's start message, so a
 * session the queue thread did not serve must leave no trace: it only
 * acknowledges it and lets go. DONE is written by the queue thread only
 * while it serves a session, and by the main thread in reset, which
 * follows the end of every session (a stop, or a failure it was told of). :*/

/** Control word indices. */
export const QCTL = {
  WORDS: 10,
  REQ: 0,
  ACK: 1,
  KICKS: 2,
  DONE: 3,
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
  /** An eventfd the main thread writes to stop a session. */
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
export interface QueueSession {
  /** Message kind. */
  kind: "start";
  /** The session number (REQ). */
  session: number;
  /** Host address of guest RAM. */
  hostAddress: bigint;
  /** Bytes of guest RAM. */
  memSize: number;
  /** For messages, e.g. "virtio-blk (disk.img) queue 0". */
  queueName: string;
  /** The rings, as the driver placed them. */
  layout: { size: number; desc: bigint; avail: bigint; used: bigint };
  /** The negotiated ring features. */
  features: { eventIdx: boolean; indirect: boolean };
  /** Where the rings' indices stand. */
  start: { lastAvailIdx: number; usedIdx: number };
  /** The doorbell eventfd. */
  doorbell: number;
  /** The eventfd to write when the driver wants an interrupt. */
  irqfd: number;
  /** The interrupt status word to set first, if any. */
  isr?: { image: SharedArrayBuffer; word: number; bit: number };
}

/** Messages to the queue thread. */
export type QueueCommand = QueueInit | QueueSession | { kind: "close" };

/** Messages from the queue thread: a --verbose line, or a rule the guest broke. */
export interface QueueReport {
  /** log: ctx.log; fail: ctx.fail. */
  kind: "log" | "fail";
  /** The session it happened in. */
  session: number;
  /** The line or the reason. */
  text: string;
}
