/*V:350 The console is the one device the original launcher always had:
 * keystrokes in, characters out, and nothing else. Its virtio form is two
 * queues and no cleverness. Queue 0, the receiveq, holds empty buffers the
 * driver lends us for input; queue 1, the transmitq, holds the characters
 * the guest wants printed. Linux calls the result hvc0.
 *
 * We offer no MULTIPORT (one port, no control queues) and so stay with the
 * two queues the seed had. Two small extras from the spec cost a few lines:
 * EMERG_WRITE, a config field the driver may write a single character to
 * before any queue exists, and SIZE, the terminal's columns and rows, which
 * we offer only when there is a terminal to ask. :*/

import { type WindowSize, windowSize } from "../../sys/termios.ts";
import { EPOLL } from "../../sys/epoll.ts";
import { writeChain } from "../chain.ts";
import { ConsoleOutput } from "./output.ts";
import { bit, type DeviceContext, type QueueSession, VIRTIO_ID, type VirtioDevice } from "../device.ts";
import { type DrainEnd, drainQueue, LoopQueue } from "../drain.ts";
import { type Chain, type Virtqueue, VirtqueueError } from "../queue.ts";

export { type WindowSize, windowSize };

/** virtio-console feature bits (bit numbers, virtio spec 5.3.3). */
export const VIRTIO_CONSOLE_F = { SIZE: 0, MULTIPORT: 1, EMERG_WRITE: 2 } as const;
/** Byte offsets in struct virtio_console_config, and its size. */
export const CONSOLE_CONFIG = { COLS: 0, ROWS: 2, MAX_NR_PORTS: 4, EMERG_WR: 8, SIZE: 12 } as const;
/** The receive queue (host to guest). */
export const CONSOLE_RX = 0;
/** The transmit queue (guest to host). */
export const CONSOLE_TX = 1;

const QUEUE_SIZE = 256;
/** Chains one turn takes from a queue, in multiples of its size, before yielding to the loop. */
export const BUDGET_RINGS = 4;
/** How long to wait before retrying an output that cannot be watched with epoll (ms). */
const RETRY_MS = 10;

/** How to build a {@link ConsoleDevice}. */
export interface ConsoleOptions {
  /** Where the guest's output goes (default 1, stdout). Never closed, never made non-blocking by the device. */
  outputFd?: number | undefined;
  /** A terminal to take the window size from (TIOCGWINSZ): VIRTIO_CONSOLE_F_SIZE is offered only if it answers. */
  sizeFd?: number | undefined;
}

/** The error for chain `head` breaking one of the console's own rules (V:365). */
function broken(vq: Virtqueue, rule: string, head: number, bytes: string): VirtqueueError {
  return new VirtqueueError(vq.name, rule, `chain ${head} has ${bytes} bytes`);
}

/** virtio-console (device id 3), one port: hvc0 in a Linux guest. */
export class ConsoleDevice implements VirtioDevice {
  /** For messages. */
  readonly name: string = "virtio-console";
  /** VIRTIO_ID_CONSOLE. */
  readonly deviceId: number = VIRTIO_ID.CONSOLE;
  /** EMERG_WRITE, and SIZE when there is a terminal to ask. */
  readonly features: bigint;
  /** The receiveq and the transmitq. */
  readonly queueSizes: readonly number[] = [QUEUE_SIZE, QUEUE_SIZE];
  /** struct virtio_console_config. */
  readonly config: Uint8Array = new Uint8Array(CONSOLE_CONFIG.SIZE);
  readonly #cfg = new DataView(this.config.buffer);
  readonly #output: ConsoleOutput;
  readonly #sizeFd: number | undefined;
  #ctx: DeviceContext | undefined;
  #rx: LoopQueue | undefined;
  #tx: LoopQueue | undefined;
  /** Receive buffers the driver lent us, oldest first, not yet filled. */
  #lent: Chain[] = [];
  #wantSpace = false;
  #space: (() => void) | undefined;
  #written: (() => void) | undefined;
  #sizeChanged = false;
  /** The output descriptor is in the event loop, waiting for EPOLLOUT. */
  #watching = false;
  /** A retry of blocked output that epoll cannot watch. */
  #retry: ReturnType<typeof setTimeout> | undefined;

  /**
   * Makes a console that prints to `options.outputFd`.
   * @param options output fd, and a terminal for the window size
   */
  constructor(options: ConsoleOptions = {}) {
    this.#output = new ConsoleOutput(options.outputFd ?? 1, (line) => this.#ctx?.log(line));
    this.#sizeFd = options.sizeFd;
    const size = options.sizeFd === undefined ? undefined : windowSize(options.sizeFd);
    let features = bit(VIRTIO_CONSOLE_F.EMERG_WRITE);
    if (size !== undefined) {
      features |= bit(VIRTIO_CONSOLE_F.SIZE);
      this.#setSize(size);
    }
    this.features = features;
    this.#cfg.setUint32(CONSOLE_CONFIG.MAX_NR_PORTS, 1, true);
  }

  /**
   * Sets who to tell when input can flow again: after receive() took less than it was offered, once the
   * driver lends new buffers; and whenever the device goes live or is reset (held input may move on).
   * @param listener called on the main thread; undefined to stop telling anyone
   */
  onSpace(listener: (() => void) | undefined): void {
    this.#space = listener;
  }

  /**
   * Sets who to tell each time the guest's output has been written (for --timings' "first console byte").
   * @param listener called on the main thread; undefined to stop telling anyone
   */
  onOutput(listener: (() => void) | undefined): void {
    this.#written = listener;
  }

  #signalSpace(): void {
    this.#wantSpace = false;
    this.#space?.();
  }

  /** DRIVER_OK: watches both doorbells, serves what is already posted, and says input may flow. */
  activate(ctx: DeviceContext, queues: ReadonlyArray<QueueSession | undefined>): void {
    this.#stop();
    this.#ctx = ctx;
    const [rx, tx] = [queues[CONSOLE_RX], queues[CONSOLE_TX]];
    this.#rx = rx === undefined ? undefined : new LoopQueue(ctx, rx, (q) => this.#lendTurn(q));
    this.#tx = tx === undefined ? undefined : new LoopQueue(ctx, tx, (q) => this.#transmitTurn(q));
    if (this.#sizeChanged && (ctx.features & bit(VIRTIO_CONSOLE_F.SIZE)) !== 0n) ctx.configChanged();
    this.#sizeChanged = false;
    this.#rx?.run();
    this.#transmit();
    if (this.#ctx === ctx) this.#signalSpace();
  }

  /*V:355 Output. Every chain on the transmitq is characters to print. The
   * driver's doorbell (an eventfd the transmitq's LoopQueue watches on the
   * main loop) starts a turn; the turn drains the ring with drainQueue
   * (V:150) into the output queue (V:371), at most a queue's worth waiting
   * with us at a time, and returns each chain the moment its last byte is
   * written, with a used length of 0 since we wrote nothing into it, and
   * one interrupt() for the batch, which asks the ring whether the driver
   * wants one. When stdout is full the chains stay with us, the driver runs
   * out of buffers and waits, and the event loop tells us when stdout
   * drains: back-pressure, with no byte lost and the loop never asleep in a
   * write. A doorbell that rings meanwhile finds the turn waiting and leaves
   * it so.
   *
   * A driver could keep the ring topped up forever, faster than we write
   * to a sink that never fills (/dev/null). So one turn takes at most a few
   * rings' worth of chains (BUDGET_RINGS), then yields: LoopQueue brings the
   * next turn on a zero timer, after the other devices had theirs. :*/
  #transmitTurn(q: LoopQueue): DrainEnd | void {
    if (this.#watching || this.#retry !== undefined) return;
    const vq = q.vq;
    let budget = BUDGET_RINGS * vq.size;
    for (;;) {
      // Pop only what may wait with us; the rest stays in the ring until the output takes what we hold.
      const room = Math.min(vq.size - this.#output.pending, budget);
      let end: DrainEnd = "budget";
      try {
        if (room > 0) {
          const turn = drainQueue(vq, room, (c) => {
            if (c.writableBytes > 0) throw broken(vq, "tx-writable", c.head, `${c.writableBytes} device-writable`);
            this.#output.pushChain(c.head, c.readable);
            return true;
          });
          budget -= turn.served;
          end = turn.end;
        }
      } catch (e) {
        this.#flushOutput(q);
        throw e;
      }
      if (!this.#flushOutput(q)) return;
      if (end !== "budget") return end;
      if (budget === 0) return "budget";
    }
  }

  /** Runs a transmit turn, or with no live transmitq writes what host bytes it can. */
  #transmit(): void {
    if (this.#tx !== undefined) this.#tx.run();
    else this.#output.flush(undefined);
  }

  /** Writes what the output takes now and returns the finished chains; false if it is blocked. */
  #flushOutput(q: LoopQueue): boolean {
    const { done, blocked } = this.#output.flush(this.#ctx?.memory);
    for (const head of done) q.vq.pushUsed(head, 0);
    if (done.length > 0) {
      this.#written?.();
      q.interrupt();
    }
    if (blocked) this.#waitWritable(q);
    return !blocked;
  }

  /*V:373 Waiting for stdout. The output descriptor goes into the event
   * loop for EPOLLOUT only while output is blocked, and comes out as soon
   * as it fires, so an idle console costs the loop nothing. A descriptor
   * epoll refuses (a regular file, which never blocks anyway) or one the
   * loop already watches is retried on a short timer instead. Either way
   * the turn resumes through its LoopQueue, so what the guest's rings throw
   * there fails the device, as from a doorbell. :*/
  #waitWritable(q: LoopQueue): void {
    const resume = () => {
      this.#stopWaiting();
      q.run();
    };
    let added = false;
    try {
      added = this.#ctx?.loop.add(this.#output.fd, EPOLL.OUT, resume) ?? false;
    } catch {
      added = false;
    }
    if (added) this.#watching = true;
    else this.#retry ??= setTimeout(resume, RETRY_MS);
  }

  #stopWaiting(): void {
    if (this.#watching) this.#ctx?.loop.remove(this.#output.fd);
    this.#watching = false;
    if (this.#retry !== undefined) clearTimeout(this.#retry);
    this.#retry = undefined;
  }

  /*V:360 Input, and the heir of the seed's enable_fd. The driver lends us
   * empty buffers on the receiveq; the receiveq's doorbell starts a turn
   * that takes them at once (so any rule it broke is caught there, and the
   * transport marks the device NEEDS_RESET), and we keep them until
   * keystrokes come. receive() fills the oldest first, and gives each back
   * with exactly the number of bytes written into it, with one interrupt()
   * per call. It is bounded by what it is offered: a lent buffer takes at
   * least a byte (one with no room is never lent, V:365).
   *
   * When there is no buffer left, receive() takes what it can (maybe
   * nothing) and says so; the stdin pump then keeps the rest and stops
   * reading stdin, which is back-pressure all the way to the terminal. The
   * next turn that finds new buffers tells our space listener, and the pump
   * offers its bytes again. :*/

  /**
   * Offers input bytes to the guest.
   * @param bytes keystrokes (copied; the caller may reuse the array)
   * @returns how many were taken (fewer than offered: the space listener is called when more fit)
   */
  receive(bytes: Uint8Array): number {
    const ctx = this.#ctx;
    const q = this.#rx;
    let taken = 0;
    if (ctx !== undefined && q !== undefined) {
      let returned = 0;
      try {
        while (taken < bytes.length) {
          if (this.#lent.length === 0 && this.#popLent(q) === "budget") q.later();
          const chain = this.#lent.shift();
          if (chain === undefined || this.#rx !== q) break;
          const n = writeChain(ctx.memory, chain, bytes.subarray(taken));
          q.vq.pushUsed(chain.head, n);
          taken += n;
          returned++;
        }
      } catch (e) {
        ctx.fail(e instanceof Error ? e.message : String(e));
        return taken;
      }
      if (returned > 0) q.interrupt();
    }
    if (taken < bytes.length) this.#wantSpace = true;
    return taken;
  }

  /** A receiveq turn: takes the lent buffers, and tells a waiting pump if there are some. */
  #lendTurn(q: LoopQueue): DrainEnd {
    const end = this.#popLent(q);
    if (this.#rx === q && this.#wantSpace && this.#lent.length > 0) this.#signalSpace();
    return end;
  }

  /*V:365 What a hostile driver can do to the console beyond what the
   * virtqueue itself refuses (see V:105): put readable buffers on the
   * receiveq or writable ones on the transmitq. The spec says the driver
   * MUST NOT, and the seed killed the launcher over it; we name the rule
   * ("rx-readable", "tx-writable") in a VirtqueueError, which the LoopQueue
   * hands to the transport as a failure, and the transport marks the device
   * DEVICE_NEEDS_RESET, exactly like a broken ring. Zero-length buffers
   * carry nothing, so they break nothing: a receive chain made only of them
   * goes straight back, used length 0, without taking any input.
   *
   * Nor may the driver make us hoard: the ring lets it post the same head
   * again and again, so we hold at most a queue's worth of lent buffers
   * (drainQueue is given only the room that is left, and the rest wait in
   * the ring, unpopped, until input uses some up), and one turn pops at
   * most BUDGET_RINGS rings' worth, zero-length chains included, before
   * yielding (see V:355). :*/
  #popLent(q: LoopQueue): DrainEnd {
    const vq = q.vq;
    let budget = BUDGET_RINGS * vq.size;
    let returned = 0;
    try {
      for (;;) {
        const room = vq.size - this.#lent.length;
        if (room <= 0) return "declined";
        if (budget === 0) return "budget";
        const { served, end } = drainQueue(vq, Math.min(room, budget), (c) => {
          if (c.readableBytes > 0) throw broken(vq, "rx-readable", c.head, `${c.readableBytes} device-readable`);
          if (c.writableBytes > 0) this.#lent.push(c);
          else {
            vq.pushUsed(c.head, 0);
            returned++;
          }
          return true;
        });
        budget -= served;
        if (end !== "budget") return end;
      }
    } finally {
      if (returned > 0) q.interrupt();
    }
  }

  /*V:370 Emergency write: a driver may print one character by writing it
   * to emerg_wr, even before it has set up any queue. We take the low byte
   * of whatever access covers that field and queue it behind any output
   * already waiting, so the order holds. The other config fields are
   * read-only; writes to them are ignored. :*/

  /** A driver write to the config space: only emerg_wr does anything. */
  writeConfig(offset: number, bytes: Uint8Array): void {
    const at = CONSOLE_CONFIG.EMERG_WR - offset;
    if (at < 0 || at >= bytes.length) return;
    this.#output.pushHost(Uint8Array.of(bytes[at]!));
    this.#transmit();
  }

  /**
   * The terminal changed size: updates cols/rows and, if the driver took VIRTIO_CONSOLE_F_SIZE, tells it.
   * Ignored unless the device offers VIRTIO_CONSOLE_F_SIZE.
   * @param size the new size
   */
  resize(size: WindowSize): void {
    if ((this.features & bit(VIRTIO_CONSOLE_F.SIZE)) === 0n) return;
    this.#setSize(size);
    const ctx = this.#ctx;
    if (ctx === undefined) this.#sizeChanged = true;
    else if ((ctx.features & bit(VIRTIO_CONSOLE_F.SIZE)) !== 0n) ctx.configChanged();
  }

  /** Reads the terminal's size again (after SIGWINCH) and passes a change on to the driver. */
  refreshSize(): void {
    const size = this.#sizeFd === undefined ? undefined : windowSize(this.#sizeFd);
    const cols = this.#cfg.getUint16(CONSOLE_CONFIG.COLS, true);
    const rows = this.#cfg.getUint16(CONSOLE_CONFIG.ROWS, true);
    if (size !== undefined && (size.cols !== cols || size.rows !== rows)) this.resize(size);
  }

  #setSize(size: WindowSize): void {
    this.#cfg.setUint16(CONSOLE_CONFIG.COLS, size.cols & 0xffff, true);
    this.#cfg.setUint16(CONSOLE_CONFIG.ROWS, size.rows & 0xffff, true);
  }

  /** Stops watching doorbells and stdout; drops the lent buffers and unwritten chains. */
  #stop(): void {
    this.#stopWaiting();
    this.#rx?.close();
    this.#tx?.close();
    this.#ctx = undefined;
    this.#rx = undefined;
    this.#tx = undefined;
    this.#lent = [];
    this.#output.dropChains();
  }

  /** Drops the queues, the lent buffers and unwritten chains; if the device was live, held input may move on. */
  reset(): void {
    const wasLive = this.#ctx !== undefined;
    this.#stop();
    if (wasLive) this.#signalSpace();
  }

  /** Resets and forgets the space listener; the output fd is the caller's. Idempotent. */
  close(): void {
    this.reset();
    this.#space = undefined;
  }
}
