/*T:601 A device now watches its own doorbells on the main loop, so a
 * bench that rings one must have that loop running, and must know when the
 * ring has been served before it looks at the used ring. LiveLoop runs a
 * real EventLoop in the background from the start, and settle() waits the
 * way the loop itself orders things: a probe eventfd is signalled and the
 * loop answers it only after every descriptor that was ready before it
 * (the doorbells just rung among them) has had its handler run; then one
 * zero timer lets a turn a device put off with LoopQueue.later() run too.
 * It goes round again while the caller says a doorbell is still pending.
 *
 * Interrupts are read the way KVM would see them: the irqfd is an eventfd,
 * and its counter, read without blocking, says how many times the device
 * raised it since the last look. :*/

import { EventLoop } from "../../lib/eventloop.ts";
import { bufferAddress, close, drainEventfd, eventfd, readAt, signalEventfd } from "../../lib/sys/calls.ts";
import { EPOLL } from "../../lib/sys/epoll.ts";

/**
 * How many times eventfd `fd` was signalled since it was last read (its counter, read and so reset to 0).
 * @param fd a non-blocking eventfd
 */
export function takeCount(fd: number): number {
  const counter = new BigUint64Array(1);
  return readAt(fd, bufferAddress(counter), 8) === 8 ? Number(counter[0]) : 0;
}

/** A real event loop, running in the background until close(). */
export class LiveLoop {
  /** The loop (hand it to devices and transports). */
  readonly loop: EventLoop;
  readonly #probe = eventfd();
  readonly #ended: Promise<{ error?: unknown }>;
  #end: { error?: unknown } | undefined;
  #wake: (() => void) | undefined;
  #errorSeen = false;
  #closed = false;

  /** @param loop the loop to run (default a new one); closed by close() */
  constructor(loop: EventLoop = new EventLoop()) {
    this.loop = loop;
    loop.add(this.#probe, EPOLL.IN, () => {
      drainEventfd(this.#probe);
      this.#wake?.();
    });
    this.#ended = loop.run().then(() => ({}), (error: unknown) => ({ error })).then((end) => {
      this.#end = end;
      this.#wake?.();
      return end;
    });
  }

  /**
   * Waits until the loop has served everything ready so far, and a zero-timer turn after it; again while
   * `pending()` is true.
   * @param pending e.g. "a doorbell the device watches is still readable"
   * @param timers wait for a zero timer too (default): it costs milliseconds, not microseconds like the probe,
   *   so a caller that knows no turn can have put work off (no budget can be spent) may leave it out
   * @throws the loop's error if it ended with one, or an Error after `timeoutMs`
   */
  async settle(pending: () => boolean = () => false, timers = true, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      await this.#roundTrip(deadline);
      if (timers) await new Promise((resolve) => setTimeout(resolve, 0));
      if (!pending()) return;
      if (Date.now() > deadline) throw new Error(`settle: still pending after ${timeoutMs} ms`);
    }
  }

  #roundTrip(deadline: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#wake = undefined;
        reject(new Error("the loop did not answer its probe in time"));
      }, Math.max(0, deadline - Date.now()));
      this.#wake = () => {
        clearTimeout(timer);
        this.#wake = undefined;
        if (this.#end === undefined) resolve();
        else reject(this.#endError(this.#end));
      };
      if (this.#end === undefined) signalEventfd(this.#probe, "probe");
      else this.#wake();
    });
  }

  #endError(end: { error?: unknown }): unknown {
    if (!("error" in end)) return new Error("the loop has stopped");
    this.#errorSeen = true;
    return end.error;
  }

  /**
   * Waits until `done()` holds, checking every millisecond or so (the loop keeps running meanwhile).
   * @throws Error naming `what` after `limitMs` (a bound against hangs, not a timing assertion), or the loop's error
   */
  async until(done: () => boolean, what: string, limitMs = 5000): Promise<void> {
    const start = Date.now();
    while (!done()) {
      if (this.#end !== undefined) throw this.#endError(this.#end);
      if (Date.now() - start > limitMs) throw new Error(`gave up waiting for ${what} after ${limitMs} ms`);
      await new Promise((r) => setTimeout(r, 1));
    }
  }

  /**
   * Waits (bounded) for the loop to end with an error, as loop.fail() ends it, and returns that error.
   * @throws Error if the loop is still running after `timeoutMs` or ended without an error
   */
  async failure(timeoutMs = 5000): Promise<unknown> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<undefined>((resolve) => timer = setTimeout(() => resolve(undefined), timeoutMs));
    const end = await Promise.race([this.#ended, timeout]);
    clearTimeout(timer);
    if (end === undefined) throw new Error(`the loop still runs after ${timeoutMs} ms`);
    if (!("error" in end)) throw new Error("the loop ended without an error");
    this.#errorSeen = true;
    return end.error;
  }

  /**
   * Stops the loop, waits for it, and releases it and the probe. Safe twice.
   * @throws the loop's error, if it ended with one nobody was shown
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.loop.stop();
    const end = await this.#ended;
    this.loop.remove(this.#probe);
    this.loop.close();
    close(this.#probe);
    if ("error" in end && !this.#errorSeen) throw end.error;
  }
}
