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

import { ioctl, POLL, pollOne, write, writev } from "../sys/calls.ts";
import { SysError } from "../sys/errno.ts";
import { IoVecs } from "../sys/iovec.ts";
import { writeChain } from "./chain.ts";
import { bit, VIRTIO_ID, type VirtioContext, type VirtioDevice } from "./device.ts";
import { type Chain, type Virtqueue, VirtqueueError } from "./queue.ts";

/** virtio-console feature bits (bit numbers, virtio spec 5.3.3). */
export const VIRTIO_CONSOLE_F = { SIZE: 0, MULTIPORT: 1, EMERG_WRITE: 2 } as const;
/** Byte offsets in struct virtio_console_config, and its size. */
export const CONSOLE_CONFIG = { COLS: 0, ROWS: 2, MAX_NR_PORTS: 4, EMERG_WR: 8, SIZE: 12 } as const;
/** The receive queue (host to guest). */
export const CONSOLE_RX = 0;
/** The transmit queue (guest to host). */
export const CONSOLE_TX = 1;

const QUEUE_SIZE = 256;
/** Linux's IOV_MAX: the most entries one writev takes. */
const IOV_MAX = 1024;
const TIOCGWINSZ = 0x5413;

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
  readonly name = "virtio-console";
  readonly deviceId = VIRTIO_ID.CONSOLE;
  readonly features: bigint;
  readonly queueSizes: readonly number[] = [QUEUE_SIZE, QUEUE_SIZE];
  readonly config = new Uint8Array(CONSOLE_CONFIG.SIZE);
  readonly #out: number;
  readonly #cfg = new DataView(this.config.buffer);
  readonly #iov = new IoVecs(IOV_MAX);
  #ctx: VirtioContext | undefined;
  #rx: Virtqueue | undefined;
  #tx: Virtqueue | undefined;
  /** Receive buffers the driver lent us, oldest first, not yet filled. */
  #lent: Chain[] = [];
  #wantSpace = false;
  #space: (() => void) | undefined;
  #broken = false;
  #sizeChanged = false;

  /** @param options output fd, and a terminal for the window size */
  constructor(options: ConsoleOptions = {}) {
    this.#out = options.outputFd ?? 1;
    const size = options.sizeFd === undefined ? undefined : windowSize(options.sizeFd);
    let features = bit(VIRTIO_CONSOLE_F.EMERG_WRITE);
    if (size !== undefined) {
      features |= bit(VIRTIO_CONSOLE_F.SIZE);
      this.#setSize(size);
    }
    this.features = features;
    this.#cfg.setUint32(CONSOLE_CONFIG.MAX_NR_PORTS, 1, true);
  }

  /** True while a driver has the device live with its receive queue: input should come here, not the UART. */
  get active(): boolean {
    return this.#ctx !== undefined && this.#rx !== undefined;
  }

  /**
   * Sets who to tell when input can flow again: after receive() took less than it was offered, once the
   * driver lends new buffers; and whenever the device goes live or is reset (input may need re-routing).
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
    this.#signalSpace();
    if (this.#sizeChanged && (ctx.features & bit(VIRTIO_CONSOLE_F.SIZE)) !== 0n) ctx.configChanged();
    this.#sizeChanged = false;
    this.#takeLent();
    this.#transmit();
  }

  /** The driver rang a doorbell: new receive buffers (0) or new output (1). */
  notify(queue: number): void {
    if (queue === CONSOLE_RX) this.#takeLent();
    else if (queue === CONSOLE_TX) this.#transmit();
  }

  /*V:355 Output. Every chain on the transmitq is characters to print, and
   * we print them without copying: each readable buffer becomes an iovec
   * pointing into guest memory (GuestMemory checks each one again), and
   * one writev sends the whole batch. Only then do the chains go back, with
   * a used length of 0 (we wrote nothing into them), and the driver hears
   * one interrupt for all of them.
   *
   * The output is usually our stdout, which belongs to the shell too and
   * so stays blocking: a writev may be short (we carry on from where it
   * stopped) and, if someone else made it non-blocking, may say EAGAIN, and
   * then we sleep in poll until it drains rather than spin. If the output
   * fails for good (a closed pipe), we say so once and discard from then on;
   * the guest's chains still come back, or its console would hang. :*/
  #transmit(): void {
    const ctx = this.#ctx;
    const q = this.#tx;
    if (ctx === undefined || q === undefined) return;
    do {
      const heads: number[] = [];
      try {
        for (let c = q.pop(); c !== undefined; c = q.pop()) {
          if (c.writableBytes > 0) {
            throw new VirtqueueError(
              q.name,
              "tx-writable",
              `chain ${c.head} has ${c.writableBytes} device-writable bytes`,
            );
          }
          heads.push(c.head);
          for (const s of c.readable) {
            if (this.#iov.count === IOV_MAX) this.#flush();
            this.#iov.push(ctx.memory.hostAddr(s.addr, s.len, `${q.name} buffer`), s.len);
          }
        }
      } finally {
        this.#flush();
        for (const head of heads) q.pushUsed(head, 0);
        if (heads.length > 0) ctx.used(CONSOLE_TX);
      }
    } while (q.enableNotifications(true));
  }

  /** Writes out every pending iovec, resuming short writes; never throws. */
  #flush(): void {
    const iov = this.#iov;
    const raw = iov.raw;
    let first = 0;
    while (first < iov.count && !this.#broken) {
      const n = this.#attempt(() => writev(this.#out, raw.subarray(2 * first), iov.count - first));
      if (n < 0) continue;
      let left = n;
      while (left > 0 && first < iov.count) {
        const len = Number(raw[2 * first + 1]);
        if (left < len) {
          raw[2 * first] = raw[2 * first]! + BigInt(left);
          raw[2 * first + 1] = BigInt(len - left);
          break;
        }
        left -= len;
        first++;
      }
    }
    iov.clear();
  }

  /** Writes `bytes` out whole (the emergency path); never throws. */
  #print(bytes: Uint8Array<ArrayBuffer>): void {
    let done = 0;
    while (done < bytes.length && !this.#broken) {
      const n = this.#attempt(() => write(this.#out, bytes.subarray(done)));
      if (n > 0) done += n;
    }
  }

  /**
   * One write attempt: the count written, or -1 to try again (after EAGAIN has been waited out, or EINTR).
   * A hard error, or a write of nothing, marks the output broken.
   */
  #attempt(call: () => number): number {
    try {
      const n = call();
      if (n > 0) return n;
      if (n < 0) {
        const revents = pollOne(this.#out, POLL.OUT, -1);
        if ((revents & (POLL.ERR | POLL.HUP | POLL.NVAL)) === 0) return -1;
        this.#breakOutput(`poll on fd ${this.#out} says ${revents}`);
      } else this.#breakOutput(`fd ${this.#out} accepted nothing`);
    } catch (e) {
      if (e instanceof SysError && e.code === "EINTR") return -1;
      this.#breakOutput(e instanceof Error ? e.message : String(e));
    }
    return 0;
  }

  #breakOutput(why: string): void {
    this.#broken = true;
    this.#ctx?.log(`output failed (${why}); discarding the guest's console output from now on`);
  }

  /*V:360 Input, and the heir of the seed's enable_fd. The driver lends us
   * empty buffers on the receiveq; we take them as soon as it rings (so any
   * rule it broke is caught there, and the transport marks the device
   * NEEDS_RESET), and keep them until keystrokes come. receive() fills the
   * oldest first, one chain per call per buffer, and gives each back with
   * exactly the number of bytes written, with one interrupt per call.
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
        while (taken < bytes.length && this.#lent.length > 0) {
          const chain = this.#lent.shift()!;
          const n = writeChain(ctx.memory, chain, bytes.subarray(taken));
          q.pushUsed(chain.head, n);
          taken += n;
          returned++;
        }
      } catch (e) {
        // Not reachable with checked chains; but input must never take the launcher down.
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
   * of them goes straight back, used length 0, without taking any input. :*/
  #takeLent(): void {
    const ctx = this.#ctx;
    const q = this.#rx;
    if (ctx === undefined || q === undefined) return;
    let returned = 0;
    try {
      do {
        for (let c = q.pop(); c !== undefined; c = q.pop()) {
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
      } while (q.enableNotifications(true));
    } finally {
      if (returned > 0) ctx.used(CONSOLE_RX);
    }
    if (this.#wantSpace && this.#lent.length > 0) this.#signalSpace();
  }

  /*V:370 Emergency write: a driver may print one character by writing it
   * to emerg_wr, even before it has set up any queue. We take the low byte
   * of whatever access covers that field. The other config fields are
   * read-only; writes to them are ignored. :*/

  /** A driver write to the config space: only emerg_wr does anything. */
  writeConfig(offset: number, bytes: Uint8Array): void {
    const at = CONSOLE_CONFIG.EMERG_WR - offset;
    if (at < 0 || at >= bytes.length) return;
    this.#print(Uint8Array.of(bytes[at]!));
  }

  /**
   * The terminal changed size: updates cols/rows and, if the driver took VIRTIO_CONSOLE_F_SIZE, tells it.
   * Ignored unless the device offers VIRTIO_CONSOLE_F_SIZE.
   */
  resize(size: WindowSize): void {
    if ((this.features & bit(VIRTIO_CONSOLE_F.SIZE)) === 0n) return;
    this.#setSize(size);
    const ctx = this.#ctx;
    if (ctx === undefined) this.#sizeChanged = true;
    else if ((ctx.features & bit(VIRTIO_CONSOLE_F.SIZE)) !== 0n) ctx.configChanged();
  }

  #setSize(size: WindowSize): void {
    this.#cfg.setUint16(CONSOLE_CONFIG.COLS, size.cols & 0xffff, true);
    this.#cfg.setUint16(CONSOLE_CONFIG.ROWS, size.rows & 0xffff, true);
  }

  /** Drops the queues and the lent buffers; if the device was live, input may need re-routing. Idempotent. */
  reset(): void {
    const wasLive = this.#ctx !== undefined;
    this.#ctx = undefined;
    this.#rx = undefined;
    this.#tx = undefined;
    this.#lent = [];
    this.#iov.clear();
    if (wasLive) this.#signalSpace();
  }

  /** Resets and forgets the space listener; the output fd is the caller's. Idempotent. */
  close(): void {
    this.reset();
    this.#space = undefined;
  }
}
