/*V:150 Draining a queue, the one way every device does it. A turn pops a
 * chain, hands it to the device's `serve`, and goes on until one of three
 * things: the ring is empty (then notifications go back on, and if the
 * driver slipped a buffer in meanwhile the turn goes on: see V:141), the
 * device declines a chain because the host side is full (the chain goes
 * back to the ring, untouched, and the device resumes when there is room),
 * or the turn's budget is spent. The budget is what keeps a guest that
 * re-posts buffers as fast as we return them from holding the thread for
 * ever: on the main loop that would starve every other device, the timers
 * and Ctrl-C. After a spent budget the next turn comes on a zero timer, so
 * everything else that is ready gets its turn first.
 *
 * Notifications stay off while a turn runs: the driver need not ring a
 * doorbell we are going to look at anyway. :*/

import type { EventLoop } from "../eventloop.ts";
import { drainEventfd } from "../sys/calls.ts";
import { EPOLL } from "../sys/epoll.ts";
import { type DeviceContext, type QueueSession, raiseInterrupt } from "./device.ts";
import { type Chain, Virtqueue } from "./queue.ts";

/** Chains one turn serves at most, unless a device says otherwise: a few rings' worth. */
export const DEFAULT_BUDGET = 256;

/** How a turn ended. */
export type DrainEnd = "empty" | "declined" | "budget";

/**
 * Serves chains from `vq` until it is empty (notifications re-enabled), `serve` declines one, or `budget`
 * chains were served.
 * @param serve called with each chain; returns false to decline it (it is put back and the turn ends)
 * @returns how many chains were served and why the turn ended
 * @throws VirtqueueError if the driver broke a rule (chains served before it stay served)
 */
export function drainQueue(
  vq: Virtqueue,
  budget: number,
  serve: (chain: Chain) => boolean,
): { served: number; end: DrainEnd } {
  let served = 0;
  vq.enableNotifications(false);
  for (;;) {
    if (served >= budget) return { served, end: "budget" };
    const chain = vq.pop();
    if (chain === undefined) {
      if (vq.enableNotifications(true)) continue;
      return { served, end: "empty" };
    }
    if (!serve(chain)) {
      vq.unpop();
      return { served, end: "declined" };
    }
    served++;
  }
}

/*V:151 On the main loop a queue is a LoopQueue: it watches the session's
 * doorbell, and each ring (or a device's own call to run(), when the host
 * side has room again) runs one turn of the device's code. The turn returns
 * how it ended; after a spent budget another turn is scheduled. Anything the
 * guest did wrong, thrown from anywhere in a turn, fails the device through
 * its context, never the launcher. Interrupts go through interrupt(), which
 * asks the ring whether the driver wants one. :*/

/** One queue served on the main loop. */
export class LoopQueue {
  /** The device's view of the rings. */
  readonly vq: Virtqueue;
  /** The session it serves. */
  readonly session: QueueSession;
  readonly #ctx: DeviceContext;
  readonly #loop: EventLoop;
  readonly #turn: (q: LoopQueue) => DrainEnd | void;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;

  /**
   * Builds the rings' view and starts watching the doorbell (the first turn is the device's to run).
   * @param ctx the device's context
   * @param session the queue, as activate() received it
   * @param turn one turn of the device's work, given this queue; returns how it ended ("budget" schedules another)
   */
  constructor(ctx: DeviceContext, session: QueueSession, turn: (q: LoopQueue) => DrainEnd | void) {
    this.#ctx = ctx;
    this.#loop = ctx.loop;
    this.session = session;
    this.#turn = turn;
    this.vq = new Virtqueue(ctx.memory, session.layout, session.features, session.name, session.start);
    ctx.loop.add(session.doorbell, EPOLL.IN, () => {
      drainEventfd(session.doorbell);
      this.run();
    });
  }

  /** Runs one turn now (unless closed); guest faults fail the device. */
  run(): void {
    if (this.#closed) return;
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    let end: DrainEnd | void;
    try {
      end = this.#turn(this);
    } catch (e) {
      this.#ctx.fail(e instanceof Error ? e.message : String(e));
      return;
    }
    if (end === "budget") this.later();
  }

  /** Runs a turn on a zero timer, after whatever else is ready (once, however often asked). */
  later(): void {
    if (this.#closed || this.#timer !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.run();
    }, 0);
  }

  /*V:152 A failed irqfd write is the host's fault, not the guest's: it
   * must not become "device needs reset" (which needs an interrupt too),
   * and a throw would land in whatever device code called us. So the loop
   * is told to end the run with one line naming the queue and the errno. :*/

  /** After pushUsed: raises the interrupt if the driver wants one. */
  interrupt(): void {
    if (this.#closed || !this.vq.needsInterrupt()) return;
    try {
      raiseInterrupt(this.session.interrupt);
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      this.#loop.fail(new Error(`${this.session.name}: cannot raise its interrupt: ${why}`, { cause: e }));
    }
  }

  /** Stops watching the doorbell and drops a scheduled turn. Safe twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#loop.remove(this.session.doorbell);
  }
}
