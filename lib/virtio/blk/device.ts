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

/*V:302 One read, followed from the guest's doorbell to its interrupt; the
 * chapters after this one take each step in turn.
 *
 * 1. The guest's driver fills three descriptors (the 16-byte header, the
 *    data buffer, the status byte), publishes the head in the available
 *    ring and writes the queue's number to QueueNotify. KVM matches that
 *    write against the ioeventfd registered for the queue (V:240) and
 *    signals the doorbell eventfd; the vCPU goes straight back into the
 *    guest, and nothing in the launcher has run yet.
 * 2. The disk's queue thread sleeps in poll(2) on that doorbell (V:344),
 *    wakes, and takes a turn (V:345). It enters the ring window (V:346),
 *    drains the doorbell, and drainQueue (V:150) pops the chain, which
 *    Virtqueue.pop checks whole before anything moves (V:120, V:125).
 * 3. parseRequest (V:305, V:310, V:349) reads the header and checks the
 *    sector range against the capacity and each buffer's direction, and
 *    the data buffer becomes an iovec of host addresses, every one taken
 *    through GuestMemory's bounds check (V:342).
 * 4. The thread leaves the window and preadv reads from the file straight
 *    into guest memory (V:342); with I/O threads, one of them does it while
 *    this thread serves the next chain (V:320, V:335).
 * 5. Back in the window: the status byte is written, the chain goes on the
 *    used ring (V:130), and if the driver asked for it (V:140) the thread
 *    raises the interrupt (V:012): the cause bit in the register image,
 *    then the irqfd, and KVM injects the IRQ. The guest's handler reads and
 *    acknowledges InterruptStatus from that image on the vCPU thread
 *    (V:191), with no stop on the main thread either.
 * 6. Before it sleeps again, the thread watches the ring a little while
 *    (V:347), so a driver that posts its next request at once costs no
 *    doorbell at all.
 *
 * The main thread is in none of these steps: it only starts and stops
 * sessions (V:340, V:346). :*/

import { close, O, open } from "../../sys/calls.ts";
import { SysError } from "../../sys/errno.ts";
import { bit, type DeviceContext, type QueueSession, VIRTIO_ID, type VirtioDevice } from "../device.ts";
import { ID_BYTES, SECTOR_SIZE, VIRTIO_BLK_F } from "./request.ts";
import { QCTL, type QueueCommand } from "./protocol.ts";
import { QueueThread } from "../thread/host.ts";

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
  readonly #thread: QueueThread<QueueCommand>;
  #ctx: DeviceContext | undefined;
  /** The queue being served, if any. */
  #queue: QueueSession | undefined;
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
    this.#thread = new QueueThread(
      new URL("./queue_thread.worker.ts", import.meta.url),
      `${this.name} queue thread`,
      QCTL.WORDS,
      { context: () => this.#ctx, reset: () => this.reset() },
    );
    this.#ctl = this.#thread.ctl;
    this.#thread.post({
      kind: "init",
      ctl: this.#ctl.buffer,
      fd,
      stopFd: this.#thread.stopFd,
      name: this.name,
      sectors: this.sectors,
      readOnly: this.readOnly,
      segMax: SEG_MAX,
      id,
      threads,
      slots: SLOTS,
    });
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

  /** Requests popped and not yet answered: with the I/O threads, plus the one the queue thread is doing itself. */
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
    return this.#thread.up;
  }

  /**
   * True until the queue thread has answered everything posted in the ring it serves (it sleeps with the
   * avail index it consumed equal to the driver's), has no I/O left, and every message it sent has arrived.
   * Reads the ring's avail index: for tests and benches, not for the data path.
   */
  get busy(): boolean {
    const c = this.#ctl;
    if (Atomics.load(c, QCTL.INFLIGHT) > 0 || this.#thread.busy) return true;
    const q = this.#queue;
    const ctx = this.#ctx;
    return q !== undefined && ctx !== undefined &&
      Atomics.load(c, QCTL.SEEN) !== ctx.memory.readU16(Number(q.layout.avail) + 2);
  }

  /*V:340 Activation hands the request queue's session to the queue thread
   * as it is: plain data (where the rings are, where their indices stand,
   * the doorbell eventfd, the interrupt line), plus where guest memory is
   * mapped, so that thread builds its own Virtqueue over its own view of
   * it. From then on the main thread does not touch the ring: the guest's
   * QueueNotify reaches the queue thread through the doorbell (KVM's
   * ioeventfd) and the answer comes back through the irqfd, with no stop
   * on the main thread at all. :*/

  /** Hands the request queue to the queue thread, which first serves what is already posted. */
  activate(ctx: DeviceContext, queues: ReadonlyArray<QueueSession | undefined>): void {
    if (this.#closed) throw new Error(`${this.name} is closed`);
    const failure = this.#thread.failure;
    if (failure !== undefined) throw new Error(failure);
    this.reset();
    this.#ctx = ctx;
    const queue = queues[0];
    if (queue === undefined) return;
    this.#queue = queue;
    const session = this.#thread.begin();
    this.#thread.post({
      kind: "start",
      session,
      hostAddress: ctx.memory.hostAddress,
      memSize: ctx.memory.size,
      queue,
    });
  }

  /** Withdraws the queue thread's session and forgets the queue, without waiting for its I/O (V:346). */
  reset(): void {
    this.#ctx = undefined;
    this.#queue = undefined;
    this.#thread.withdraw();
  }

  /*V:341 Closing is off the vCPU's path, so it may wait, but never for
   * ever (V:337): the queue thread is told to close once its session has
   * ended (its I/O finished), stops its I/O threads and says so; a thread
   * that has not within the bound is terminated all the same. Only then is
   * the file closed. :*/

  /** Stops the queue thread and its I/O threads, and closes the file. Safe twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#thread.shutDown({ kind: "close" }, () => close(this.#fd));
  }
}

/** One I/O thread per core beyond the vCPU's and the queue thread's, at most 4. */
export function defaultIoThreads(): number {
  return Math.max(0, Math.min(4, (navigator.hardwareConcurrency ?? 2) - 2));
}
