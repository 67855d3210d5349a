/*V:344 The request queue's own thread. Going through the main thread cost
 * every request two trips through its event loop (the doorbell in, the
 * completion out), tens of microseconds each; so the whole data path lives
 * here instead. This thread sleeps in poll(2) on the queue's doorbell (the
 * ioeventfd KVM signals when the guest writes QueueNotify), on a stop
 * eventfd and on the I/O threads' completion eventfd. Each wake-up takes
 * every chain the ring holds, checks it as the main thread did (the same
 * Virtqueue and parseRequest, over its own view of guest memory), moves the
 * data, writes the status byte, returns the chain and raises the interrupt
 * itself when the driver wants one: the interrupt status bit in the shared
 * register image first, then the irqfd.
 *
 * By default this thread also does the I/O itself, one request after
 * another: on a 2-core host, where the vCPU keeps one core busy, that
 * measured fastest by far, since any other thread only waits for the same
 * core. Given I/O threads (BlockOptions.ioThreads), it hands them the
 * requests that arrive together, so that several are in the kernel at
 * once; but only once one of them has started, which takes a while after
 * the disk is opened (io_threads.ts): until then it does them itself. Anything
 * that goes wrong (a rule the guest broke, or a bug of ours) ends the
 * session with a message to the main thread, which fails the device; it
 * never kills this thread. :*/

import { GuestMemory } from "../../memory.ts";
import { IoVecs } from "../../sys/iovec.ts";
import { drainEventfd, signalEventfd } from "../../sys/calls.ts";
import { lastErrno, libc } from "../../sys/libc.ts";
import { Errno, errnoName } from "../../sys/errno.ts";
import { type Chain, Virtqueue } from "../queue.ts";
import { chainIoVecs, writeChain } from "../chain.ts";
import { BlockIo, IO_OP } from "./io_threads.ts";
import { type DiskShape, parseRequest, VIRTIO_BLK_S } from "./request.ts";
import { flush, pointerTo, transfer } from "./transfer.ts";
import { QCTL, type QueueCommand, type QueueInit, type QueueReport, type QueueSession } from "./protocol.ts";

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

/** A guest rule broken: ends the session. */
class Broken extends Error {}

const POLLIN = 1;
/** How long to watch the ring before sleeping, in milliseconds. */
const SPIN_MS = 0.05;

class QueueServer {
  readonly #init: QueueInit;
  readonly #ctl: Int32Array<SharedArrayBuffer>;
  readonly #shape: DiskShape;
  readonly #io: BlockIo | undefined;
  readonly #iov: IoVecs;
  readonly #held: IoVecs;
  readonly #iovPtr: Deno.PointerObject;
  readonly #heldPtr: Deno.PointerObject;
  readonly #pending: Array<Pending | undefined>;
  readonly #pfd = new Int32Array(6);
  #session = 0;
  #heldReq: Pending | undefined;
  /** Requests answered in the current pass. */
  #answered = 0;

  constructor(init: QueueInit) {
    this.#init = init;
    this.#ctl = new Int32Array(init.ctl, 0, QCTL.WORDS);
    this.#shape = { sectors: init.sectors, readOnly: init.readOnly, segMax: init.segMax };
    this.#iov = new IoVecs(init.segMax);
    this.#held = new IoVecs(init.segMax);
    this.#iovPtr = pointerTo(this.#iov.raw);
    this.#heldPtr = pointerTo(this.#held.raw);
    this.#pending = new Array(init.slots);
    this.#io = init.threads > 0
      ? new BlockIo(init.fd, {
        slots: init.slots,
        maxIovecs: init.segMax,
        threads: init.threads,
        name: init.name,
        up: { buffer: init.ctl, index: QCTL.IO_UP },
      })
      : undefined;
    Atomics.store(this.#ctl, QCTL.UP, 1);
  }

  #post(kind: QueueReport["kind"], text: string): void {
    Atomics.add(this.#ctl, QCTL.POSTED, 1);
    const report: QueueReport = { kind, session: this.#session, text };
    port.postMessage(report);
  }

  /**
   * Serves one session until the main thread asks us to stop or the guest breaks a rule. A session the main
   * thread withdrew before we got to it is only acknowledged: by now the main thread may have activated the
   * next one, so we must not touch what it counts (DONE above all: KICKS may already hold the next
   * session's kick, and publishing it would say that session was answered before we have even started it).
   */
  run(s: QueueSession): void {
    const ctl = this.#ctl;
    this.#session = s.session;
    Atomics.store(ctl, QCTL.ACK, s.session);
    try {
      if (Atomics.load(ctl, QCTL.REQ) !== s.session) return;
      try {
        this.#serve(s);
      } catch (e) {
        this.#post("fail", e instanceof Error ? e.message : String(e));
      } finally {
        this.#io?.cancelAll();
        this.#pending.fill(undefined);
        this.#heldReq = undefined;
        Atomics.store(ctl, QCTL.INFLIGHT, 0);
      }
    } finally {
      Atomics.store(ctl, QCTL.ACK, 0);
      Atomics.notify(ctl, QCTL.ACK);
    }
  }

  /*V:348 What DONE promises: every kick counted in it was answered. So
   * the count is read after the doorbell is drained and before the pass
   * that looks at the ring: a kick that comes in between is either in the
   * count (and its chain, posted before the kick, is in the pass) or still
   * on the doorbell (and wakes us again). Read before the drain, a kick in
   * between would be drained yet not counted, and the device would look
   * busy forever with nothing left to do. The same goes for every sleep,
   * the one for want of a free slot too. :*/
  #serve(s: QueueSession): void {
    const ctl = this.#ctl;
    const mem = GuestMemory.attach(BigInt(s.hostAddress), s.memSize);
    const q = new Virtqueue(mem, s.layout, s.features, s.queueName, s.start);
    const isr = s.isr === undefined ? undefined : new Int32Array(s.isr.image);
    const pfd = this.#pfd;
    pfd[0] = s.doorbell;
    pfd[2] = this.#init.stopFd;
    pfd[4] = this.#io?.doneFd ?? -1;
    this.#drain(s.doorbell);
    let kicks = Atomics.load(ctl, QCTL.KICKS);
    for (;;) {
      if (Atomics.load(ctl, QCTL.REQ) !== s.session) return;
      this.#answered = this.#collect(mem, q);
      const stalled = this.#pump(mem, q, s.session);
      const answered = this.#answered;
      if (answered > 0 && q.needsInterrupt()) {
        if (isr !== undefined && s.isr !== undefined) Atomics.or(isr, s.isr.word, s.isr.bit);
        signalEventfd(s.irqfd, `${this.#init.name} irqfd`);
      }
      const inFlight = this.#io?.inFlight ?? 0;
      Atomics.store(ctl, QCTL.INFLIGHT, inFlight);
      if (stalled) {
        this.#sleep();
        kicks = Atomics.load(ctl, QCTL.KICKS);
        continue;
      }
      if (answered > 0 && this.#spin(q, s.session)) continue;
      if (q.enableNotifications(true)) continue;
      if (inFlight === 0) Atomics.store(ctl, QCTL.DONE, kicks);
      this.#sleep();
      kicks = Atomics.load(ctl, QCTL.KICKS);
      q.enableNotifications(false);
    }
  }

  /*V:347 Before going to sleep we watch the ring for a little while with
   * the doorbell turned off. A driver that waits for each answer posts its
   * next request a few microseconds after seeing it; caught here, that
   * request costs the guest no exit (on this kind of host an exit from
   * guest user mode costs tens of microseconds, far more than the I/O) and
   * us no wake-up. The watch is bounded, so an idle disk costs no CPU. :*/
  #spin(q: Virtqueue, session: number): boolean {
    if (SPIN_MS <= 0 || (this.#io?.inFlight ?? 0) > 0) return false;
    q.enableNotifications(false);
    const until = performance.now() + SPIN_MS;
    for (let i = 0;; i++) {
      if (q.hasAvailable()) return true;
      if ((i & 63) === 63) {
        if (Atomics.load(this.#ctl, QCTL.REQ) !== session) return true;
        if (performance.now() > until) return false;
      }
    }
  }

  /** poll(2) on the doorbell, the stop eventfd and the completions until one is ready; clears the doorbell. */
  #sleep(): void {
    const pfd = this.#pfd;
    pfd[1] = pfd[3] = pfd[5] = POLLIN;
    while (libc.poll(Deno.UnsafePointer.of(pfd), 3n, -1) < 0) {
      const e = lastErrno();
      if (e !== Errno.EINTR) throw new Error(`${this.#init.name}: poll failed: ${errnoName(e)}`);
    }
    if (pfd[1]! >>> 16) this.#drain(pfd[0]!);
  }

  #drain(fd: number): void {
    drainEventfd(fd);
  }

  /*V:345 One pass over the ring: pop until it is empty, the main thread
 * withdraws the session, or (with I/O threads) every slot is taken. With
 * I/O threads, the first transfer of a pass is held back; if a second one
 * comes, the held one goes to the I/O threads too, and if not, we do it
 * here once the ring is empty, so a lone request never waits for a
 * hand-off. Returns true when we stopped for want of a slot: a completion
 * will wake us to go on. The caller then turns the doorbell back on and
 * looks at the ring once more before it sleeps, since the driver may have
 * added a chain just before it could see the doorbell was on. :*/
  #pump(mem: GuestMemory, q: Virtqueue, session: number): boolean {
    const io = this.#io;
    let stalled = false;
    for (;;) {
      if (Atomics.load(this.#ctl, QCTL.REQ) !== session) return false;
      if (io !== undefined && !io.hasFreeSlot()) {
        stalled = true;
        break;
      }
      const chain = q.pop();
      if (chain === undefined) break;
      this.#answered += this.#start(mem, q, chain);
    }
    const peak = io?.inFlight ?? 0;
    if (peak > Atomics.load(this.#ctl, QCTL.PEAK)) Atomics.store(this.#ctl, QCTL.PEAK, peak);
    const held = this.#heldReq;
    if (held !== undefined) {
      this.#heldReq = undefined;
      this.#finish(mem, q, held, this.#run(held, this.#held, this.#heldPtr));
      this.#answered++;
    }
    return stalled;
  }

  /** Starts one request; returns 1 if it was answered at once. */
  #start(mem: GuestMemory, q: Virtqueue, chain: Chain): number {
    const req = parseRequest(mem, chain, this.#shape);
    const head = chain.head;
    switch (req.kind) {
      case "broken":
        throw new Broken(`${q.name}: ${req.detail} [${req.rule}]`);
      case "status":
        if (req.status !== VIRTIO_BLK_S.OK) this.#post("log", `${req.detail} [${req.rule}]`);
        this.#answer(mem, q, head, req.statusAddr, req.status, req.written);
        return 1;
      case "id":
        writeChain(mem, chain, this.#init.id.subarray(0, req.length));
        this.#answer(mem, q, head, req.statusAddr, VIRTIO_BLK_S.OK, req.written);
        return 1;
      case "flush":
        if (this.#init.readOnly) {
          this.#answer(mem, q, head, req.statusAddr, VIRTIO_BLK_S.OK, req.written);
          return 1;
        }
        return this.#submit(mem, q, undefined, {
          head,
          statusAddr: req.statusAddr,
          length: 0,
          written: req.written,
          failWritten: req.written,
          op: IO_OP.FLUSH,
          offset: 0,
        });
      case "read":
      case "write": {
        const read = req.kind === "read";
        const iov = this.#heldReq === undefined ? this.#held.clear() : this.#iov.clear();
        chainIoVecs(mem, req.segments, iov, req.skip, req.length);
        return this.#submit(mem, q, iov, {
          head,
          statusAddr: req.statusAddr,
          length: req.length,
          written: req.written,
          failWritten: read ? 0 : req.written,
          op: read ? IO_OP.READ : IO_OP.WRITE,
          offset: req.offset,
        });
      }
    }
  }

  /**
   * Without I/O threads (or before one runs) does the request at once; otherwise holds the pass's first
   * request and hands the rest (and then the held one) to the I/O threads. Returns 1 if it was answered.
   */
  #submit(mem: GuestMemory, q: Virtqueue, iov: IoVecs | undefined, p: Pending): number {
    const io = this.#io;
    if (io === undefined || !io.running) {
      const own = iov ?? this.#held.clear();
      this.#finish(mem, q, p, this.#run(p, own, own === this.#held ? this.#heldPtr : this.#iovPtr));
      return 1;
    }
    if (io.failure !== undefined) throw new Error(io.failure);
    if (this.#heldReq === undefined) {
      if (iov === undefined) this.#held.clear();
      this.#heldReq = p;
      return 0;
    }
    const held = this.#heldReq;
    this.#heldReq = undefined;
    this.#pending[io.submit(held.op, held.offset, held.length, this.#held)] = held;
    if (!io.hasFreeSlot()) {
      this.#heldReq = p;
      if (iov !== undefined) this.#held.raw.set(iov.raw.subarray(0, 2 * iov.count));
      this.#held.count = iov?.count ?? 0;
      return 0;
    }
    this.#pending[io.submit(p.op, p.offset, p.length, iov)] = p;
    return 0;
  }

  /** Does one request on this thread. */
  #run(p: Pending, iov: IoVecs, iovPtr: Deno.PointerObject): number {
    if (p.op === IO_OP.FLUSH) return flush(this.#init.fd);
    return transfer(this.#init.fd, iov.raw, iovPtr, 0, iov.count, p.offset, p.length, p.op === IO_OP.READ);
  }

  /** Collects what the I/O threads finished; returns how many were answered. */
  #collect(mem: GuestMemory, q: Virtqueue): number {
    const io = this.#io;
    if (io === undefined) return 0;
    io.clearSignal();
    return io.takeDone((slot, result) => {
      const p = this.#pending[slot];
      this.#pending[slot] = undefined;
      if (p !== undefined) this.#finish(mem, q, p, result);
    });
  }

  #finish(mem: GuestMemory, q: Virtqueue, p: Pending, result: number): void {
    const ok = result === p.length;
    if (!ok) {
      const why = result < 0 ? errnoName(-result) : `only ${result} bytes (the file is shorter than at open)`;
      const what = p.op === IO_OP.FLUSH
        ? "flush"
        : `${p.op === IO_OP.READ ? "read" : "write"} of ${p.length} bytes at ${p.offset}`;
      this.#post("log", `request ${p.head}: ${what} failed: ${why}`);
    }
    this.#answer(
      mem,
      q,
      p.head,
      p.statusAddr,
      ok ? VIRTIO_BLK_S.OK : VIRTIO_BLK_S.IOERR,
      ok ? p.written : p.failWritten,
    );
  }

  #answer(mem: GuestMemory, q: Virtqueue, head: number, statusAddr: number, status: number, written: number): void {
    mem.writeU8(statusAddr, status);
    q.pushUsed(head, written);
  }

  /** Stops the I/O threads; after this the thread touches nothing. */
  close(): void {
    this.#io?.close();
    Atomics.store(this.#ctl, QCTL.CLOSED, 1);
    Atomics.notify(this.#ctl, QCTL.CLOSED);
  }
}

/** The Worker global, typed narrowly (this file is checked with the Window lib). */
const port = self as unknown as {
  onmessage: ((ev: MessageEvent<QueueCommand>) => void) | null;
  postMessage(message: QueueReport): void;
  close(): void;
};

let server: QueueServer | undefined;

port.onmessage = (ev) => {
  const m = ev.data;
  if (m.kind === "init") server = new QueueServer(m);
  else if (m.kind === "start") server?.run(m);
  else {
    server?.close();
    port.close();
  }
};
