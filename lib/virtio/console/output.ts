/*V:371 The console's way out. What the guest prints leaves through a
 * descriptor we do not own and may not make non-blocking: stdout, shared
 * with the shell. A blocking write to a full pipe or a stalled terminal
 * would freeze the whole event loop, and every other device with it. So
 * output waits in a queue of pieces (a transmit chain's guest buffers, or a
 * few host bytes from the emergency register), and flush() writes only what
 * the descriptor takes now: it asks poll() first, and then writes at most
 * PIPE_BUF bytes, which a pipe that polls writable always takes whole
 * without sleeping. When poll says no, flush() says "blocked" and the
 * device waits for EPOLLOUT in the event loop. Nothing is copied: each
 * guest buffer becomes an iovec into guest memory at the moment of the
 * write, through GuestMemory, so a buffer that is no longer inside RAM is
 * refused there rather than read. :*/

import { POLL, pollOne, writev } from "../../sys/calls.ts";
import { bufferAddress } from "../../sys/calls.ts";
import { SysError } from "../../sys/errno.ts";
import { IoVecs } from "../../sys/iovec.ts";
import type { GuestMemory } from "../../memory.ts";
import type { Segment } from "../queue.ts";

/** The most bytes one write carries: PIPE_BUF, what a writable pipe always takes without blocking. */
export const OUTPUT_CHUNK = 4096;
/** The most host bytes (emergency writes) held while the output is blocked; more are dropped. */
export const HOST_BYTES_LIMIT = 4096;
/** Linux's IOV_MAX. */
const IOV_MAX = 1024;

interface Piece {
  /** The transmit chain to return once written, or undefined for host bytes. */
  head: number | undefined;
  /** Guest buffers (validated when popped; checked again at write time). */
  segments: readonly Segment[];
  /** Host bytes instead of guest buffers. */
  host: Uint8Array<ArrayBuffer> | undefined;
  /** Total bytes. */
  total: number;
}

/** What one flush achieved. */
export interface FlushResult {
  /** Heads of the chains now written whole, in order. */
  done: number[];
  /** True if output remains and the descriptor takes no more now: wait for EPOLLOUT. */
  blocked: boolean;
}

/** An ordered queue of pending console output, written without blocking. */
export class ConsoleOutput {
  /** The output descriptor (never closed here). */
  readonly fd: number;
  readonly #iov = new IoVecs(IOV_MAX);
  readonly #log: (line: string) => void;
  #pieces: Piece[] = [];
  /** Bytes of the first piece already written. */
  #skip = 0;
  #hostBytes = 0;
  #broken = false;
  #dropped = false;

  /**
   * @param fd where output goes
   * @param log told once when the output fails for good, or host bytes are dropped
   */
  constructor(fd: number, log: (line: string) => void) {
    this.fd = fd;
    this.#log = log;
  }

  /** Pieces waiting (chains and host-byte runs). */
  get pending(): number {
    return this.#pieces.length;
  }

  /** True once the output failed for good: everything is discarded from then on. */
  get broken(): boolean {
    return this.#broken;
  }

  /** Queues a transmit chain's readable buffers; its head comes back from flush() once written. */
  pushChain(head: number, segments: readonly Segment[]): void {
    const total = segments.reduce((n, s) => n + s.len, 0);
    this.#pieces.push({ head, segments, host: undefined, total });
  }

  /**
   * Queues host bytes (copied). Past HOST_BYTES_LIMIT unwritten host bytes, more are dropped.
   * @returns false if they were dropped
   */
  pushHost(bytes: Uint8Array): boolean {
    if (this.#hostBytes + bytes.length > HOST_BYTES_LIMIT) {
      if (!this.#dropped) this.#log(`output blocked; dropping emergency-write bytes past ${HOST_BYTES_LIMIT}`);
      this.#dropped = true;
      return false;
    }
    this.#hostBytes += bytes.length;
    this.#pieces.push({ head: undefined, segments: [], host: Uint8Array.from(bytes), total: bytes.length });
    return true;
  }

  /** Forgets every pending piece (device reset: the driver takes its buffers back). Host bytes stay. */
  dropChains(): void {
    const first = this.#pieces[0];
    const keepSkip = first !== undefined && first.head === undefined;
    this.#pieces = this.#pieces.filter((p) => p.head === undefined);
    if (!keepSkip) this.#skip = 0;
  }

  /*V:372 One flush: poll with a zero timeout, gather up to OUTPUT_CHUNK
   * bytes of pending pieces into iovecs, one writev, and account for what
   * it took, which may end in the middle of any buffer. Repeat until the
   * queue is empty or the descriptor is full. EINTR is tried again; EAGAIN
   * (someone else set O_NONBLOCK on a shared descriptor) counts as full. A
   * hard error (the reader went away: EPIPE) or a write of nothing breaks
   * the output for good: we say so once and discard from then on, but the
   * chains still go back, or the guest's console would hang waiting. :*/

  /**
   * Writes what the descriptor takes now, without blocking.
   * @param mem guest RAM, to turn buffers into host addresses (only host bytes can be written without it)
   * @returns the chains written whole, and whether output is left waiting
   * @throws RangeError if a queued guest buffer is not inside `mem`, or there is no `mem` (device bugs)
   */
  flush(mem: GuestMemory | undefined): FlushResult {
    const done: number[] = [];
    for (;;) {
      this.#completeFront(done);
      if (this.#pieces.length === 0) return { done, blocked: false };
      if (this.#broken) {
        this.#skip = this.#pieces[0]!.total;
        continue;
      }
      const revents = this.#poll();
      if (revents === 0) return { done, blocked: true };
      if (revents & POLL.NVAL) {
        this.#break(`fd ${this.fd} is not open`);
        continue;
      }
      this.#gather(mem);
      let n: number;
      try {
        n = writev(this.fd, this.#iov.raw, this.#iov.count);
      } catch (e) {
        if (e instanceof SysError && e.code === "EINTR") continue;
        this.#break(e instanceof Error ? e.message : String(e));
        continue;
      }
      if (n < 0) return { done, blocked: true };
      if (n === 0) this.#break(`fd ${this.fd} accepted nothing`);
      else this.#advance(n, done);
    }
  }

  #poll(): number {
    try {
      return pollOne(this.fd, POLL.OUT, 0);
    } catch {
      return POLL.NVAL;
    }
  }

  /** Fills the iovec array from the front of the queue: at most OUTPUT_CHUNK bytes. */
  #gather(mem: GuestMemory | undefined): void {
    const iov = this.#iov.clear();
    let skip = this.#skip;
    let room = OUTPUT_CHUNK;
    for (const p of this.#pieces) {
      if (room === 0 || iov.count === IOV_MAX) break;
      if (p.host !== undefined) {
        const len = Math.min(p.total - skip, room);
        iov.push(bufferAddress(p.host) + BigInt(skip), len);
        room -= len;
      } else {
        if (mem === undefined) throw new RangeError("console output: guest buffers queued without guest memory");
        for (const s of p.segments) {
          if (room === 0 || iov.count === IOV_MAX) break;
          if (skip >= s.len) {
            skip -= s.len;
            continue;
          }
          const len = Math.min(s.len - skip, room);
          iov.push(mem.hostAddr(s.addr + skip, len, "console output buffer"), len);
          room -= len;
          skip = 0;
        }
      }
      skip = 0;
    }
  }

  /** Accounts for `n` bytes written from the front of the queue, collecting finished chains into `done`. */
  #advance(n: number, done: number[]): void {
    let left = n;
    for (let p = this.#pieces[0]; left > 0 && p !== undefined; p = this.#pieces[0]) {
      const take = Math.min(left, p.total - this.#skip);
      this.#skip += take;
      left -= take;
      this.#completeFront(done);
    }
  }

  /** Removes fully written pieces from the front, collecting chain heads into `done`. */
  #completeFront(done: number[]): void {
    for (let p = this.#pieces[0]; p !== undefined && this.#skip >= p.total; p = this.#pieces[0]) {
      this.#pieces.shift();
      this.#skip = 0;
      if (p.head !== undefined) done.push(p.head);
      else this.#hostBytes -= p.total;
    }
  }

  #break(why: string): void {
    this.#broken = true;
    this.#log(`output failed (${why}); discarding the guest's console output from now on`);
  }
}
