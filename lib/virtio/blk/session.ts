/*V:345 One session on the queue thread: one activation of the request
 * queue, from the start message to a reset, a failure or close. Each turn
 * drains the ring through drainQueue (V:150), the helper every device
 * uses, with a budget per pass; a chain is checked by parseRequest over the
 * thread's own view of guest memory, then answered at once (GET_ID, a
 * refused request), done here, or handed to the I/O threads.
 *
 * Which of the last two: with I/O threads running, a transfer goes to them
 * while more chains wait behind it, and the last one of a pass is done
 * here, so a lone request never waits for a hand-off while a batch still
 * has several in the kernel at once. A transfer that finds every slot taken
 * is declined (drainQueue puts it back) and the turn ends; a completion
 * wakes the thread to go on. Until an I/O thread has started (io_threads.ts)
 * every transfer is done here.
 *
 * Every touch of the ring, the status bytes, the used ring and the irqfd
 * happens inside the ring window (V:346); the preadv, pwritev and
 * fdatasync this thread makes itself happen outside it, so a reset never
 * waits for the disk. :*/

import { GuestMemory } from "../../memory.ts";
import { IoVecs } from "../../sys/iovec.ts";
import { drainEventfd } from "../../sys/calls.ts";
import { errnoName } from "../../sys/errno.ts";
import { type Chain, Virtqueue } from "../queue.ts";
import { chainIoVecs, writeChain } from "../chain.ts";
import { raiseInterrupt } from "../device.ts";
import { DEFAULT_BUDGET, drainQueue } from "../drain.ts";
import { type BlockIo, IO_OP } from "./io_threads.ts";
import { type DiskShape, parseRequest, VIRTIO_BLK_S } from "./request.ts";
import { flush, pointerTo, transfer } from "./transfer.ts";
import { QCTL, type QueueInit, type SessionStart } from "./protocol.ts";
import { RingWindow, THREAD_CTL, type ThreadReport } from "../thread/window.ts";

/** What the queue thread lends each session. */
export interface DiskThread {
  /** The control words shared with the main thread. */
  readonly ctl: Int32Array<SharedArrayBuffer>;
  /** The disk, as the main thread described it. */
  readonly init: QueueInit;
  /** What parseRequest checks against. */
  readonly shape: DiskShape;
  /** The I/O threads, if any. */
  readonly io: BlockIo | undefined;
  /** Posts a line or a failure to the main thread. */
  post(kind: ThreadReport["kind"], text: string): void;
}

/** What a request must do when its I/O is done. */
interface Pending {
  head: number;
  statusAddr: number;
  /** Bytes the I/O must move (0 for a flush). */
  length: number;
  /** The used length on success. */
  written: number;
  /** The used length on failure (a failed read wrote no known prefix of its buffers). */
  failWritten: number;
  op: number;
  offset: number;
}

/** How long to watch the ring before sleeping, in milliseconds. */
const SPIN_MS = 0.05;

/** One activation of the request queue, served on the queue thread. */
export class Session {
  /** The doorbell to poll while this session sleeps. */
  readonly doorbell: number;
  /** Set when poll saw the doorbell ring: it is drained inside the next window. */
  rang = true;
  readonly #disk: DiskThread;
  readonly #ctl: Int32Array<SharedArrayBuffer>;
  readonly #start: SessionStart;
  readonly #mem: GuestMemory;
  readonly #vq: Virtqueue;
  readonly #iov: IoVecs;
  readonly #iovPtr: Deno.PointerObject;
  readonly #pending: Array<Pending | undefined>;
  readonly #window: RingWindow;
  /** Requests answered in the current turn. */
  #answered = 0;

  /** Builds the ring's view over guest memory (reading nothing yet). */
  constructor(disk: DiskThread, start: SessionStart) {
    this.#disk = disk;
    this.#ctl = disk.ctl;
    this.#start = start;
    const s = start.queue;
    this.doorbell = s.doorbell;
    this.#mem = GuestMemory.attach(BigInt(start.hostAddress), start.memSize);
    this.#vq = new Virtqueue(this.#mem, s.layout, s.features, s.name, s.start);
    this.#iov = new IoVecs(disk.init.segMax);
    this.#iovPtr = pointerTo(this.#iov.raw);
    this.#pending = new Array(disk.init.slots);
    this.#window = new RingWindow(disk.ctl, start.session);
  }

  /*V:346 Reset never waits for the disk. The main thread withdraws the
   * session (REQ = 0, or the next session's number) and returns. The one
   * thing it waits for is the ring window: this thread stores RING_BUSY,
   * then reads REQ, and touches the ring only if its session is still the
   * one asked for; the main thread stores REQ, then reads RING_BUSY, and
   * spins while it is set. Sequentially consistent atomics let at least one
   * side see the other's store: either this thread sees the withdrawal and
   * touches nothing, or the main thread sees the window open and waits the
   * few microseconds it lasts. So once reset() returns, the old rings,
   * status bytes and interrupt are never touched again.
   *
   * The data I/O is not in the window. A preadv already in the kernel goes
   * on into the guest's buffers after the reset, as a real controller's DMA
   * would, and so may a job an I/O thread claims before this thread sees
   * the withdrawal; their results are dropped (no used entry, no
   * interrupt). The session ends only once its I/O has finished (end()),
   * and the thread takes its next message (a new activation) only then, so
   * two sessions never share an I/O slot. (The window itself is
   * thread/window.ts's RingWindow, shared with the network card.) :*/

  /**
   * One turn: collects completions, drains the ring, raises the interrupt if the driver wants one.
   * @returns true to take another turn at once, false to sleep until the doorbell, a completion or a stop
   * @throws Withdrawn if the session was withdrawn; Error if the guest broke a rule or the irqfd failed
   */
  turn(): boolean {
    const ctl = this.#ctl;
    const vq = this.#vq;
    this.#window.enter();
    try {
      if (this.rang) drainEventfd(this.doorbell);
      this.rang = false;
      this.#answered = 0;
      this.#collect();
      const { end } = drainQueue(vq, DEFAULT_BUDGET, (chain) => this.#serve(chain));
      const io = this.#disk.io;
      const inFlight = io?.inFlight ?? 0;
      if (inFlight > Atomics.load(ctl, QCTL.PEAK)) Atomics.store(ctl, QCTL.PEAK, inFlight);
      if (this.#answered > 0 && vq.needsInterrupt()) raiseInterrupt(this.#start.queue.interrupt);
      Atomics.store(ctl, QCTL.INFLIGHT, inFlight);
      if (end === "budget") return true;
      if (end === "declined") return false;
      if (this.#answered > 0 && this.#spin()) return true;
      if (inFlight === 0) {
        Atomics.store(ctl, QCTL.SEEN, vq.lastAvailIdx);
        Atomics.store(ctl, THREAD_CTL.IDLE, this.#start.session);
      }
      return false;
    } finally {
      this.#window.leave();
    }
  }

  /*V:347 Before going to sleep we watch the ring for a little while with
   * the doorbell turned off. A driver that waits for each answer posts its
   * next request a few microseconds after seeing it; caught here, that
   * request costs the guest no exit (on this kind of host an exit from
   * guest user mode costs tens of microseconds, far more than the I/O) and
   * us no wake-up. The watch is bounded, so an idle disk costs no CPU, and
   * it ends with the doorbell back on and one more look, since the driver
   * may have posted just before it could see the doorbell was on. :*/
  #spin(): boolean {
    const vq = this.#vq;
    if ((this.#disk.io?.inFlight ?? 0) > 0) return false;
    vq.enableNotifications(false);
    const until = performance.now() + SPIN_MS;
    for (let i = 0;; i++) {
      if (vq.hasAvailable()) return true;
      if ((i & 63) === 63) {
        if (!this.#window.wanted) return true;
        if (performance.now() > until) return vq.enableNotifications(true);
      }
    }
  }

  /** Serves one chain; false declines it (no free slot). */
  #serve(chain: Chain): boolean {
    const mem = this.#mem;
    const init = this.#disk.init;
    const req = parseRequest(mem, chain, this.#disk.shape);
    const head = chain.head;
    switch (req.kind) {
      case "broken":
        throw new Error(`${this.#vq.name}: ${req.detail} [${req.rule}]`);
      case "status":
        if (req.status !== VIRTIO_BLK_S.OK) this.#disk.post("log", `${req.detail} [${req.rule}]`);
        this.#answer(head, req.statusAddr, req.status, req.written);
        return true;
      case "id":
        writeChain(mem, chain, init.id.subarray(0, req.length));
        this.#answer(head, req.statusAddr, VIRTIO_BLK_S.OK, req.written);
        return true;
      case "flush": {
        if (init.readOnly) {
          this.#answer(head, req.statusAddr, VIRTIO_BLK_S.OK, req.written);
          return true;
        }
        const p = { head, statusAddr: req.statusAddr, length: 0, written: req.written, offset: 0 };
        return this.#submit({ ...p, failWritten: req.written, op: IO_OP.FLUSH }, undefined);
      }
      case "read":
      case "write": {
        const read = req.kind === "read";
        const iov = this.#iov.clear();
        chainIoVecs(mem, req.segments, iov, req.skip, req.length);
        return this.#submit({
          head,
          statusAddr: req.statusAddr,
          length: req.length,
          written: req.written,
          failWritten: read ? 0 : req.written,
          op: read ? IO_OP.READ : IO_OP.WRITE,
          offset: req.offset,
        }, iov);
      }
    }
  }

  /** Hands a transfer to the I/O threads while more chains wait behind it; otherwise does it here. */
  #submit(p: Pending, iov: IoVecs | undefined): boolean {
    const io = this.#disk.io;
    if (io !== undefined && io.running && this.#vq.hasAvailable()) {
      if (io.failure !== undefined) throw new Error(io.failure);
      if (!io.hasFreeSlot()) return false;
      this.#pending[io.submit(p.op, p.offset, p.length, iov)] = p;
      return true;
    }
    const ctl = this.#ctl;
    const before = io?.inFlight ?? 0;
    this.#window.leave();
    Atomics.store(ctl, QCTL.INFLIGHT, before + 1);
    let result: number;
    try {
      result = p.op === IO_OP.FLUSH ? flush(this.#disk.init.fd) : transfer(
        this.#disk.init.fd,
        this.#iov.raw,
        this.#iovPtr,
        0,
        this.#iov.count,
        p.offset,
        p.length,
        p.op === IO_OP.READ,
      );
    } finally {
      Atomics.store(ctl, QCTL.INFLIGHT, before);
    }
    this.#window.enter();
    this.#finish(p, result);
    return true;
  }

  /** Collects and answers what the I/O threads finished. */
  #collect(): void {
    const io = this.#disk.io;
    if (io === undefined) return;
    io.clearSignal();
    io.takeDone((slot, result) => {
      const p = this.#pending[slot];
      this.#pending[slot] = undefined;
      if (p !== undefined) this.#finish(p, result);
    });
  }

  #finish(p: Pending, result: number): void {
    const ok = result === p.length;
    if (!ok) {
      const why = result < 0 ? errnoName(-result) : `only ${result} bytes (the file is shorter than at open)`;
      const what = p.op === IO_OP.FLUSH
        ? "flush"
        : `${p.op === IO_OP.READ ? "read" : "write"} of ${p.length} bytes at ${p.offset}`;
      this.#disk.post("log", `request ${p.head}: ${what} failed: ${why}`);
    }
    this.#answer(p.head, p.statusAddr, ok ? VIRTIO_BLK_S.OK : VIRTIO_BLK_S.IOERR, ok ? p.written : p.failWritten);
  }

  #answer(head: number, statusAddr: number, status: number, written: number): void {
    this.#mem.writeU8(statusAddr, status);
    this.#vq.pushUsed(head, written);
    this.#answered++;
  }

  /** Ends the session: takes back unclaimed jobs and waits for running ones (on this thread only). */
  end(): void {
    this.#disk.io?.cancelAll();
    this.#pending.fill(undefined);
    Atomics.store(this.#ctl, QCTL.INFLIGHT, 0);
    Atomics.store(this.#ctl, THREAD_CTL.IDLE, 0);
  }
}
