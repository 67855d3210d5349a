/*V:336 A device whose queues are served on a thread of their own (the
 * disk's request queue, the network card's two) shares a few control words
 * with the main thread, in one SharedArrayBuffer laid out here, and the same
 * handshake for taking a session away (V:346):
 *
 *   REQ        the session the main thread wants served (0: none)
 *   RING_BUSY  1 while the thread touches the rings
 *   IDLE       the session the thread sleeps on with everything answered
 *   POSTED     messages the thread has posted
 *   CLOSED     1 once the thread has let go of everything
 *   UP         1 once the thread has set up (it takes sessions then)
 *
 * Each device puts its own words after these (THREAD_WORDS on). POSTED is
 * bumped before a message goes out, and before IDLE is stored, so a reader
 * that sees the thread idle and checks POSTED last has every message the
 * thread sent before it slept. This file is the thread's side; host.ts is
 * the main thread's. :*/

import { lastErrno, libc } from "../../sys/libc.ts";
import { Errno, errnoName } from "../../sys/errno.ts";

/** The control words every served-on-a-thread device has, and how many there are. */
export const THREAD_CTL = {
  REQ: 0,
  RING_BUSY: 1,
  IDLE: 2,
  POSTED: 3,
  CLOSED: 4,
  UP: 5,
} as const;

/** The first control word a device may use for itself. */
export const THREAD_WORDS = 6;

/** A line for --verbose, or a rule the guest broke (the device then needs a reset). */
export interface ThreadReport {
  /** log: ctx.log; fail: ctx.fail. */
  kind: "log" | "fail";
  /** The session it happened in (stale ones are ignored). */
  session: number;
  /** The line or the reason. */
  text: string;
}

/** Thrown when the ring window finds the session withdrawn: the session ends without another touch. */
export class Withdrawn extends Error {}

/** The thread's side of the ring window (V:346) for one session. */
export class RingWindow {
  readonly #ctl: Int32Array<SharedArrayBuffer>;
  readonly #session: number;

  /**
   * @param ctl the shared control words
   * @param session the session this window guards
   */
  constructor(ctl: Int32Array<SharedArrayBuffer>, session: number) {
    this.#ctl = ctl;
    this.#session = session;
  }

  /** True while the main thread still wants this session served (a cheap look, outside the window). */
  get wanted(): boolean {
    return Atomics.load(this.#ctl, THREAD_CTL.REQ) === this.#session;
  }

  /**
   * Opens the window: after this the rings are ours until leave().
   * @throws Withdrawn if the session was withdrawn (nothing may be touched)
   */
  enter(): void {
    Atomics.store(this.#ctl, THREAD_CTL.RING_BUSY, 1);
    if (Atomics.load(this.#ctl, THREAD_CTL.REQ) !== this.#session) {
      Atomics.store(this.#ctl, THREAD_CTL.RING_BUSY, 0);
      throw new Withdrawn();
    }
  }

  /** Closes the window. */
  leave(): void {
    Atomics.store(this.#ctl, THREAD_CTL.RING_BUSY, 0);
  }
}

/**
 * Counts and posts a report to the main thread (POSTED first, see V:336).
 * @param post the Worker's postMessage
 */
export function postReport(
  ctl: Int32Array<SharedArrayBuffer>,
  post: (r: ThreadReport) => void,
  report: ThreadReport,
): void {
  Atomics.add(ctl, THREAD_CTL.POSTED, 1);
  post(report);
}

/**
 * poll(2) on `count` pollfds in `pfd` (fd, events|revents<<16 pairs) until one is ready, retrying EINTR.
 * @param timeoutMs -1 to wait for ever
 * @throws Error naming `who` and the errno for any other failure
 */
export function pollReady(pfd: Int32Array<ArrayBuffer>, count: number, who: string, timeoutMs = -1): number {
  for (;;) {
    const n = libc.poll(Deno.UnsafePointer.of(pfd), BigInt(count), timeoutMs);
    if (n >= 0) return n;
    const e = lastErrno();
    if (e !== Errno.EINTR) throw new Error(`${who}: poll failed: ${errnoName(e)}`);
  }
}
