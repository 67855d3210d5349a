/*V:320 Optional I/O threads. The original launcher gave its disk a thread
 * of its own so that a slow read would not stall the console or the
 * network; the queue's own thread (queue_thread.worker.ts) is that, and it can also
 * be given a few more Worker threads, so several requests are in the host
 * kernel at once (worth it on a host with cores to spare). A Worker
 * calls preadv, pwritev and fdatasync synchronously through its own libc
 * handle, which is what lets it read errno: the call and the errno read
 * happen on the same thread.
 *
 * The threads share no objects with the queue's thread, which owns this
 * class, only one SharedArrayBuffer cut into request slots. A slot holds an
 * operation, a file offset, a length and an iovec array of host addresses
 * inside guest memory, so the data moves between the file and the guest's
 * buffers with no copy. Each slot's state
 * word walks FREE -> SUBMITTED -> RUNNING -> DONE -> FREE: we make the
 * first and last steps, a thread claims a job with a compare-and-swap
 * (so two threads never run one job) and finishes it. A thread with
 * nothing to claim sleeps on a submission counter that we bump and notify.
 *
 * Completions come back through an eventfd that the queue's thread polls
 * alongside its doorbell; it then collects every DONE slot in one pass.
 *
 * A thread takes a while to start (a Worker made by a Worker took Deno
 * about a second here, on an idle host; a slow host adds to that). Each
 * thread counts itself in a shared word once it can claim jobs, and until
 * one has, the queue's thread does every request itself instead of leaving
 * it in a slot nobody watches yet. :*/

import { close, drainEventfd, eventfd } from "../../sys/calls.ts";
import type { IoVecs } from "../../sys/iovec.ts";
import { SLOT, type SlotLayout, slotLayout, type WorkerInit } from "./protocol.ts";
import { workerUrl } from "../../worker_url.ts";

export { IO_OP } from "./protocol.ts";

/** Options for {@link BlockIo}. */
export interface BlockIoOptions {
  /** Request slots (the most requests in flight). */
  slots: number;
  /** The most iovec entries one request may carry. */
  maxIovecs: number;
  /** I/O threads. */
  threads: number;
  /** For messages, e.g. "virtio-blk (disk.img)". */
  name: string;
  /** An int32 word each thread adds 1 to once it serves (default: a word of our own). */
  up?: { buffer: SharedArrayBuffer; index: number };
}

/** One finished job: its slot and the result (bytes moved, or -errno). */
export type DoneHandler = (slot: number, result: number) => void;

/** The I/O threads of one disk and the slots they share with the queue's thread. */
export class BlockIo {
  /** Written by the threads when a job is done; the queue's thread polls it. */
  readonly doneFd: number;
  readonly #layout: SlotLayout;
  readonly #shared: SharedArrayBuffer;
  readonly #ctl: Int32Array<SharedArrayBuffer>;
  readonly #state: Int32Array<SharedArrayBuffer>;
  readonly #ints: Int32Array<SharedArrayBuffer>;
  readonly #nums: Float64Array<SharedArrayBuffer>;
  readonly #iov: BigUint64Array<SharedArrayBuffer>;
  readonly #up: Int32Array<SharedArrayBuffer>;
  readonly #upIndex: number;
  #running = false;
  readonly #workers: Worker[] = [];
  readonly #free: number[] = [];
  readonly #busy = new Set<number>();
  #alive = 0;
  #failure: string | undefined;
  #closed = false;

  /**
   * Starts the threads (they sleep until the first job).
   * @param fd the open disk file
   * @param options slot count, iovec limit, thread count, name
   */
  constructor(fd: number, options: BlockIoOptions) {
    this.#layout = slotLayout(options.slots, options.maxIovecs);
    this.#shared = new SharedArrayBuffer(this.#layout.bytes);
    const l = this.#layout;
    this.#ctl = new Int32Array(this.#shared, 0, SLOT.CTL_WORDS);
    this.#state = new Int32Array(this.#shared, l.stateAt, l.slots);
    this.#ints = new Int32Array(this.#shared, l.intsAt, l.slots * SLOT.INTS);
    this.#nums = new Float64Array(this.#shared, l.numsAt, l.slots * SLOT.NUMS);
    this.#iov = new BigUint64Array(this.#shared, l.iovAt, l.slots * l.maxIovecs * 2);
    for (let i = l.slots - 1; i >= 0; i--) this.#free.push(i);
    this.#up = new Int32Array(options.up?.buffer ?? this.#shared);
    this.#upIndex = options.up?.index ?? SLOT.UP;
    this.doneFd = eventfd();
    const init: WorkerInit = {
      shared: this.#shared,
      slots: l.slots,
      maxIovecs: l.maxIovecs,
      fd,
      doneFd: this.doneFd,
      up: this.#up.buffer,
      upIndex: this.#upIndex,
    };
    try {
      for (let t = 0; t < options.threads; t++) this.#spawn(init, `${options.name} I/O thread ${t}`);
    } catch (e) {
      this.close();
      throw e;
    }
  }

  #spawn(init: WorkerInit, label: string): void {
    const worker = new Worker(workerUrl(new URL("./io_thread.worker.ts", import.meta.url)), {
      type: "module",
      name: label,
    });
    worker.onerror = (ev) => {
      ev.preventDefault();
      this.#alive--;
      if (this.#alive <= 0) this.#failure ??= `${label} failed: ${ev.message}`;
    };
    worker.postMessage(init);
    this.#workers.push(worker);
    this.#alive++;
  }

  /** Set when every I/O thread has died: requests can no longer be served. */
  get failure(): string | undefined {
    return this.#failure;
  }

  /** True once a thread is ready to claim jobs: until then {@link submit} would leave them waiting. */
  get running(): boolean {
    if (!this.#running) this.#running = Atomics.load(this.#up, this.#upIndex) > 0;
    return this.#running;
  }

  /** Jobs submitted and not yet collected. */
  get inFlight(): number {
    return this.#busy.size;
  }

  /** True if a slot is free for {@link submit}. */
  hasFreeSlot(): boolean {
    return this.#free.length > 0;
  }

  /**
   * Hands a job to the threads.
   * @param op IO_OP.READ, WRITE or FLUSH
   * @param offset file offset
   * @param length bytes to move (0 for a flush)
   * @param iov the data buffers' host addresses (ignored for a flush)
   * @returns the slot, which {@link takeDone} reports back
   */
  submit(op: number, offset: number, length: number, iov: IoVecs | undefined): number {
    const slot = this.#free.pop();
    if (slot === undefined) throw new Error("BlockIo.submit without a free slot");
    const count = iov?.count ?? 0;
    if (count > this.#layout.maxIovecs) throw new RangeError(`${count} iovecs, at most ${this.#layout.maxIovecs}`);
    if (iov !== undefined) this.#iov.set(iov.raw.subarray(0, 2 * count), slot * this.#layout.maxIovecs * 2);
    this.#ints[slot * SLOT.INTS + SLOT.OP] = op;
    this.#ints[slot * SLOT.INTS + SLOT.IOVCNT] = count;
    this.#nums[slot * SLOT.NUMS + SLOT.OFFSET] = offset;
    this.#nums[slot * SLOT.NUMS + SLOT.LENGTH] = length;
    this.#nums[slot * SLOT.NUMS + SLOT.RESULT] = 0;
    this.#busy.add(slot);
    Atomics.store(this.#state, slot, SLOT.SUBMITTED);
    Atomics.add(this.#ctl, SLOT.SEQ, 1);
    Atomics.notify(this.#ctl, SLOT.SEQ, 1);
    return slot;
  }

  /** Clears the completion eventfd (call before {@link takeDone}). */
  clearSignal(): void {
    drainEventfd(this.doneFd);
  }

  /**
   * Collects every finished job, freeing its slot.
   * @param done called for each, in slot order
   * @returns how many were collected
   */
  takeDone(done: DoneHandler): number {
    let n = 0;
    for (const slot of [...this.#busy]) {
      if (Atomics.load(this.#state, slot) !== SLOT.DONE) continue;
      const result = this.#nums[slot * SLOT.NUMS + SLOT.RESULT]!;
      this.#release(slot);
      n++;
      done(slot, result);
    }
    return n;
  }

  #release(slot: number): void {
    Atomics.store(this.#state, slot, SLOT.FREE);
    this.#busy.delete(slot);
    this.#free.push(slot);
  }

  /*V:325 Cancelling, when a session ends (a reset, a failure, close). A
   * job no thread has claimed yet is taken back with the same
   * compare-and-swap the threads use, so either we get it or a thread does,
   * never both. A job a thread is running cannot be stopped halfway through
   * a pwritev, so we wait for it: the queue's thread blocks (Atomics.wait)
   * for as long as one disk operation takes, while the main thread, which
   * only withdrew the session (V:346), has long gone on. After this returns
   * no thread touches guest memory on behalf of the old requests, so the
   * next session starts with every slot free. :*/

  /** Takes back queued jobs and waits for running ones; afterwards no job is in flight. */
  cancelAll(): void {
    for (const slot of [...this.#busy]) {
      Atomics.compareExchange(this.#state, slot, SLOT.SUBMITTED, SLOT.FREE);
      while (Atomics.load(this.#state, slot) === SLOT.RUNNING) {
        const waited = Atomics.wait(this.#state, slot, SLOT.RUNNING, 1000);
        if (waited === "timed-out" && this.#alive < this.#workers.length) break;
      }
      this.#release(slot);
    }
    this.clearSignal();
  }

  /** Stops the threads and closes the eventfd. Cancels first. Safe twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.cancelAll();
    Atomics.store(this.#ctl, SLOT.STOP, 1);
    Atomics.add(this.#ctl, SLOT.SEQ, 1);
    Atomics.notify(this.#ctl, SLOT.SEQ);
    for (const w of this.#workers) w.terminate();
    this.#workers.length = 0;
    close(this.doneFd);
  }
}
