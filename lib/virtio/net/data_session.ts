/*V:468 One activation of the card on its data-path thread. Each turn, in
 * the ring window (V:346): drain whichever doorbells rang, then transmit
 * what the guest posted (NetTx, V:413) and receive what the port holds
 * (NetRx, V:410), each with its own budget, and raise each queue's
 * interrupt once if the driver wants one. The engines are the ones the
 * main loop ran before; only where they run has changed.
 *
 * After a turn that moved frames the thread watches both rings a little
 * while, with the guest's doorbells off (as the disk does, V:347): a guest
 * that sends in a stream is caught posting its next frame, which then
 * costs it no exit and us no wake-up. Then it sleeps in poll(2) on what
 * can bring work (V:469). :*/

import { GuestMemory } from "../../memory.ts";
import { drainEventfd } from "../../sys/calls.ts";
import { type QueueSession, raiseInterrupt } from "../device.ts";
import { Virtqueue } from "../queue.ts";
import { RingWindow } from "../thread/window.ts";
import { netFeatures, type PacketPort } from "./hdr.ts";
import { NetRx } from "./rx.ts";
import { NetTx } from "./tx.ts";
import { NCTL, type NetStart } from "./data_protocol.ts";

/** How long to watch the rings before sleeping, in milliseconds. */
const SPIN_MS = 0.05;

/** What the thread lends each session. */
export interface NetThread {
  /** The control words. */
  readonly ctl: Int32Array<SharedArrayBuffer>;
  /** The port, as the thread speaks it. */
  readonly port: PacketPort;
  /** Posts a --verbose line for this session. */
  log(line: string): void;
}

/** One queue: its session and the thread's view of its rings. */
interface Queue {
  session: QueueSession;
  vq: Virtqueue;
}

/** One activation of the card, served on the data-path thread. */
export class NetSession {
  /** Set by the sleeper when the receive doorbell rang: new buffers. */
  rxRang = true;
  /** Set when the transmit doorbell rang. */
  txRang = true;
  /** Set when the port became writable again. */
  portWritable = false;
  readonly window: RingWindow;
  readonly #thread: NetThread;
  readonly #ctl: Int32Array<SharedArrayBuffer>;
  readonly #rxq: Queue | undefined;
  readonly #txq: Queue | undefined;
  readonly #rx: NetRx | undefined;
  readonly #tx: NetTx | undefined;

  /** Builds both rings' views over the thread's own view of guest memory (reading nothing yet). */
  constructor(thread: NetThread, start: NetStart) {
    this.#thread = thread;
    this.#ctl = thread.ctl;
    this.window = new RingWindow(thread.ctl, start.session);
    const mem = GuestMemory.attach(BigInt(start.hostAddress), start.memSize);
    const queue = (s: QueueSession): Queue => ({
      session: s,
      vq: new Virtqueue(mem, s.layout, s.features, s.name, s.start),
    });
    const log = (line: string) => thread.log(line);
    this.#rxq = start.rx && queue(start.rx);
    this.#txq = start.tx && queue(start.tx);
    this.#rx = this.#rxq && new NetRx(mem, this.#rxq.vq, thread.port, netFeatures(start.features), log);
    this.#tx = this.#txq && new NetTx(mem, this.#txq.vq, thread.port, log);
  }

  /** The doorbells to sleep on: receive, transmit (-1 for a queue the driver did not set up). */
  get doorbells(): [number, number] {
    return [this.#rxq?.session.doorbell ?? -1, this.#txq?.session.doorbell ?? -1];
  }

  /** True while the receive engine wants to hear that the port is readable. */
  get wantsInput(): boolean {
    const rx = this.#rx;
    return rx !== undefined && !rx.starved && !rx.broken;
  }

  /** True while the transmit engine (or the port's own unwritten rest) waits for the port to be writable. */
  get wantsOutput(): boolean {
    return this.#tx?.blocked === true || this.#thread.port.outputPending === true;
  }

  /**
   * One turn (call inside the window): moves what can move, raises the interrupts the driver wants.
   * @returns true to take another turn at once, false to sleep
   * @throws VirtqueueError if the driver broke a rule; SysError if an irqfd cannot be written
   */
  turn(): boolean {
    const [rxq, txq, rx, tx] = [this.#rxq, this.#txq, this.#rx, this.#tx];
    if (this.rxRang && rxq !== undefined) {
      drainEventfd(rxq.session.doorbell);
      if (rx !== undefined) rx.starved = false;
    }
    if (this.txRang && txq !== undefined) drainEventfd(txq.session.doorbell);
    this.rxRang = this.txRang = false;
    if (this.portWritable) {
      // A stream port first writes the rest of a frame it accepted (V:463).
      this.#thread.port.flush?.();
      if (tx !== undefined) tx.blocked = false;
      this.portWritable = false;
    }
    let again = false;
    let moved = 0;
    if (tx !== undefined && txq !== undefined && !tx.blocked) {
      const { used, end } = tx.transmit();
      if (used > 0 && txq.vq.needsInterrupt()) raiseInterrupt(txq.session.interrupt);
      again ||= end === "budget";
      moved += used;
    }
    if (rx !== undefined && rxq !== undefined && this.wantsInput) {
      const delivered = rx.receive();
      if (delivered > 0 && rxq.vq.needsInterrupt()) raiseInterrupt(rxq.session.interrupt);
      again ||= rx.budgetSpent;
      moved += delivered;
    }
    this.#publish();
    if (again) return true;
    if (moved > 0 && this.#spin()) return true;
    const ctl = this.#ctl;
    Atomics.store(ctl, NCTL.TX_SEEN, txq?.vq.lastAvailIdx ?? 0);
    Atomics.store(ctl, NCTL.RX_WAITING, this.wantsInput ? 1 : 0);
    Atomics.store(ctl, NCTL.TX_WAITING, this.wantsOutput ? 1 : 0);
    return false;
  }

  /** The engines' totals, for the main thread. */
  #publish(): void {
    const ctl = this.#ctl;
    const t = this.#tx?.totals;
    const r = this.#rx?.totals;
    Atomics.store(ctl, NCTL.TX_SENT, t?.sent ?? 0);
    Atomics.store(ctl, NCTL.TX_DROPPED, t?.dropped ?? 0);
    Atomics.store(ctl, NCTL.RX_READ, r?.read ?? 0);
    Atomics.store(ctl, NCTL.RX_DELIVERED, r?.delivered ?? 0);
    Atomics.store(ctl, NCTL.RX_DROPPED, r?.dropped ?? 0);
  }

  /**
   * Watches the transmit ring (and a starved receive ring) for SPIN_MS with their doorbells off.
   * @returns true if the guest posted something meanwhile (or the session was withdrawn: the next
   *   window says so)
   */
  #spin(): boolean {
    // A transmit ring the port holds back has chains on it for as long as the port is full: not news.
    const txq = this.#tx?.blocked ? undefined : this.#txq?.vq;
    const rx = this.#rx;
    const starvedRx = rx !== undefined && rx.starved && !rx.broken ? this.#rxq?.vq : undefined;
    if (txq === undefined && starvedRx === undefined) return false;
    txq?.enableNotifications(false);
    starvedRx?.enableNotifications(false);
    const until = performance.now() + SPIN_MS;
    for (let i = 0;; i++) {
      if (txq?.hasAvailable() || starvedRx?.hasAvailable()) return this.#wake(rx);
      if ((i & 63) === 63) {
        if (!this.window.wanted) return true;
        if (performance.now() > until) {
          // Doorbells back on, then one more look at each ring (both, so both are back on).
          const txMore = txq?.enableNotifications(true) ?? false;
          const rxMore = starvedRx?.enableNotifications(true) ?? false;
          return txMore || rxMore ? this.#wake(rx) : false;
        }
      }
    }
  }

  /** The spin saw new buffers: a starved receive engine may use them. */
  #wake(rx: NetRx | undefined): true {
    if (rx !== undefined && rx.starved && !rx.broken) rx.starved = false;
    return true;
  }
}
