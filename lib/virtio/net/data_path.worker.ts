/*V:466 The network card's data path, on a thread of its own. On the main
 * loop every batch of frames cost a round trip through the event loop (a
 * nonblocking epoll_wait on Deno's pool thread, then a promise) before any
 * frame moved: tens of microseconds, for frames the kernel moves in one. So
 * both queues are served here instead, as the disk's request queue is
 * (V:344): the guest's QueueNotify reaches this thread through the
 * doorbell eventfds KVM signals, frames move between the port and guest
 * memory with readv/writev on guest addresses, and the interrupt leaves
 * through the irqfd, all without the main thread. The main thread only
 * switches the tap's offloads, starts and withdraws sessions, and closes.
 *
 * The thread speaks the port itself, from its fd and its framing: a tap
 * (one frame per read or write, header first) or passt's stream (V:463).
 * Whatever goes wrong in a session, a rule the guest broke or an irqfd
 * that cannot be written, ends it with a message that fails the device;
 * the thread lives on for the next activation. :*/

import { drainEventfd, POLL, readv, writev } from "../../sys/calls.ts";
import type { IoVecs } from "../../sys/iovec.ts";
import { pollReady, postReport, THREAD_CTL, type ThreadReport, Withdrawn } from "../thread/window.ts";
import type { PacketPort } from "./hdr.ts";
import { StreamPort } from "./stream_port.ts";
import type { NetCommand, NetInit, NetStart } from "./data_protocol.ts";
import { NetSession, type NetThread } from "./data_session.ts";

/** A port with packet framing over an fd the main thread owns (a tap): this thread only reads and writes it. */
class PacketFdPort implements PacketPort {
  readonly framing = "packet";
  readonly fd: number;
  constructor(fd: number) {
    this.fd = fd;
  }
  readv(iov: IoVecs): number {
    return readv(this.fd, iov.raw, iov.count);
  }
  writev(iov: IoVecs): number {
    return writev(this.fd, iov.raw, iov.count);
  }
  setOffload(): void {}
  close(): void {}
}

/*V:469 Sleeping: poll(2) on the two doorbells, the stop eventfd, and the
 * port, but the port only for what an engine waits for. Readable, while the
 * receive engine has buffers to fill (a starved one waits for the guest's
 * receive doorbell instead, and frames wait in the kernel: the original's
 * back-pressure, V:411); writable, while a frame is held back. A port that
 * no engine waits on is left out of the set altogether, so a hung-up
 * socket, which poll reports whatever was asked, cannot keep us awake. :*/

class NetServer implements NetThread {
  readonly ctl: Int32Array<SharedArrayBuffer>;
  readonly port: PacketPort;
  readonly #init: NetInit;
  readonly #pfd = new Int32Array(8);
  #session = 0;

  constructor(init: NetInit) {
    this.#init = init;
    this.ctl = new Int32Array(init.ctl);
    this.port = init.framing === "stream"
      ? new StreamPort(init.fd, init.peer === undefined ? {} : { peer: init.peer })
      : new PacketFdPort(init.fd);
    Atomics.store(this.ctl, THREAD_CTL.UP, 1);
  }

  log(line: string): void {
    this.#post("log", line);
  }

  #post(kind: ThreadReport["kind"], text: string): void {
    postReport(this.ctl, (r) => port.postMessage(r), { kind, session: this.#session, text });
  }

  /** Serves one session until it is withdrawn or fails. A session withdrawn before we got to it is skipped. */
  run(start: NetStart): void {
    if (Atomics.load(this.ctl, THREAD_CTL.REQ) !== start.session) return;
    this.#session = start.session;
    let s: NetSession;
    try {
      s = new NetSession(this, start);
    } catch (e) {
      this.#post("fail", e instanceof Error ? e.message : String(e));
      return;
    }
    try {
      for (;;) {
        s.window.enter();
        let again: boolean;
        try {
          again = s.turn();
          if (!again) Atomics.store(this.ctl, THREAD_CTL.IDLE, start.session);
        } finally {
          s.window.leave();
        }
        if (again) continue;
        this.#sleep(s);
        Atomics.store(this.ctl, THREAD_CTL.IDLE, 0);
      }
    } catch (e) {
      if (!(e instanceof Withdrawn)) this.#post("fail", e instanceof Error ? e.message : String(e));
    } finally {
      Atomics.store(this.ctl, THREAD_CTL.IDLE, 0);
      Atomics.store(this.ctl, THREAD_CTL.RING_BUSY, 0);
    }
  }

  /** Sleeps until a doorbell, the stop eventfd or the port (as the engines want it, V:469) is ready. */
  #sleep(s: NetSession): void {
    const pfd = this.#pfd;
    const [rxBell, txBell] = s.doorbells;
    const events = (s.wantsInput ? POLL.IN : 0) | (s.wantsOutput ? POLL.OUT : 0);
    pfd[0] = rxBell;
    pfd[2] = txBell;
    pfd[4] = this.#init.stopFd;
    pfd[6] = events === 0 ? -1 : this.port.fd;
    pfd[1] = pfd[3] = pfd[5] = POLL.IN;
    pfd[7] = events;
    pollReady(pfd, 4, this.#init.name);
    if (pfd[1]! >>> 16) s.rxRang = true;
    if (pfd[3]! >>> 16) s.txRang = true;
    if (pfd[5]! >>> 16) drainEventfd(this.#init.stopFd);
    if ((pfd[7]! >>> 16) & (POLL.OUT | POLL.ERR | POLL.HUP)) s.portWritable = s.wantsOutput;
  }

  /** Lets go of everything: the port's fd stays open for the main thread to close. */
  close(): void {
    Atomics.store(this.ctl, THREAD_CTL.CLOSED, 1);
    Atomics.notify(this.ctl, THREAD_CTL.CLOSED);
  }
}

/** The Worker global, typed narrowly (this file is checked with the Window lib). */
const port = self as unknown as {
  onmessage: ((ev: MessageEvent<NetCommand>) => void) | null;
  postMessage(message: ThreadReport): void;
  close(): void;
};

let server: NetServer | undefined;

port.onmessage = (ev) => {
  const m = ev.data;
  if (m.kind === "init") server = new NetServer(m);
  else if (m.kind === "start") server?.run(m);
  else {
    server?.close();
    port.close();
  }
};
