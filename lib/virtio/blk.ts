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
 * moves, the data goes straight between the file and guest memory, and
 * several requests are in the kernel at once. :*/

import { close, O, open } from "../sys/calls.ts";
import { EPOLL } from "../sys/epoll.ts";
import { errnoName, SysError } from "../sys/errno.ts";
import { IoVecs } from "../sys/iovec.ts";
import { chainIoVecs, writeChain } from "./chain.ts";
import type { Chain, Virtqueue } from "./queue.ts";
import { bit, VIRTIO_ID, type VirtioContext, type VirtioDevice } from "./device.ts";
import { BlockIo, IO_OP } from "./blk_io.ts";
import { type DiskShape, ID_BYTES, parseRequest, SECTOR_SIZE, VIRTIO_BLK_F, VIRTIO_BLK_S } from "./blk_request.ts";

/** Options for {@link BlockDevice.open}. */
export interface BlockOptions {
  /** Offer VIRTIO_BLK_F_RO and refuse writes. */
  readOnly?: boolean;
  /** I/O threads (default 2). */
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

/** What a slot's request must do when its job comes back. */
interface Pending {
  head: number;
  statusAddr: number;
  /** Bytes the job must move (0 for a flush). */
  length: number;
  /** The used length on success. */
  written: number;
  /** The used length on failure (a failed read wrote no known prefix of its buffers). */
  failWritten: number;
  what: string;
}

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
  readonly #fd: number;
  readonly #io: BlockIo;
  readonly #shape: DiskShape;
  readonly #iov = new IoVecs(SEG_MAX);
  readonly #id: Uint8Array;
  readonly #pending: Array<Pending | undefined> = new Array(SLOTS);
  #ctx: VirtioContext | undefined;
  #queue: Virtqueue | undefined;
  #generation = 0;
  #stalled = false;
  #closed = false;

  private constructor(path: string, fd: number, size: number, inode: string, options: BlockOptions) {
    this.path = path;
    this.name = `virtio-blk (${path})`;
    this.readOnly = options.readOnly ?? false;
    this.sectors = Math.floor(size / SECTOR_SIZE);
    this.#fd = fd;
    this.#shape = { sectors: this.sectors, readOnly: this.readOnly, segMax: SEG_MAX };
    const base = (path.split("/").pop() ?? "").replace(/[^A-Za-z0-9._-]/g, "");
    const room = ID_BYTES - inode.length - 1;
    this.serial = (room > 0 && base ? `${base.slice(0, room)}-${inode}` : inode).slice(-ID_BYTES);
    this.#id = new Uint8Array(ID_BYTES);
    new TextEncoder().encodeInto(this.serial, this.#id);
    this.features = bit(VIRTIO_BLK_F.SEG_MAX) | bit(VIRTIO_BLK_F.BLK_SIZE) | bit(VIRTIO_BLK_F.FLUSH) |
      (this.readOnly ? bit(VIRTIO_BLK_F.RO) : 0n);
    this.config = new Uint8Array(CONFIG_BYTES);
    const cfg = new DataView(this.config.buffer);
    cfg.setBigUint64(0, BigInt(this.sectors), true);
    cfg.setUint32(12, SEG_MAX, true);
    cfg.setUint32(20, SECTOR_SIZE, true);
    cfg.setUint16(34, 1, true);
    const threads = options.ioThreads ?? 2;
    if (!Number.isInteger(threads) || threads < 1 || threads > 16) {
      throw new RangeError(`ioThreads ${threads} is not from 1 to 16`);
    }
    this.#io = new BlockIo(fd, { slots: SLOTS, maxIovecs: SEG_MAX, threads, name: this.name });
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

  /** Requests handed to the I/O threads and not yet answered. */
  get inFlight(): number {
    return this.#io.inFlight;
  }

  /** Takes the request queue and serves what is already posted. */
  activate(ctx: VirtioContext, queues: ReadonlyArray<Virtqueue | undefined>): void {
    if (this.#closed) throw new Error(`${this.name} is closed`);
    if (this.#ctx !== undefined) this.reset();
    this.#ctx = ctx;
    this.#queue = queues[0];
    this.#stalled = false;
    ctx.loop.add(this.#io.doneFd, EPOLL.IN, () => this.#complete());
    this.#drain();
  }

  /** The driver posted requests. */
  notify(_queue: number): void {
    this.#drain();
  }

  /*V:340 Serving the queue: pop a chain, decide what it asks, and either
   * answer at once (errors, GET_ID, a flush of a read-only disk) or hand it
   * to an I/O thread. When every slot is taken we simply stop popping; the
   * chains stay in the ring, and the next completion picks up where we
   * stopped. The interrupt is raised once for everything answered in one
   * pass. A guest that breaks a rule from inside this loop gets the device
   * failed, which resets it under us; the generation count tells the loop
   * to stop touching a queue it no longer owns. :*/
  #drain(): void {
    const ctx = this.#ctx;
    const q = this.#queue;
    if (ctx === undefined || q === undefined) return;
    const gen = this.#generation;
    let answered = 0;
    try {
      do {
        for (;;) {
          if (!this.#io.hasFreeSlot()) {
            this.#stalled = true;
            return;
          }
          const chain = q.pop();
          if (chain === undefined) break;
          answered += this.#start(ctx, q, chain);
          if (gen !== this.#generation) return;
        }
      } while (q.enableNotifications(true));
      this.#stalled = false;
    } finally {
      if (answered > 0 && gen === this.#generation) ctx.used(0);
    }
  }

  /** Starts one request; returns 1 if it was answered at once. */
  #start(ctx: VirtioContext, q: Virtqueue, chain: Chain): number {
    const head = chain.head;
    const req = parseRequest(ctx.memory, chain, this.#shape);
    switch (req.kind) {
      case "broken":
        this.#fail(ctx, `${q.name}: ${req.detail} [${req.rule}]`);
        return 0;
      case "status":
        if (req.status !== VIRTIO_BLK_S.OK) ctx.log(`${req.detail} [${req.rule}]`);
        this.#answer(ctx, q, head, req.statusAddr, req.status, req.written);
        return 1;
      case "id":
        writeChain(ctx.memory, chain, this.#id.subarray(0, req.length));
        this.#answer(ctx, q, head, req.statusAddr, VIRTIO_BLK_S.OK, req.written);
        return 1;
      case "flush":
        if (this.readOnly) {
          this.#answer(ctx, q, head, req.statusAddr, VIRTIO_BLK_S.OK, req.written);
          return 1;
        }
        this.#submit(ctx, IO_OP.FLUSH, 0, undefined, {
          head,
          statusAddr: req.statusAddr,
          length: 0,
          written: req.written,
          failWritten: req.written,
          what: "flush",
        });
        return 0;
      case "read":
      case "write": {
        const iov = this.#iov.clear();
        chainIoVecs(ctx.memory, req.segments, iov, req.skip, req.length);
        const what = `${req.kind} of ${req.length} bytes at ${req.offset}`;
        const op = req.kind === "read" ? IO_OP.READ : IO_OP.WRITE;
        this.#submit(ctx, op, req.offset, iov, {
          head,
          statusAddr: req.statusAddr,
          length: req.length,
          written: req.written,
          failWritten: req.kind === "read" ? 0 : req.written,
          what,
        });
        return 0;
      }
    }
  }

  #submit(ctx: VirtioContext, op: number, offset: number, iov: IoVecs | undefined, p: Pending): void {
    const failure = this.#io.failure;
    if (failure !== undefined) {
      this.#fail(ctx, failure);
      return;
    }
    const slot = this.#io.submit(op, offset, p.length, iov);
    this.#pending[slot] = p;
  }

  #answer(ctx: VirtioContext, q: Virtqueue, head: number, statusAddr: number, status: number, written: number): void {
    ctx.memory.writeU8(statusAddr, status);
    q.pushUsed(head, written);
  }

  /** The I/O threads finished something: write status bytes, return chains, one interrupt. */
  #complete(): void {
    const ctx = this.#ctx;
    const q = this.#queue;
    this.#io.clearSignal();
    if (ctx === undefined || q === undefined) return;
    const gen = this.#generation;
    let answered = 0;
    try {
      this.#io.takeDone((slot, result) => {
        const p = this.#pending[slot];
        this.#pending[slot] = undefined;
        if (p === undefined) return;
        const ok = result === p.length;
        if (!ok) {
          const why = result < 0 ? errnoName(-result) : `only ${result} bytes (the file is shorter than at open)`;
          ctx.log(`request ${p.head}: ${p.what} failed: ${why}`);
        }
        this.#answer(
          ctx,
          q,
          p.head,
          p.statusAddr,
          ok ? VIRTIO_BLK_S.OK : VIRTIO_BLK_S.IOERR,
          ok ? p.written : p.failWritten,
        );
        answered++;
      });
    } catch (e) {
      this.#fail(ctx, e instanceof Error ? e.message : String(e));
      return;
    }
    if (answered > 0) ctx.used(0);
    if (this.#stalled && gen === this.#generation) this.#drain();
  }

  #fail(ctx: VirtioContext, reason: string): void {
    const gen = this.#generation;
    ctx.fail(reason);
    if (gen === this.#generation) this.reset();
  }

  /** Cancels queued I/O, waits for running I/O, and forgets the queue. */
  reset(): void {
    this.#generation++;
    this.#io.cancelAll();
    this.#pending.fill(undefined);
    this.#ctx?.loop.remove(this.#io.doneFd);
    this.#ctx = undefined;
    this.#queue = undefined;
    this.#stalled = false;
  }

  /** Stops the I/O threads and closes the file. Safe twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.reset();
    this.#io.close();
    close(this.#fd);
  }
}
