/*V:410 Receiving: frames from the tap into buffers the guest posted on
 * queue 0. The original launcher took one buffer, readv()ed one frame
 * straight into it and handed it back, and that is still the heart of it:
 * the kernel copies the frame once, into guest memory, and we never touch
 * the bytes.
 *
 * Two things make it less simple. A tap read always takes a whole frame,
 * and we cannot ask how big the next one is before reading it; so the buffers
 * must be in place first. And with MRG_RXBUF the guest posts many small
 * buffers (a page or so each) rather than a few 64 KiB ones, and a big frame
 * has to be spread across as many of them as it needs. So we keep a small
 * stash of popped, not yet used chains, enough to hold the largest frame the
 * guest agreed to take, and give all of them to one readv. The frame fills
 * them in order; the ones it reached go back to the guest, the rest stay in
 * the stash for the next frame. :*/

import type { GuestMemory } from "../../memory.ts";
import { SysError } from "../../sys/errno.ts";
import { bufferAddress } from "../../sys/calls.ts";
import { IoVecs } from "../../sys/iovec.ts";
import { readChain, writeChain } from "../chain.ts";
import { drainQueue } from "../drain.ts";
import { type Chain, type Virtqueue, VirtqueueError } from "../queue.ts";
import { NET_HDR, NET_HDR_SIZE, type NetFeatures, type PacketPort, VIRTIO_NET_HDR } from "./hdr.ts";

/** readv() takes at most UIO_MAXIOV (1024) entries. */
const MAX_IOV = 1024;
/** The receive buffer size the spec asks for without big segments: header plus a 1514-byte frame. */
export const RX_SMALL: number = NET_HDR_SIZE + 1514;
/** ... and with GUEST_TSO4/6: header plus a 65550-byte frame. */
export const RX_BIG: number = NET_HDR_SIZE + 65550;
/** Host room after the guest's buffers, so a read never truncates silently (see V:412). */
const SCRATCH = 72 * 1024;
/** Frames moved per call before the other direction and the stop signal get a look (see V:411). */
const RX_BUDGET = 64;

/** A frame read but not yet placed: the guest had too few buffers for all of it. */
interface Pending {
  /** Used lengths of the stash chains the frame occupies so far, in order. */
  lens: number[];
  /** Bytes of the frame still in the scratch buffer. */
  spill: number;
  /** How many of them have been copied into guest buffers. */
  placed: number;
}

/** The receive queue's engine (see V:410). */
export class NetRx {
  /** True while the guest has no buffers for us: the caller stops watching the port until it posts more. */
  starved = false;
  /** True once the port failed or closed: nothing more is read. */
  broken = false;
  /** True when the last receive() stopped at its budget: the port may hold more. */
  budgetSpent = false;
  /** Frames read from the port, given to the guest, and dropped, since creation. */
  readonly totals: { read: number; delivered: number; dropped: number } = { read: 0, delivered: 0, dropped: 0 };
  readonly #mem: GuestMemory;
  readonly #q: Virtqueue;
  readonly #port: PacketPort;
  readonly #f: NetFeatures;
  readonly #log: (line: string) => void;
  readonly #iov = new IoVecs(MAX_IOV);
  readonly #scratch = new Uint8Array(SCRATCH);
  readonly #scratchAddr = bufferAddress(this.#scratch);
  readonly #hdr = new Uint8Array(2);
  readonly #covered: number[] = [];
  #stash: Chain[] = [];
  #stashRoom = 0;
  #pending: Pending | undefined;

  /**
   * An engine for receive queue `q`, fed from `port`.
   * @param mem guest RAM
   * @param q the receive queue
   * @param port where frames come from
   * @param features what the driver negotiated
   * @param log a --verbose logger
   */
  constructor(
    mem: GuestMemory,
    q: Virtqueue,
    port: PacketPort,
    features: NetFeatures,
    log: (line: string) => void,
  ) {
    this.#mem = mem;
    this.#q = q;
    this.#port = port;
    this.#f = features;
    this.#log = log;
  }

  /**
   * Moves frames from the port into the guest until the port is empty, the guest
   * has no more buffers (then `starved` is set), or the budget is spent.
   * @returns how many frames the guest received (the caller interrupts once for all)
   * @throws VirtqueueError if the driver broke a rule
   */
  receive(budget = RX_BUDGET): number {
    let delivered = 0;
    let i = 0;
    for (; i < budget && !this.broken; i++) {
      let r: "delivered" | "dropped" | "pending" | "starved";
      if (this.#pending !== undefined) {
        r = this.#finishPending();
      } else {
        if (!this.#fill()) break;
        const n = this.#read();
        if (n < 0) break;
        this.totals.read++;
        r = this.#place(n);
      }
      if (r === "starved") break;
      if (r === "delivered") delivered++;
      if (r === "delivered" || r === "dropped") this.totals[r]++;
    }
    this.budgetSpent = i >= budget;
    return delivered;
  }

  /*V:411 Back-pressure. When the guest has posted nothing, we stop reading
   * the tap, as the original's handle_tun_input did: frames then queue in
   * the kernel (and past its limit, the kernel drops them, as a switch would
   * for a slow port). The stash is filled with drainQueue (V:150), which
   * asks the guest for a doorbell on its next buffer once the ring is empty
   * and looks once more: it may have posted one just before it could see the
   * request, and then no doorbell would come. Only with an empty stash do we
   * keep that request and say we are starved; while we still hold buffers
   * the doorbells are switched off again, since the tap, not the guest,
   * tells us when to look next.
   *
   * Two budgets bound the work. One call of receive() moves at most
   * RX_BUDGET frames, then the transmit side and a withdrawal get their
   * look (budgetSpent says the tap may hold more, so the data-path thread
   * comes straight back, V:468). And each drain of
   * the ring takes one chain, since only the frame (or the room still
   * missing) says whether we need the next; the stash never holds more than
   * a ring's worth, whatever the driver posts. :*/

  /** Pops into the stash until it can hold the largest frame we expect; false if it is empty (starved). */
  #fill(): boolean {
    const want = this.#f.mergeable ? (this.#f.guestGso ? RX_BIG : RX_SMALL) : 1;
    let dry = false;
    // One chain per drain: a chain we do not need yet must stay in the ring, unread (its faults included).
    while ((this.#stash.length === 0 || this.#stashRoom < want) && this.#stash.length < this.#q.size) {
      const { served } = drainQueue(this.#q, 1, (c) => {
        this.#take(c);
        return true;
      });
      dry = served === 0;
      if (dry) break;
    }
    if (this.#stash.length === 0) {
      this.starved = true;
      return false;
    }
    if (dry) this.#q.enableNotifications(false);
    return true;
  }

  /** Takes one popped chain into the stash, checking it is a receive buffer (if not, it is unpopped). */
  #take(c: Chain): void {
    if (c.readable.length > 0 || c.writableBytes < NET_HDR_SIZE) {
      this.#q.unpop();
      const what = c.readable.length > 0
        ? ["net-rx-readable", `has ${c.readableBytes} device-readable bytes`]
        : ["net-rx-short", `has ${c.writableBytes} writable bytes, less than the ${NET_HDR_SIZE}-byte header`];
      throw new VirtqueueError(this.#q.name, what[0]!, `receive chain ${c.head} ${what[1]}`);
    }
    this.#stash.push(c);
    this.#stashRoom += c.writableBytes;
  }

  /*V:412 One readv takes exactly one frame, and if the buffers are too
   * short the kernel throws the rest away and still reports the whole
   * length. So after the guest's buffers we always add a host scratch area
   * as large as any tap frame: the bytes land there only when the guest's
   * room ran out, and then we know exactly how much did not fit instead of
   * handing the guest a silently cut frame. Without MRG_RXBUF such a frame
   * is dropped (a driver that posts small buffers has said it cannot take
   * big frames). With it, the rest waits in the scratch until the guest
   * posts more buffers, and is copied there: the one place where receiving
   * copies, and only when the guest was short of room. :*/

  /** Reads one frame into the stash chains (then scratch); returns its length or -1 (nothing, or the port failed). */
  #read(): number {
    const iov = this.#iov.clear();
    const covered = this.#covered;
    covered.length = 0;
    const chains = this.#f.mergeable ? this.#stash.length : 1;
    for (let i = 0; i < chains; i++) {
      const segs = this.#stash[i]!.writable;
      const fit = Math.min(segs.length, iov.capacity - iov.count - 1);
      if (fit <= 0) break;
      let bytes = 0;
      for (let k = 0; k < fit; k++) {
        const s = segs[k]!;
        iov.push(this.#mem.hostAddr(s.addr, s.len, "virtio-net receive buffer"), s.len);
        bytes += s.len;
      }
      covered.push(bytes);
      if (fit < segs.length) break;
    }
    iov.push(this.#scratchAddr, SCRATCH);
    let n: number;
    try {
      n = this.#port.readv(iov);
    } catch (e) {
      if (!(e instanceof SysError)) throw e;
      this.#stop(`reading the tap failed (${e.code})`);
      return -1;
    }
    if (n === 0) this.#stop("the tap was closed");
    return n === 0 ? -1 : n;
  }

  #stop(why: string): void {
    this.broken = true;
    this.#log(`${why}; no more frames will be received`);
  }

  /** Hands a frame of `n` bytes (header included) to the guest, or says why not yet or not at all. */
  #place(n: number): "delivered" | "dropped" | "pending" {
    const room = this.#iov.bytes - SCRATCH;
    const drop = (why: string): "dropped" => {
      this.#log(`dropped a received frame of ${n - NET_HDR_SIZE} bytes: ${why}`);
      return "dropped";
    };
    if (n < NET_HDR_SIZE) return drop("shorter than its header");
    if (n > room + SCRATCH) return drop("larger than any frame we expect");
    if (n > room && !this.#f.mergeable) return drop(`the receive buffer holds only ${room - NET_HDR_SIZE}`);
    const first = this.#stash[0]!;
    readChain(this.#mem, { ...first, readable: first.writable, readableBytes: first.writableBytes }, this.#hdr);
    const [flags, gso] = [this.#hdr[0]!, this.#hdr[1]!];
    if (gso !== NET_HDR.VIRTIO_NET_HDR_GSO_NONE && !this.#f.guestGso) return drop("a large segment");
    if (!this.#f.guestCsum) {
      if (flags & NET_HDR.VIRTIO_NET_HDR_F_NEEDS_CSUM) return drop("its checksum is not done");
      // Without GUEST_CSUM the spec wants flags 0; the kernel may have said DATA_VALID.
      if (flags !== 0) writeChain(this.#mem, first, new Uint8Array(1), VIRTIO_NET_HDR.fields.flags.offset);
    }
    const lens: number[] = [];
    let left = n;
    for (const c of this.#covered) {
      if (left === 0) break;
      const len = Math.min(c, left);
      lens.push(len);
      left -= len;
    }
    if (left > 0) {
      this.#pending = { lens, spill: left, placed: 0 };
      return "pending";
    }
    this.#deliver(lens);
    return "delivered";
  }

  /** Copies a pending frame's rest into newly posted buffers; reports what became of it. */
  #finishPending(): "delivered" | "dropped" | "starved" {
    const p = this.#pending!;
    while (p.placed < p.spill) {
      if (this.#stash.length === p.lens.length) {
        if (this.#stash.length >= this.#q.size) {
          // Every ring entry is ours and still it does not fit: no more can come.
          this.#pending = undefined;
          this.#log(`dropped a received frame: ${this.#q.size} receive buffers cannot hold it`);
          return "dropped";
        }
        // One chain at a time: the frame's rest decides how many it takes.
        const { served } = drainQueue(this.#q, 1, (chain) => {
          this.#take(chain);
          return true;
        });
        if (served === 0) {
          this.starved = true;
          return "starved";
        }
      }
      const c = this.#stash[p.lens.length]!;
      const w = writeChain(this.#mem, c, this.#scratch.subarray(p.placed, p.spill));
      p.lens.push(w);
      p.placed += w;
    }
    this.#pending = undefined;
    this.#deliver(p.lens);
    return "delivered";
  }

  /** Writes num_buffers, then returns the first lens.length stash chains with those lengths. */
  #deliver(lens: number[]): void {
    const count = new Uint8Array(2);
    new DataView(count.buffer).setUint16(0, lens.length, true);
    writeChain(this.#mem, this.#stash[0]!, count, VIRTIO_NET_HDR.fields.num_buffers.offset);
    for (let i = 0; i < lens.length; i++) {
      const c = this.#stash[i]!;
      this.#q.pushUsed(c.head, lens[i]!);
      this.#stashRoom -= c.writableBytes;
    }
    this.#stash.splice(0, lens.length);
  }
}
