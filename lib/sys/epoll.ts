/*S:140 epoll is how one thread waits on many descriptors. A struct
 * epoll_event is packed on x86_64: a 32-bit event mask followed by a 64-bit
 * user word, 12 bytes with no padding. We keep the fd in the user word. The
 * main thread waits with the pool-thread variant so Deno's own event loop
 * (signals, Worker messages, timers) keeps turning while it waits. :*/

import { lastErrno, libc } from "./libc.ts";
import { Errno, SysError } from "./errno.ts";
import { close } from "./calls.ts";

/** epoll event bits. */
export const EPOLL = { IN: 1, OUT: 4, ERR: 8, HUP: 16, RDHUP: 0x2000, ET: 0x8000_0000 } as const;

const EPOLL_CTL_ADD = 1;
const EPOLL_CTL_DEL = 2;
const EPOLL_CTL_MOD = 3;
const EVENT_SIZE = 12;
const EPOLL_CLOEXEC = 0o2000000;

/** One ready descriptor: its fd and the events that fired. */
export interface Ready {
  /** The descriptor. */
  fd: number;
  /** EPOLL.* bits. */
  events: number;
}

/** An epoll instance owned by one thread. */
export class Epoll {
  #fd: number;
  readonly #max: number;
  readonly #events: Uint8Array<ArrayBuffer>;
  readonly #view: DataView;
  readonly #ctl = new Uint8Array(EVENT_SIZE);
  readonly #ctlView = new DataView(this.#ctl.buffer);

  /** @param maxEvents how many ready fds one wait can report */
  constructor(maxEvents = 64) {
    const fd = libc.epoll_create1(EPOLL_CLOEXEC);
    if (fd < 0) throw new SysError("epoll_create1", lastErrno());
    this.#fd = fd;
    this.#max = maxEvents;
    this.#events = new Uint8Array(maxEvents * EVENT_SIZE);
    this.#view = new DataView(this.#events.buffer);
  }

  #control(op: number, fd: number, events: number, name: string): void {
    this.#ctlView.setUint32(0, events >>> 0, true);
    this.#ctlView.setBigUint64(4, BigInt(fd), true);
    if (libc.epoll_ctl(this.#fd, op, fd, Deno.UnsafePointer.of(this.#ctl)) < 0) {
      throw new SysError(`epoll_ctl(${name})`, lastErrno(), `fd ${fd}`);
    }
  }

  /** Starts watching `fd` for `events`. */
  add(fd: number, events: number): void {
    this.#control(EPOLL_CTL_ADD, fd, events, "ADD");
  }

  /** Changes the events watched on `fd`. */
  modify(fd: number, events: number): void {
    this.#control(EPOLL_CTL_MOD, fd, events, "MOD");
  }

  /** Stops watching `fd`. */
  remove(fd: number): void {
    this.#control(EPOLL_CTL_DEL, fd, 0, "DEL");
  }

  #collect(n: number): Ready[] {
    const out: Ready[] = [];
    for (let i = 0; i < n; i++) {
      const off = i * EVENT_SIZE;
      out.push({ fd: Number(this.#view.getBigUint64(off + 4, true)), events: this.#view.getUint32(off, true) });
    }
    return out;
  }

  /*S:145 The wait that runs on a pool thread leaves its errno on that
   * thread, and the next call on the pool may run anywhere: from here the
   * number cannot be read. So a failed wait is asked again, synchronously
   * and without sleeping, on this thread. The errors epoll_wait can give
   * (EBADF, EINVAL, EFAULT) follow from its arguments, which have not
   * changed, so the repeat fails the same way and its errno is ours to read.
   * The one that does not is EINTR, a signal that happened to land on the
   * pool thread: then the repeat succeeds, and whatever it finds ready is
   * the answer. Reporting nothing instead would have the caller wait again
   * at once, fail again at once, and spin a core forever. :*/

  /**
   * Waits up to `timeoutMs` (-1: forever) on a pool thread. A wait a signal
   * interrupted reports what is ready now (often nothing).
   * @throws SysError naming epoll_wait and the errno if the wait fails
   */
  async wait(timeoutMs: number): Promise<Ready[]> {
    const n = await libc.epoll_wait_async(this.#fd, Deno.UnsafePointer.of(this.#events), this.#max, timeoutMs);
    return n >= 0 ? this.#collect(n) : this.#askAgain();
  }

  /** The wait again, without sleeping and on this thread, so that a failure's errno is ours to read. */
  #askAgain(): Ready[] {
    const n = libc.epoll_wait(this.#fd, Deno.UnsafePointer.of(this.#events), this.#max, 0);
    if (n < 0) {
      const e = lastErrno();
      if (e === Errno.EINTR) return [];
      throw new SysError("epoll_wait", e, `epoll fd ${this.#fd}`);
    }
    return this.#collect(n);
  }

  /** Closes the epoll fd; safe to call twice. */
  close(): void {
    close(this.#fd);
    this.#fd = -1;
  }
}
