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

import { ioctl } from "../../sys/calls.ts";
import { EPOLL } from "../../sys/epoll.ts";
import { writeChain } from "../chain.ts";
import { ConsoleOutput } from "./output.ts";
import { bit, VIRTIO_ID, type VirtioContext, type VirtioDevice } from "../device.ts";
import { type Chain, type Virtqueue, VirtqueueError } from "../queue.ts";

/** virtio-console feature bits (bit numbers, virtio spec 5.3.3). */
export const VIRTIO_CONSOLE_F = { SIZE: 0, MULTIPORT: 1, EMERG_WRITE: 2 } as const;
/** Byte offsets in struct virtio_console_config, and its size. */
export const CONSOLE_CONFIG = { COLS: 0, ROWS: 2, MAX_NR_PORTS: 4, EMERG_WR: 8, SIZE: 12 } as const;
/** The receive queue (host to guest). */
export const CONSOLE_RX = 0;
/** The transmit queue (guest to host). */
export const CONSOLE_TX = 1;

const QUEUE_SIZE = 256;
const TIOCGWINSZ = 0x5413;
/** Chains one turn of the loop takes from a queue, in multiples of its size, before yielding. */
const BUDGET_RINGS = 4;
/** How long to wait before retrying an output that cannot be watched with epoll (ms). */
const RETRY_MS = 10;

/** How to build a {@link ConsoleDevice}. */
export interface ConsoleOptions {
  /** Where the guest's output goes (default 1, stdout). Never closed, never made non-blocking by the device. */
  outputFd?: number | undefined;
  /** A terminal to take the window size from (TIOCGWINSZ): VIRTIO_CONSOLE_F_SIZE is offered only if it answers. */
  sizeFd?: number | undefined;
}

/** A terminal's size in characters. */
export interface WindowSize {
  /** Columns. */
  cols: number;
  /** Rows. */
  rows: number;
}

/**
 * The window size of terminal `fd` (TIOCGWINSZ).
 * @param fd a descriptor that may be a terminal
 * @returns columns and rows, or undefined if `fd` is not a terminal
 */
export function windowSize(fd: number): WindowSize | undefined {
  const ws = new Uint16Array(4);
  try {
    ioctl(fd, TIOCGWINSZ, ws, "TIOCGWINSZ");
  } catch {
    return undefined;
  }
  return { rows: ws[0]!, cols: ws[1]! };
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
  #ctx: VirtioContext | undefined;
  #rx: Virtqueue | undefined;
  #tx: Virtqueue | undefined;
  /** Receive buffers the driver lent us, oldest first, not yet filled. */
  #lent: Chain[] = [];
  #wantSpace = false;
  #space: (() => void) | undefined;
  #sizeChanged = false;
  /** The output descriptor is in the event loop, waiting for EPOLLOUT. */
  #watching = false;
  /** A deferred turn (budget spent, or an output epoll cannot watch). */
  #later: ReturnType<typeof setTimeout> | undefined;

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

  #signalSpace(): void {
    this.#wantSpace = false;
    this.#space?.();
  }

  /** DRIVER_OK: takes both queues, drains what is already there, and says input may flow. */
  activate(ctx: VirtioContext, queues: ReadonlyArray<Virtqueue | undefined>): void {
    this.#ctx = ctx;
    this.#rx = queues[CONSOLE_RX];
    this.#tx = queues[CONSOLE_TX];
    if (this.#sizeChanged && (ctx.features & bit(VIRTIO_CONSOLE_F.SIZE)) !== 0n) ctx.configChanged();
    this.#sizeChanged = false;
    this.#popLent();
    this.#transmit();
    if (this.#ctx === ctx) this.#signalSpace();
  }

  /** The driver rang a doorbell: new receive buffers (0) or new output (1). */
  notify(queue: number): void {
    if (queue === CONSOLE_RX) {
      this.#popLent();
      if (this.#wantSpace && this.#lent.length > 0) this.#signalSpace();
    } else if (queue === CONSOLE_TX) this.#transmit();
  }

  /*V:355 Output. Every chain on the transmitq is characters to print. We
   * pop what the driver posted (at most a queue's worth waits with us at a
   * time), hand the chains to the output queue (V:371), and return each one
   * the moment its last byte is written, with a used length of 0 since we
   * wrote nothing into it, and one interrupt for the batch. When stdout is
   * full the chains stay with us, the driver runs out of buffers and waits,
   * and the event loop tells us when stdout drains: back-pressure, with no
   * byte lost and the loop never asleep in a write.
   *
   * A driver could keep the ring topped up forever, faster than we write
   * to a sink that never fills (/dev/null). So one turn takes at most a few
   * rings' worth of chains, then yields to the event loop and comes back on
   * a zero timer: other devices get their turn and the loop cannot be held
   * hostage. :*/
  #transmit(): void {
    const ctx = this.#ctx;
    const q = this.#tx;
    if (ctx === undefined || q === undefined) {
      this.#output.flush(undefined);
      return;
    }
    if (this.#watching || this.#later !== undefined) return;
    let budget = BUDGET_RINGS * q.size;
    for (;;) {
      try {
        while (budget > 0 && this.#output.pending < q.size) {
          const c = q.pop();
          if (c === undefined) break;
          budget--;
          if (c.writableBytes > 0) {
            throw new VirtqueueError(
              q.name,
              "tx-writable",
              `chain ${c.head} has ${c.writableBytes} device-writable bytes`,
            );
          }
          this.#output.pushChain(c.head, c.readable);
        }
      } catch (e) {
        this.#flushOutput(ctx, q);
        throw e;
      }
      if (!this.#flushOutput(ctx, q) || this.#ctx !== ctx) return;
      if (budget === 0) {
        this.#defer(0);
        return;
      }
      if (!q.enableNotifications(true)) return;
    }
  }

  /** Writes what the output takes now and returns the finished chains; false if it is blocked. */
  #flushOutput(ctx: VirtioContext, q: Virtqueue): boolean {
    const { done, blocked } = this.#output.flush(ctx.memory);
    for (const head of done) q.pushUsed(head, 0);
    if (done.length > 0) ctx.used(CONSOLE_TX);
    if (blocked) this.#waitWritable(ctx);
    return !blocked;
  }

  /*V:373 Waiting for stdout. The output descriptor goes into the event
   * loop for EPOLLOUT only while output is blocked, and comes out as soon
   * as it fires, so an idle console costs the loop nothing. A descriptor
   * epoll refuses (a regular file, which never blocks anyway) or one the
   * loop already watches is retried on a short timer instead. Either way
   * the turn that resumes runs outside the transport, so it catches what
   * the guest's rings throw and fails the device itself. :*/
  #waitWritable(ctx: VirtioContext): void {
    let added = false;
    try {
      added = ctx.loop.add(this.#output.fd, EPOLL.OUT, () => this.#resume());
    } catch {
      added = false;
    }
    if (added) this.#watching = true;
    else this.#defer(RETRY_MS);
  }

  #defer(ms: number): void {
    if (this.#later === undefined) this.#later = setTimeout(() => this.#resume(), ms);
  }

  #stopWaiting(): void {
    if (this.#watching) this.#ctx?.loop.remove(this.#output.fd);
    this.#watching = false;
    if (this.#later !== undefined) clearTimeout(this.#later);
    this.#later = undefined;
  }

  /** A deferred turn: output may have room, or the budget is fresh. */
  #resume(): void {
    this.#stopWaiting();
    const ctx = this.#ctx;
    if (ctx === undefined) return;
    try {
      this.#popLent();
      this.#transmit();
      if (this.#ctx === ctx && this.#wantSpace && this.#lent.length > 0) this.#signalSpace();
    } catch (e) {
      ctx.fail(e instanceof Error ? e.message : String(e));
    }
  }

  /*V:360 Input, and the heir of the seed's enable_fd. The driver lends us
   * empty buffers on the receiveq; we take them as soon as it rings (so any
   * rule it broke is caught there, and the transport marks the device
   * NEEDS_RESET), and keep them until keystrokes come. receive() fills the
   * oldest first, and gives each back with exactly the number of bytes
   * written into it, with one interrupt per call.
   *
   * When there is no buffer left, receive() takes what it can (maybe
   * nothing) and says so; the stdin pump then keeps the rest and stops
   * reading stdin, which is back-pressure all the way to the terminal. The
   * next time the driver rings the receiveq we tell our space listener,
   * and the pump offers its bytes again. :*/

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
          if (this.#lent.length === 0) this.#popLent();
          const chain = this.#lent.shift();
          if (chain === undefined || this.#ctx !== ctx) break;
          const n = writeChain(ctx.memory, chain, bytes.subarray(taken));
          q.pushUsed(chain.head, n);
          taken += n;
          returned++;
        }
      } catch (e) {
        ctx.fail(e instanceof Error ? e.message : String(e));
        return taken;
      }
      if (returned > 0) ctx.used(CONSOLE_RX);
    }
    if (taken < bytes.length) this.#wantSpace = true;
    return taken;
  }

  /*V:365 What a hostile driver can do to the console beyond what the
   * virtqueue itself refuses (see V:105): put readable buffers on the
   * receiveq or writable ones on the transmitq. The spec says the driver
   * MUST NOT, and the seed killed the launcher over it; we name the rule
   * ("rx-readable", "tx-writable") in a VirtqueueError, which the transport
   * turns into DEVICE_NEEDS_RESET, exactly like a broken ring. Zero-length
   * buffers carry nothing, so they break nothing: a receive chain made only
   * of them goes straight back, used length 0, without taking any input.
   *
   * Nor may the driver make us hoard: the ring lets it post the same head
   * again and again, so we hold at most a queue's worth of lent buffers
   * (the rest wait in the ring until input uses some up), and one turn
   * pops at most a few rings' worth before yielding (see V:355). :*/
  #popLent(): void {
    const ctx = this.#ctx;
    const q = this.#rx;
    if (ctx === undefined || q === undefined) return;
    let returned = 0;
    let budget = BUDGET_RINGS * q.size;
    try {
      for (;;) {
        while (budget > 0 && this.#lent.length < q.size) {
          const c = q.pop();
          if (c === undefined) break;
          budget--;
          if (c.readableBytes > 0) {
            throw new VirtqueueError(
              q.name,
              "rx-readable",
              `chain ${c.head} has ${c.readableBytes} device-readable bytes`,
            );
          }
          if (c.writableBytes > 0) this.#lent.push(c);
          else {
            q.pushUsed(c.head, 0);
            returned++;
          }
        }
        if (this.#lent.length >= q.size) break;
        if (budget === 0) {
          this.#defer(0);
          break;
        }
        if (!q.enableNotifications(true)) break;
      }
    } finally {
      if (returned > 0) ctx.used(CONSOLE_RX);
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

  /** Drops the queues, the lent buffers and unwritten chains; if the device was live, held input may move on. */
  reset(): void {
    const wasLive = this.#ctx !== undefined;
    this.#stopWaiting();
    this.#ctx = undefined;
    this.#rx = undefined;
    this.#tx = undefined;
    this.#lent = [];
    this.#output.dropChains();
    if (wasLive) this.#signalSpace();
  }

  /** Resets and forgets the space listener; the output fd is the caller's. Idempotent. */
  close(): void {
    this.reset();
    this.#space = undefined;
  }
}
