/*L:500 The main thread serves its devices from one loop, as the original
 * launcher's Waker dreamed of: one epoll set holds every descriptor the main
 * thread waits on (stdin, the mailbox of forwarded register writes, the
 * doorbells of the queues served here, taps, stdout while it is full), and
 * each ready descriptor calls its handler. A device that serves a queue on
 * a thread of its own (the disk) waits on that queue's doorbell there
 * instead, so its requests never pass through this loop. The wait itself
 * runs on Deno's blocking pool so the JavaScript event loop stays free for
 * signals, Worker messages and timers; a private eventfd lets anyone cut a
 * wait short, which is how handlers are added, removed, or the loop
 * stopped. If the wait itself fails, nothing can be served any more: run()
 * ends with that error instead of trying again. :*/

import { close, drainEventfd, EPOLL, Epoll, eventfd, signalEventfd, SysError } from "./sys/mod.ts";

/** Called with the EPOLL.* bits that fired. */
export type FdHandler = (events: number) => void;

/** A single-threaded epoll loop. */
export class EventLoop {
  readonly #epoll = new Epoll(64);
  readonly #handlers = new Map<number, FdHandler>();
  readonly #wakeFd: number;
  #running = false;
  #stopped = false;
  #failure: { error: unknown } | undefined;
  /** Called when a handler throws; the default rethrows out of run(). */
  onError: ((e: unknown) => void) | undefined;

  constructor() {
    this.#wakeFd = eventfd();
    this.#epoll.add(this.#wakeFd, EPOLL.IN);
  }

  /**
   * Watches `fd` for `events` and calls `handler` when they fire. Returns
   * false if the fd cannot be polled (a regular file, /dev/null): the caller
   * then treats it as always ready.
   */
  add(fd: number, events: number, handler: FdHandler): boolean {
    try {
      this.#epoll.add(fd, events);
    } catch (e) {
      if (e instanceof SysError && e.code === "EPERM") return false;
      throw e;
    }
    this.#handlers.set(fd, handler);
    this.wake();
    return true;
  }

  /** Changes the events watched on `fd`. */
  modify(fd: number, events: number): void {
    this.#epoll.modify(fd, events);
    this.wake();
  }

  /** Stops watching `fd` (no error if it was not watched). */
  remove(fd: number): void {
    if (!this.#handlers.delete(fd)) return;
    try {
      this.#epoll.remove(fd);
    } catch {
      // Already closed: the kernel dropped it from the set.
    }
  }

  /** Cuts the current wait short. */
  wake(): void {
    if (this.#running) signalEventfd(this.#wakeFd);
  }

  /**
   * Runs until stop().
   * @throws SysError naming epoll_wait and the errno if the wait itself fails
   * (a closed or replaced epoll fd): the loop ends rather than retrying at
   * full speed; a wait a signal interrupted simply waits again. Also throws
   * what a handler threw (without onError) or what fail() was given.
   */
  async run(): Promise<void> {
    this.#running = true;
    try {
      while (!this.#stopped) {
        const ready = await this.#epoll.wait(-1);
        for (const { fd, events } of ready) {
          if (this.#stopped) break;
          if (fd === this.#wakeFd) {
            drainEventfd(this.#wakeFd);
            continue;
          }
          const h = this.#handlers.get(fd);
          if (h === undefined) continue;
          try {
            h(events);
          } catch (e) {
            if (this.onError === undefined) throw e;
            this.onError(e);
          }
        }
      }
      if (this.#failure !== undefined) throw this.#failure.error;
    } finally {
      this.#running = false;
    }
  }

  /**
   * Ends run() with `error` after the current batch, like a handler that
   * throws without onError. For host faults found where a throw would not
   * reach run(): a timer, a signal listener, or device code that catches
   * what it calls. The first error wins.
   */
  fail(error: unknown): void {
    this.#failure ??= { error };
    this.stop();
  }

  /** Ends run() after the current batch. */
  stop(): void {
    this.#stopped = true;
    if (this.#running) signalEventfd(this.#wakeFd);
  }

  /** Releases the epoll and wake fds. Call after run() has returned. */
  close(): void {
    this.#epoll.close();
    close(this.#wakeFd);
  }
}
