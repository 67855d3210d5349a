/*V:337 The main thread's side of a device served on a thread of its own
 * (V:348): it spawns the Worker, numbers the sessions, hands each one over
 * and takes it back, passes on what the thread reports, and ends the thread.
 *
 * Taking a session back never waits for I/O (V:346): REQ goes to 0, then
 * the only wait is for an open ring window to close, which takes
 * microseconds; a thread that holds it for WINDOW_TIMEOUT_MS is called
 * stuck, and the device is failed. Then the stop eventfd wakes the thread,
 * wherever it sleeps. Closing waits for the thread to say it let go of
 * everything (its own I/O finished), never for ever: after CLOSE_TIMEOUT_MS
 * it is terminated all the same. Only then may the caller close the fds the
 * thread used. :*/

import { close, eventfd, signalEventfd } from "../../sys/calls.ts";
import type { DeviceContext } from "../device.ts";
import { workerUrl } from "../../worker_url.ts";
import { THREAD_CTL, type ThreadReport } from "./window.ts";

/** How long close() waits for the thread to let go of everything. */
const CLOSE_TIMEOUT_MS = 10_000;
/** How long withdraw() waits for a ring window to close before it calls the thread stuck. */
const WINDOW_TIMEOUT_MS = 2_000;

/** The device a {@link QueueThread} serves, as far as the thread's reports need it. */
export interface QueueThreadOwner {
  /** The device's context while it is active (undefined otherwise): where lines and failures go. */
  context(): DeviceContext | undefined;
  /** The device's reset: it drops its session, which withdraws it here. */
  reset(): void;
}

/** A device's queue-serving Worker, seen from the main thread (see V:337). */
export class QueueThread<Command> {
  /** The control words: {@link THREAD_CTL} first, then the device's own. */
  readonly ctl: Int32Array<SharedArrayBuffer>;
  /** Wakes the thread when a session is withdrawn (or at close). */
  readonly stopFd: number;
  readonly #name: string;
  readonly #worker: Worker;
  readonly #owner: QueueThreadOwner;
  #session = 0;
  #serving = false;
  #received = 0;
  #failure: string | undefined;
  #closed = false;

  /**
   * Spawns the thread.
   * @param source the Worker module, e.g. `new URL("./queue_thread.worker.ts", import.meta.url)`
   * @param name for messages and the thread's name, e.g. "virtio-blk (disk.img) queue thread"
   * @param words control words in all (at least THREAD_WORDS)
   * @param owner the device: its context takes the thread's lines and failures, its reset ends a failed session
   */
  constructor(source: URL, name: string, words: number, owner: QueueThreadOwner) {
    this.#name = name;
    this.#owner = owner;
    this.ctl = new Int32Array(new SharedArrayBuffer(4 * words));
    this.stopFd = eventfd();
    try {
      this.#worker = new Worker(workerUrl(source), { type: "module", name });
    } catch (e) {
      close(this.stopFd);
      throw e;
    }
    this.#worker.onerror = (ev) => {
      ev.preventDefault();
      this.#failure ??= `${name} failed: ${ev.message}`;
      this.#fail(this.#failure);
    };
    this.#worker.onmessage = (ev: MessageEvent<ThreadReport>) => {
      this.#received++;
      const r = ev.data;
      if (!this.#serving || r.session !== this.#session) return;
      if (r.kind === "log") this.#owner.context()?.log(r.text);
      else this.#fail(r.text);
    };
  }

  /** Why the thread serves nothing more, if it does not. */
  get failure(): string | undefined {
    return this.#failure;
  }

  /** The session being served (0: none). */
  get session(): number {
    return this.#serving ? this.#session : 0;
  }

  /** True once the thread has set up (a session handed over is taken up at once). */
  get up(): boolean {
    return Atomics.load(this.ctl, THREAD_CTL.UP) === 1;
  }

  /**
   * True while a message the thread posted has not arrived yet, or while it is not asleep on the session
   * being served with everything answered (a device adds its own "everything answered" checks).
   */
  get busy(): boolean {
    if (Atomics.load(this.ctl, THREAD_CTL.POSTED) !== this.#received) return true;
    return this.#serving && Atomics.load(this.ctl, THREAD_CTL.IDLE) !== this.#session;
  }

  /** Posts a message (the device's init, a session's start, ...). */
  post(message: Command): void {
    this.#worker.postMessage(message);
  }

  /**
   * Starts a new session: REQ names it before the caller posts its start message.
   * @returns the session number, to put in that message
   * @throws Error if the thread is closed or broken
   */
  begin(): number {
    if (this.#closed) throw new Error(`${this.#name} is closed`);
    if (this.#failure !== undefined) throw new Error(this.#failure);
    this.withdraw();
    this.#session++;
    this.#serving = true;
    Atomics.store(this.ctl, THREAD_CTL.REQ, this.#session);
    return this.#session;
  }

  /**
   * Takes the session back (V:346): once this returns the thread touches no ring, status byte or
   * interrupt of it again. Does nothing without a session.
   * @throws Error if the thread held its ring window too long (then it is broken)
   */
  withdraw(): void {
    if (!this.#serving) return;
    this.#serving = false;
    const ctl = this.ctl;
    Atomics.store(ctl, THREAD_CTL.REQ, 0);
    if (Atomics.load(ctl, THREAD_CTL.RING_BUSY) !== 0) {
      const deadline = performance.now() + WINDOW_TIMEOUT_MS;
      for (let i = 0; Atomics.load(ctl, THREAD_CTL.RING_BUSY) !== 0; i++) {
        if (i < 1000) continue;
        if (performance.now() > deadline) {
          const why = `${this.#name} held its ring for over ${WINDOW_TIMEOUT_MS / 1000} s`;
          this.#failure ??= why;
          throw new Error(why);
        }
        Atomics.wait(ctl, THREAD_CTL.RING_BUSY, 1, 0.1);
      }
    }
    signalEventfd(this.stopFd, `${this.#name} stop eventfd`);
  }

  /**
   * A rule the guest broke, or a thread that failed: `ctx.fail` (the transport marks the device as needing a
   * reset, and normally resets it), then the owner's reset unless that already happened or a new session
   * began meanwhile. Nothing happens while the device has no context.
   */
  #fail(reason: string): void {
    const ctx = this.#owner.context();
    if (ctx === undefined) return;
    const session = this.session;
    ctx.fail(reason);
    if (session === this.session && this.#serving) this.#owner.reset();
  }

  /**
   * The device's close, in one order whatever throws: the owner's reset (it drops its session, which
   * withdraws it), then the thread ends ({@link close}), then `release` closes what the thread used.
   */
  shutDown(closeMessage: Command, release: () => void): void {
    try {
      this.#owner.reset();
    } finally {
      try {
        this.close(closeMessage);
      } finally {
        release();
      }
    }
  }

  /**
   * Withdraws the session, asks the thread to let go of everything (`closeMessage`), waits for it (bounded),
   * terminates it and closes the stop eventfd. Safe twice. The fds the thread used are the caller's to close,
   * after this.
   */
  close(closeMessage: Command): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.withdraw();
    } finally {
      if (this.#failure === undefined) {
        this.post(closeMessage);
        signalEventfd(this.stopFd, `${this.#name} stop eventfd`);
        Atomics.wait(this.ctl, THREAD_CTL.CLOSED, 0, CLOSE_TIMEOUT_MS);
      }
      this.#worker.terminate();
      close(this.stopFd);
    }
  }
}
