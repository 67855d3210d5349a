/*T:500 A bench for the block device without KVM: real guest memory, a real
 * disk file in a temporary directory, the device's real queue thread and
 * I/O threads, a real EventLoop, and TestDriver playing the guest's driver.
 * The only stand-in is the transport: the bench builds the queue sessions
 * MmioTransport would (a real doorbell eventfd, and for each activation an
 * interrupt line of its own: a real eventfd in place of the irqfd and a
 * shared status word) and a DeviceContext whose fail resets the device, as
 * the transport does, recording what the device tells it.
 *
 * Interrupts are what the eventfd says: the loop reads the current line's
 * eventfd, and each wake-up counts as an interrupt, with the used-buffer
 * bit required in the status word before it. A reset stops watching the
 * line and drains it, so a test can check afterwards that the old line was
 * never signalled again.
 *
 * Every wait is for a condition, bounded, and says what it was waiting
 * for. Starting the device's threads is one wait (ready), answering a
 * batch another (settle): on a slow host a thread takes seconds to start,
 * and that must not be charged to the first batch. :*/

import { GuestMemory } from "../../../lib/memory.ts";
import { close, drainEventfd, eventfd, POLL, pollOne, signalEventfd } from "../../../lib/sys/calls.ts";
import { EPOLL } from "../../../lib/sys/epoll.ts";
import { EventLoop } from "../../../lib/eventloop.ts";
import { BlockDevice, type BlockOptions } from "../../../lib/virtio/blk/device.ts";
import {
  type DeviceContext,
  INTERRUPT_CAUSE,
  type InterruptLine,
  type QueueSession,
} from "../../../lib/virtio/device.ts";
import { TestDriver, type TestDriverOptions } from "../driver.ts";

/** The disk's initial byte at `offset`: different in every sector and byte. */
export function diskPattern(offset: number): number {
  return (offset * 7 + Math.floor(offset / 512) * 13 + 0x5a) & 0xff;
}

/** Options for {@link BlkBench.create}. */
export interface BlkBenchOptions extends BlockOptions {
  /** Disk size in bytes (default 64 sectors). */
  diskBytes?: number;
  /** Guest RAM (default 1 MiB). */
  ramBytes?: number;
  /** The irqfd handed over instead of the bench's own (e.g. one that cannot be written). */
  irqfd?: number;
}

/** The request header bytes: type, reserved, sector. */
export function header(type: number, sector: number | bigint, reserved = 0): Uint8Array {
  const h = new Uint8Array(16);
  const v = new DataView(h.buffer);
  v.setUint32(0, type, true);
  v.setUint32(4, reserved, true);
  v.setBigUint64(8, BigInt.asUintN(64, BigInt(sector)), true);
  return h;
}

/** Cuts `bytes` into at most `pieces` consecutive parts (none if it is empty). */
export function cut(bytes: Uint8Array, pieces: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  const step = Math.max(1, Math.ceil(bytes.length / pieces));
  for (let at = 0; at < bytes.length; at += step) out.push(bytes.subarray(at, at + step));
  return out;
}

/** How long {@link BlkBench.ready} waits for the device's threads to start. */
const READY_MS = 120_000;
/** How long {@link BlkBench.settle} waits for one batch to be answered. */
const SETTLE_MS = 20_000;

/** One activation's interrupt line and what the bench saw of it. */
export interface BenchLine {
  /** As handed to the device. */
  readonly line: InterruptLine;
  /** Interrupts seen: wake-ups of the eventfd. */
  count: number;
  /** Interrupts raised without the used-buffer bit in the status word. */
  missing: number;
}

/** A device on a temporary disk, its guest memory, loop and stand-in transport. */
export class BlkBench {
  /** Guest RAM. */
  readonly mem: GuestMemory;
  /** The loop the device's reports and interrupts arrive on (running). */
  readonly loop: EventLoop;
  /** The device under test. */
  readonly dev: BlockDevice;
  /** The disk file. */
  readonly path: string;
  /** The disk's bytes as created. */
  readonly initial: Uint8Array;
  /** Reasons passed to ctx.fail, in order. */
  readonly failures: string[] = [];
  /** Lines passed to ctx.log. */
  readonly logs: string[] = [];
  /** The queue's doorbell eventfd. */
  readonly doorbell: number;
  /** The driver of the current activation. */
  driver: TestDriver | undefined;
  /** The interrupt line of the current (or last) activation. */
  irq: BenchLine | undefined;
  readonly #running: Promise<void>;
  readonly #dir: string;
  readonly #irqfdOverride: number | undefined;
  readonly #lines: BenchLine[] = [];
  #watched: BenchLine | undefined;

  private constructor(
    dir: string,
    path: string,
    initial: Uint8Array,
    dev: BlockDevice,
    ramBytes: number,
    irqfdOverride: number | undefined,
  ) {
    this.#irqfdOverride = irqfdOverride;
    this.#dir = dir;
    this.path = path;
    this.initial = initial;
    this.dev = dev;
    this.mem = GuestMemory.create(ramBytes);
    this.loop = new EventLoop();
    this.#running = this.loop.run();
    this.doorbell = eventfd();
  }

  /**
   * Makes a disk file filled with {@link diskPattern} and opens it.
   * @param options disk size, RAM size, device options
   */
  static create(options: BlkBenchOptions = {}): BlkBench {
    const dir = Deno.makeTempDirSync({ prefix: "lguest-blk-" });
    const path = `${dir}/disk.img`;
    const initial = new Uint8Array(options.diskBytes ?? 64 * 512);
    for (let i = 0; i < initial.length; i++) initial[i] = diskPattern(i);
    Deno.writeFileSync(path, initial);
    const dev = BlockDevice.open(path, options);
    return new BlkBench(dir, path, initial, dev, options.ramBytes ?? 1024 * 1024, options.irqfd);
  }

  /** Interrupts seen on the current line. */
  get interrupts(): number {
    return this.irq?.count ?? 0;
  }

  /** Interrupts on any line raised without the used-buffer bit set first. */
  get isrMissing(): number {
    return this.#lines.reduce((n, l) => n + l.missing, 0);
  }

  /** The transport's side of the device, as MmioTransport would give it. */
  context(): DeviceContext {
    return {
      memory: this.mem,
      loop: this.loop,
      features: 0n,
      fail: (reason) => {
        this.failures.push(reason);
        this.dev.reset();
      },
      configChanged: () => {},
      log: (line) => this.logs.push(line),
    };
  }

  /**
   * Lays out a fresh queue and activates the device on it (resetting it first, as a driver would).
   * @param options TestDriver placement and size (default: base 0x1000, 64 entries)
   */
  activate(options: Partial<TestDriverOptions> = {}): TestDriver {
    const d = this.prepare(options);
    this.start();
    return d;
  }

  /**
   * Resets the device and lays out a fresh queue without activating it, so that a test can post a whole
   * batch before the device (on its own thread) can see any of it; then {@link start}.
   */
  prepare(options: Partial<TestDriverOptions> = {}): TestDriver {
    this.reset();
    const d = new TestDriver(this.mem, { base: 0x1000, size: 64, ...options });
    this.driver = d;
    return d;
  }

  /** Resets the device, then stops watching the interrupt line and takes what is pending on it. */
  reset(): void {
    this.dev.reset();
    const w = this.#watched;
    if (w === undefined) return;
    this.#watched = undefined;
    this.loop.remove(w.line.irqfd);
    this.#take(w);
  }

  #take(l: BenchLine): void {
    if (pollOne(l.line.irqfd, POLL.IN, 0) === 0) return;
    drainEventfd(l.line.irqfd);
    const status = new Int32Array(l.line.status);
    if ((Atomics.and(status, l.line.word, ~INTERRUPT_CAUSE.USED) & INTERRUPT_CAUSE.USED) === 0) l.missing++;
    l.count++;
  }

  /** The session MmioTransport would build for the prepared queue, on a new interrupt line. */
  session(): QueueSession {
    const d = this.driver!;
    const irqfd = this.#irqfdOverride ?? eventfd();
    const l: BenchLine = { line: { irqfd, status: new SharedArrayBuffer(8), word: 1 }, count: 0, missing: 0 };
    this.#lines.push(l);
    this.irq = l;
    if (this.#irqfdOverride === undefined) {
      this.#watched = l;
      this.loop.add(irqfd, EPOLL.IN, () => this.#take(l));
    }
    return {
      index: 0,
      name: "virtio-blk queue 0",
      layout: d.layout,
      features: { eventIdx: d.eventIdx, indirect: true },
      start: d.start,
      doorbell: this.doorbell,
      interrupt: l.line,
    };
  }

  /** Activates the device on the prepared queue; it serves what is already posted. */
  start(): void {
    this.dev.activate(this.context(), [this.session()]);
  }

  /** Rings the doorbell, as KVM's ioeventfd does on a QueueNotify write. */
  notify(): void {
    signalEventfd(this.doorbell, "doorbell");
  }

  /**
   * Waits until the device's queue thread has started and, unless told otherwise, every I/O thread too
   * (failing after 120 s). Requests do not need the I/O threads (the queue thread does them itself until one
   * runs), so only a test about those threads needs to wait for them.
   */
  async ready(options: { ioThreads?: boolean } = {}): Promise<void> {
    const dev = this.dev;
    const up = () => dev.started && (options.ioThreads === false || dev.ioThreadsRunning === dev.ioThreads);
    const deadline = Date.now() + READY_MS;
    while (!up()) {
      if (Date.now() > deadline) {
        throw new Error(
          `${dev.name}: its threads did not start within ${READY_MS / 1000} s (queue thread ` +
            `${dev.started ? "up" : "not up"}, ${dev.ioThreadsRunning} of ${dev.ioThreads} I/O threads up)`,
        );
      }
      await new Promise<void>((resolve) => setTimeout(resolve, 5));
    }
  }

  /**
   * Waits until the device has answered everything it was notified of (or failed) and every report and
   * interrupt has reached this thread (a hang fails the test after 20 s).
   */
  async settle(): Promise<void> {
    const deadline = Date.now() + SETTLE_MS;
    while (this.dev.busy) {
      if (Date.now() > deadline) {
        const dev = this.dev;
        throw new Error(
          `device still busy after ${SETTLE_MS / 1000} s: ${dev.inFlight} requests in flight (queue thread ` +
            `${dev.started ? "up" : "not up"}, ${dev.ioThreadsRunning} of ${dev.ioThreads} I/O threads up)`,
        );
      }
      await new Promise<void>((resolve) => setTimeout(resolve, 1));
    }
    while (this.#watched !== undefined && pollOne(this.#watched.line.irqfd, POLL.IN, 0) !== 0) {
      if (Date.now() > deadline) throw new Error("the interrupt eventfd was never read");
      await new Promise<void>((resolve) => setTimeout(resolve, 1));
    }
  }

  /** The disk file's bytes now. */
  file(): Uint8Array {
    return Deno.readFileSync(this.path);
  }

  /** Closes the device, stops the loop, frees the memory and removes the file. */
  async close(): Promise<void> {
    this.reset();
    this.dev.close();
    for (const l of this.#lines) if (l.line.irqfd !== this.#irqfdOverride) close(l.line.irqfd);
    close(this.doorbell);
    this.loop.stop();
    await this.#running;
    this.loop.close();
    this.mem.close();
    Deno.removeSync(this.#dir, { recursive: true });
  }
}

/** How {@link post} lays out a request. */
export interface Post {
  /** Data after the header (a write's payload). */
  out?: Uint8Array;
  /** Writable data bytes before the status byte (a read's buffer). */
  inLen?: number;
  /** Size of the last writable buffer (default 1: just the status). */
  statusLen?: number;
  /** Cut the header and the data into this many buffers each. */
  pieces?: number;
  /** Use an indirect table. */
  indirect?: boolean;
}

/** Posts a request: header and `out` readable, then `inLen` writable bytes and the status byte. */
export function post(d: TestDriver, h: Uint8Array, p: Post = {}): number {
  const pieces = p.pieces ?? 1;
  const readable = [...cut(h, pieces), ...cut(p.out ?? new Uint8Array(0), pieces)];
  const inLen = p.inLen ?? 0;
  const writable = inLen > 0 ? cut(new Uint8Array(inLen), pieces).map((b) => b.length) : [];
  if ((p.statusLen ?? 1) > 0) writable.push(p.statusLen ?? 1);
  return d.add(readable, writable, { indirect: p.indirect ?? false });
}

/** The status byte the device wrote for `head`. */
export function status(b: BlkBench, head: number): number {
  const w = b.driver!.posted(head)!.writable;
  const last = w[w.length - 1]!;
  return b.mem.readU8(last.addr + last.len - 1);
}

/** The read data of `head`: its writable bytes less the status byte. */
export function readData(b: BlkBench, head: number): Uint8Array {
  const chain = b.driver!.posted(head)!;
  const out = new Uint8Array(chain.writable.reduce((n, s) => n + s.len, 0) - 1);
  let at = 0;
  for (const s of chain.writable) {
    const n = Math.min(s.len, out.length - at);
    if (n > 0) out.set(b.mem.slice(s.addr, n), at);
    at += n;
  }
  return out;
}

/** Runs `body` on a fresh bench once its queue thread has started, closing it afterwards. */
export async function bench(
  body: (b: BlkBench) => Promise<void>,
  options: Parameters<typeof BlkBench.create>[0] = {},
): Promise<void> {
  const b = BlkBench.create(options);
  try {
    await b.ready({ ioThreads: false });
    await body(b);
  } finally {
    await b.close();
  }
}

/** Deterministic test data. */
export function pattern(len: number, seed: number): Uint8Array {
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++) out[i] = (i * 11 + seed * 37 + 1) & 0xff;
  return out;
}
