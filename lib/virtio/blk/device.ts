/*V:300 The block device: a file on the host becomes a disk in the guest
 * (/dev/vda for the first --block). Its whole interface is one request
 * queue and a few configuration bytes: the capacity in 512-byte sectors,
 * how many data buffers a request may have (seg_max), and the block size.
 * A request reads or writes whole sectors, flushes, or asks for a serial
 * number, and the device answers each with a one-byte status.
 *
 * The original launcher served this from one I/O thread woken through a
 * pipe, and checked the end of the disk only after writing past it (then
 * truncated the file back). Here every request is checked before any byte
 * moves, the data goes straight between the file and guest memory, the
 * queue is served on a thread of its own (queue_thread.worker.ts) so no request
 * waits for the main thread, and several requests are in the kernel at
 * once. This file is the main thread's side: opening the file, starting,
 * stopping and closing that thread, and passing on what it reports. :*/

import { close, drainEventfd, eventfd, O, open, signalEventfd } from "../../sys/calls.ts";
import { EPOLL } from "../../sys/epoll.ts";
import { SysError } from "../../sys/errno.ts";
import type { Virtqueue } from "../queue.ts";
import { bit, VIRTIO_ID, type VirtioContext, type VirtioDevice } from "../device.ts";
import { ID_BYTES, SECTOR_SIZE, VIRTIO_BLK_F } from "./request.ts";
import { QCTL, type QueueCommand, type QueueReport, type QueueSession } from "./protocol.ts";

/** Options for {@link BlockDevice.open}. */
export interface BlockOptions {
  /** Offer VIRTIO_BLK_F_RO and refuse writes. */
  readOnly?: boolean;
  /**
   * I/O threads besides the queue's own thread. The default is one per core beyond the two that the vCPU
   * and the queue thread keep busy, at most 4: so none on a 2-core host, where the queue thread doing every
   * request itself measured fastest (extra threads only wait for a core), and several requests in the
   * kernel at once where there are cores to run them.
   */
  ioThreads?: number;
}

/** Descriptors in the request queue. */
const QUEUE_SIZE = 256;
/** Data buffers per request: a queue's worth less header and status, as Linux expects. */
const SEG_MAX = QUEUE_SIZE - 2;
/** Requests handed to the I/O threads at once. */
const SLOTS = 64;
/** Size of the configuration space we fill (through num_queues). */
const CONFIG_BYTES = 36;

/** How long reset() waits for the queue thread to let go of the ring and the file. */
const STOP_TIMEOUT_MS = 10_000;

/*V:315 Opening the disk. The file must be a regular file: a directory
 * cannot be read as sectors, and a device node or a pipe would make us
 * something other than a file-backed disk. It is opened read-write (read
 * only with ,ro), and its size is taken once: the capacity is that size in
 * whole sectors, so a tail shorter than a sector is never read or written
 * and the file never grows. The serial number GET_ID returns is made from
 * the file's name and inode, so the same file keeps its serial. Every
 * failure is one line that names the file. :*/

/** virtio-blk backed by a regular file. */
export class BlockDevice implements VirtioDevice {
  /** For messages, e.g. "virtio-blk (disk.img)". */
  readonly name: string;
  /** VIRTIO_ID_BLOCK. */
  readonly deviceId: number = VIRTIO_ID.BLOCK;
  /** SEG_MAX, BLK_SIZE, FLUSH, and RO for a read-only disk. */
  readonly features: bigint;
  /** One request queue. */
  readonly queueSizes: readonly number[] = [QUEUE_SIZE];
  /** struct virtio_blk_config. */
  readonly config: Uint8Array;
  /** The file. */
  readonly path: string;
  /** Capacity in 512-byte sectors. */
  readonly sectors: number;
  /** True when opened with ,ro. */
  readonly readOnly: boolean;
  /** The GET_ID answer (ASCII, at most 20 bytes). */
  readonly serial: string;
  /** I/O threads besides the queue thread (see {@link BlockOptions.ioThreads}). */
  readonly ioThreads: number;
  readonly #fd: number;
  readonly #ctl: Int32Array<SharedArrayBuffer>;
  readonly #worker: Worker;
  /** Wakes the queue thread to stop a session. */
  readonly #stopFd: number;
  /** Doorbell and interrupt eventfds of our own, for a transport that does not hand over its own. */
  readonly #ownDoorbell: number;
  readonly #ownIrq: number;
  #ctx: VirtioContext | undefined;
  #doorbell: number | undefined;
  #watchingIrq = false;
  #session = 0;
  #received = 0;
  #failure: string | undefined;
  #closed = false;

  private constructor(path: string, fd: number, size: number, inode: string, options: BlockOptions) {
    this.path = path;
    this.name = `virtio-blk (${path})`;
    this.readOnly = options.readOnly ?? false;
    this.sectors = Math.floor(size / SECTOR_SIZE);
    this.#fd = fd;
    const base = (path.split("/").pop() ?? "").replace(/[^A-Za-z0-9._-]/g, "");
    const room = ID_BYTES - inode.length - 1;
    this.serial = (room > 0 && base ? `${base.slice(0, room)}-${inode}` : inode).slice(-ID_BYTES);
    this.features = bit(VIRTIO_BLK_F.SEG_MAX) | bit(VIRTIO_BLK_F.BLK_SIZE) | bit(VIRTIO_BLK_F.FLUSH) |
      (this.readOnly ? bit(VIRTIO_BLK_F.RO) : 0n);
    this.config = new Uint8Array(CONFIG_BYTES);
    const cfg = new DataView(this.config.buffer);
    cfg.setBigUint64(0, BigInt(this.sectors), true);
    cfg.setUint32(12, SEG_MAX, true);
    cfg.setUint32(20, SECTOR_SIZE, true);
    cfg.setUint16(34, 1, true);
    const threads = options.ioThreads ?? defaultIoThreads();
    if (!Number.isInteger(threads) || threads < 0 || threads > 16) {
      throw new RangeError(`ioThreads ${threads} is not from 0 to 16`);
    }
    this.ioThreads = threads;
    const id = new Uint8Array(ID_BYTES);
    new TextEncoder().encodeInto(this.serial, id);
    this.#ctl = new Int32Array(new SharedArrayBuffer(4 * QCTL.WORDS));
    this.#stopFd = eventfd();
    this.#ownDoorbell = eventfd();
    this.#ownIrq = eventfd();
    this.#worker = new Worker(new URL("./queue_thread.worker.ts", import.meta.url).href, {
      type: "module",
      name: `${this.name} queue thread`,
    });
    this.#worker.onerror = (ev) => {
      ev.preventDefault();
      this.#failure ??= `${this.name}: the queue thread failed: ${ev.message}`;
      if (this.#ctx !== undefined) this.#fail(this.#ctx, this.#failure);
    };
    this.#worker.onmessage = (ev: MessageEvent<QueueReport>) => this.#report(ev.data);
    this.#send({
      kind: "init",
      ctl: this.#ctl.buffer,
      fd,
      stopFd: this.#stopFd,
      name: this.name,
      sectors: this.sectors,
      readOnly: this.readOnly,
      segMax: SEG_MAX,
      id,
      threads,
      slots: SLOTS,
    });
  }

  #send(m: QueueCommand): void {
    this.#worker.postMessage(m);
  }

  /**
   * Opens `path` as a disk.
   * @param path a regular file
   * @param options read-only, I/O thread count
   * @returns the device, its I/O threads started
   * @throws Error with one line naming the file if it cannot be used
   */
  static open(path: string, options: BlockOptions = {}): BlockDevice {
    const what = `block device file '${path}'`;
    const kind = (info: Deno.FileInfo) =>
      info.isDirectory
        ? "a directory"
        : info.isCharDevice
        ? "a character device"
        : info.isBlockDevice
        ? "a block device"
        : info.isFifo
        ? "a pipe"
        : info.isSocket
        ? "a socket"
        : "not a regular file";
    let info: Deno.FileInfo;
    try {
      info = Deno.statSync(path);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) throw new Error(`${what} does not exist`);
      throw new Error(`${what}: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (!info.isFile) throw new Error(`${what} is ${kind(info)}, not a regular file`);
    const readOnly = options.readOnly ?? false;
    let fd: number;
    try {
      fd = open(path, (readOnly ? O.RDONLY : O.RDWR) | O.NOCTTY);
    } catch (e) {
      const code = e instanceof SysError ? e.code : String(e);
      const hint = readOnly ? "" : " (add ,ro for a read-only disk)";
      throw new Error(`${what} cannot be opened for ${readOnly ? "reading" : "reading and writing"}: ${code}${hint}`);
    }
    try {
      const st = Deno.statSync(`/proc/self/fd/${fd}`);
      if (!st.isFile) throw new Error(`${what} is ${kind(st)}, not a regular file`);
      const inode = (st.ino ?? 0).toString(16);
      return new BlockDevice(path, fd, st.size, inode, options);
    } catch (e) {
      close(fd);
      throw e;
    }
  }

  /** Requests the queue thread has popped and not yet answered. */
  get inFlight(): number {
    return Atomics.load(this.#ctl, QCTL.INFLIGHT);
  }

  /** The most requests that were with the I/O threads at once, since open. */
  get peakInFlight(): number {
    return Atomics.load(this.#ctl, QCTL.PEAK);
  }

  /** I/O threads that have started (the queue thread does every request itself until one has). */
  get ioThreadsRunning(): number {
    return Atomics.load(this.#ctl, QCTL.IO_UP);
  }

  /**
   * True once the queue thread has set up, so that an activation is taken up at once (before, it waits for
   * the thread to start; the I/O threads come later still, see {@link ioThreadsRunning}).
   */
  get started(): boolean {
    return Atomics.load(this.#ctl, QCTL.UP) === 1;
  }

  /** True until everything notify() asked for is answered and everything the queue thread said is passed on. */
  get busy(): boolean {
    const c = this.#ctl;
    return Atomics.load(c, QCTL.KICKS) !== Atomics.load(c, QCTL.DONE) || Atomics.load(c, QCTL.INFLIGHT) > 0 ||
      Atomics.load(c, QCTL.POSTED) !== this.#received;
  }

  /*V:340 Activation hands the queue to the queue thread: the ring
   * addresses and where its indices stand (a Virtqueue is plain state, so
   * that thread rebuilds one over its own view of guest memory), the
   * doorbell and the interrupt. From then on the main thread does not touch
   * the ring. If the transport hands over its doorbell and irqfd, the guest
   * reaches the queue thread with no stop on the main thread at all;
   * otherwise the device uses eventfds of its own and turns the queue
   * thread's interrupts into ctx.used(0). :*/

  /** Hands the request queue to the queue thread, which first serves what is already posted. */
  activate(ctx: VirtioContext, queues: ReadonlyArray<Virtqueue | undefined>): void {
    if (this.#closed) throw new Error(`${this.name} is closed`);
    if (this.#failure !== undefined) throw new Error(this.#failure);
    if (this.#ctx !== undefined) this.reset();
    this.#ctx = ctx;
    const q = queues[0];
    if (q === undefined) return;
    const wiring = ctx.takeQueue?.(0);
    let session: QueueSession["isr"];
    if (wiring === undefined) {
      drainEventfd(this.#ownDoorbell);
      drainEventfd(this.#ownIrq);
      ctx.loop.add(this.#ownIrq, EPOLL.IN, () => {
        drainEventfd(this.#ownIrq);
        this.#ctx?.used(0);
      });
      this.#watchingIrq = true;
    } else session = { image: wiring.image, word: wiring.isrWord, bit: wiring.usedBit };
    this.#doorbell = wiring?.doorbell ?? this.#ownDoorbell;
    this.#session++;
    Atomics.add(this.#ctl, QCTL.KICKS, 1);
    Atomics.store(this.#ctl, QCTL.REQ, this.#session);
    const start: QueueSession = {
      kind: "start",
      session: this.#session,
      hostAddress: ctx.memory.hostAddress,
      memSize: ctx.memory.size,
      queueName: q.name,
      layout: { ...q.layout },
      features: { ...q.features },
      start: { lastAvailIdx: q.lastAvailIdx, usedIdx: q.usedIdx },
      doorbell: this.#doorbell,
      irqfd: wiring?.irqfd ?? this.#ownIrq,
    };
    if (session !== undefined) start.isr = session;
    this.#send(start);
  }

  /** The driver posted requests: ring the queue thread's doorbell. */
  notify(_queue: number): void {
    if (this.#doorbell === undefined) return;
    Atomics.add(this.#ctl, QCTL.KICKS, 1);
    signalEventfd(this.#doorbell);
  }

  /** A line or a failure from the queue thread; stale sessions are ignored. */
  #report(r: QueueReport): void {
    this.#received++;
    const ctx = this.#ctx;
    if (ctx === undefined || r.session !== this.#session) return;
    if (r.kind === "log") ctx.log(r.text);
    else this.#fail(ctx, r.text);
  }

  #fail(ctx: VirtioContext, reason: string): void {
    const session = this.#session;
    ctx.fail(reason);
    if (session === this.#session && this.#ctx !== undefined) this.reset();
  }

  /*V:346 Reset really stops. The main thread withdraws the session, wakes
   * the queue thread and waits (Atomics.wait) until it says it has let go:
   * by then it has taken back the I/O it had not started, waited for what
   * was running (a pwritev cannot be stopped halfway), and will not touch
   * the old ring, guest memory or the file for it again. A thread that does
   * not let go in time is an error with a message, not a hang. :*/

  /** Stops the queue thread's session and forgets the queue. */
  reset(): void {
    const ctl = this.#ctl;
    const session = this.#session;
    Atomics.store(ctl, QCTL.REQ, 0);
    if (session !== 0 && Atomics.load(ctl, QCTL.ACK) === session && this.#failure === undefined) {
      signalEventfd(this.#stopFd);
      const deadline = Date.now() + STOP_TIMEOUT_MS;
      while (Atomics.load(ctl, QCTL.ACK) === session) {
        const left = deadline - Date.now();
        if (left <= 0) {
          this.#failure = `${this.name}: the queue thread did not stop within ${STOP_TIMEOUT_MS / 1000} s`;
          throw new Error(this.#failure);
        }
        Atomics.wait(ctl, QCTL.ACK, session, left);
      }
      drainEventfd(this.#stopFd);
    }
    Atomics.store(ctl, QCTL.DONE, Atomics.load(ctl, QCTL.KICKS));
    if (this.#watchingIrq) this.#ctx?.loop.remove(this.#ownIrq);
    this.#watchingIrq = false;
    this.#ctx = undefined;
    this.#doorbell = undefined;
  }

  /** Stops the queue thread and its I/O threads, and closes the file. Safe twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.reset();
    } finally {
      if (this.#failure === undefined) {
        this.#send({ kind: "close" });
        Atomics.wait(this.#ctl, QCTL.CLOSED, 0, STOP_TIMEOUT_MS);
      }
      this.#worker.terminate();
      for (const fd of [this.#stopFd, this.#ownDoorbell, this.#ownIrq, this.#fd]) close(fd);
    }
  }
}

/** One I/O thread per core beyond the vCPU's and the queue thread's, at most 4. */
export function defaultIoThreads(): number {
  return Math.max(0, Math.min(4, (navigator.hardwareConcurrency ?? 2) - 2));
}
