/*V:413 Transmitting: the guest posts frames on queue 1, each a chain of
 * device-readable buffers holding the 12-byte header and then the Ethernet
 * frame, split however the driver liked (virtio 1.x lets the header share
 * a buffer with the frame or straddle two). The tap wants exactly that,
 * header first, so one writev() with an iovec per guest buffer hands the
 * frame to the host kernel without our ever copying or even looking at it.
 * The original launcher did the same, minus the header it could not yet
 * pass on.
 *
 * What we do look at is the shape of the chain. A transmit chain with
 * device-writable buffers, or with fewer bytes than the header, breaks the
 * spec: that is the driver's fault and fails the device, naming the rule.
 * A frame the wire cannot carry (shorter than an Ethernet header, longer
 * than the largest segment a tap accepts), or one the host kernel refuses
 * (a header asking for an impossible checksum or cut), is dropped, logged
 * and given back: a real card would drop it too, and the guest goes on. :*/

import type { GuestMemory } from "../../memory.ts";
import { SysError } from "../../sys/errno.ts";
import { bufferAddress } from "../../sys/calls.ts";
import { IoVecs } from "../../sys/iovec.ts";
import { chainIoVecs, readChain } from "../chain.ts";
import { type DrainEnd, drainQueue } from "../drain.ts";
import { type Chain, type Virtqueue, VirtqueueError } from "../queue.ts";
import { NET_HDR_SIZE, type PacketPort } from "./hdr.ts";

/** writev() takes at most UIO_MAXIOV (1024) entries. */
const MAX_IOV = 1024;
/** The shortest frame a tap takes: an Ethernet header (ETH_HLEN). */
export const TX_MIN_FRAME: number = 14;
/** The longest: a 65535-byte IP packet (the largest MTU) behind a VLAN-tagged Ethernet header. */
export const TX_MAX_FRAME: number = 65535 + 18;
/** Frames sent per turn before the receive side and the stop signal get a look (see V:414). */
export const TX_BUDGET: number = 256;

/** What became of the frames one {@link NetTx.transmit} call took. */
export interface TxCounts {
  /** Frames handed to the port whole. */
  sent: number;
  /** Frames dropped (logged), their chains given back. */
  dropped: number;
}

/** The transmit queue's engine (see V:413). */
export class NetTx {
  /** True while the port refuses more (EAGAIN): the caller waits for it to become writable. */
  blocked = false;
  /** Totals since creation, for tests and --verbose. */
  readonly totals: TxCounts = { sent: 0, dropped: 0 };
  readonly #mem: GuestMemory;
  readonly #q: Virtqueue;
  readonly #port: PacketPort;
  readonly #log: (line: string) => void;
  readonly #iov = new IoVecs(MAX_IOV);
  #bounce: Uint8Array<ArrayBuffer> | undefined;

  /**
   * An engine for transmit queue `q`, sending to `port`.
   * @param mem guest RAM
   * @param q the transmit queue
   * @param port where frames go
   * @param log a --verbose logger
   */
  constructor(mem: GuestMemory, q: Virtqueue, port: PacketPort, log: (line: string) => void) {
    this.#mem = mem;
    this.#q = q;
    this.#port = port;
    this.#log = log;
  }

  /*V:414 The loop is the usual one, drainQueue (V:150): while we drain
   * the queue the guest need not ring (its doorbell is an exit), and once it
   * runs dry we ask for the doorbell again and look one last time, in case a
   * frame slipped in before the guest could see the request. When the port
   * pushes back (EAGAIN; a tap hardly ever does, a socket may), we decline
   * the chain, it goes back on the queue untouched, and the caller waits for
   * the port to drain. What bounds a turn is TX_BUDGET frames: a guest that
   * posts faster than we send cannot keep us here for ever, and after a
   * spent budget the data-path thread takes another turn at once, after a
   * look at the other direction and at whether it should stop (V:468). :*/

  /**
   * Sends posted frames until the queue is empty, the port blocks ("declined"), or the budget is spent.
   * @returns how many chains were given back (the caller interrupts once) and why the turn ended
   * @throws VirtqueueError if the driver broke a rule (the offending chain stays on the queue)
   */
  transmit(budget = TX_BUDGET): { used: number; end: DrainEnd } {
    const q = this.#q;
    this.blocked = false;
    const { served, end } = drainQueue(q, budget, (chain) => {
      this.#check(chain);
      const outcome = this.#send(chain);
      if (outcome === "blocked") return false;
      q.pushUsed(chain.head, 0);
      this.totals[outcome]++;
      return true;
    });
    this.blocked = end === "declined";
    return { used: served, end };
  }

  /** Spec 5.1.6.2: transmit chains are device-readable only, and start with the header. */
  #check(c: Chain): void {
    let rule: string | undefined;
    let detail = "";
    if (c.writable.length > 0) {
      rule = "net-tx-writable";
      detail = `has ${c.writableBytes} device-writable bytes`;
    } else if (c.readableBytes < NET_HDR_SIZE) {
      rule = "net-tx-short";
      detail = `has ${c.readableBytes} bytes, less than the ${NET_HDR_SIZE}-byte header`;
    }
    if (rule === undefined) return;
    this.#q.unpop();
    throw new VirtqueueError(this.#q.name, rule, `transmit chain ${c.head} ${detail}`);
  }

  /** Writes one frame; says what became of it. */
  #send(c: Chain): "sent" | "dropped" | "blocked" {
    const frame = c.readableBytes - NET_HDR_SIZE;
    const drop = (why: string): "dropped" => {
      this.#log(`dropped a transmitted frame of ${frame} bytes: ${why}`);
      return "dropped";
    };
    if (frame < TX_MIN_FRAME) return drop(`shorter than an Ethernet header (${TX_MIN_FRAME} bytes)`);
    if (frame > TX_MAX_FRAME) return drop(`longer than the largest frame a tap takes (${TX_MAX_FRAME} bytes)`);
    const iov = this.#iov.clear();
    if (c.readable.length <= MAX_IOV) {
      chainIoVecs(this.#mem, c.readable, iov);
    } else {
      // More buffers than one writev takes: the one case where we copy.
      const bounce = this.#bounce ??= new Uint8Array(NET_HDR_SIZE + TX_MAX_FRAME);
      readChain(this.#mem, c, bounce);
      iov.push(bufferAddress(bounce), c.readableBytes);
    }
    let n: number;
    try {
      n = this.#port.writev(iov);
    } catch (e) {
      if (!(e instanceof SysError)) throw e;
      return drop(`the host refused it (${e.code})`);
    }
    if (n < 0) return "blocked";
    if (n !== c.readableBytes) return drop(`only ${n} of ${c.readableBytes} bytes were written`);
    return "sent";
  }
}
