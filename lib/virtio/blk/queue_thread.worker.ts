/*V:344 The request queue's own thread. Going through the main thread cost
 * every request two trips through its event loop (the doorbell in, the
 * completion out), tens of microseconds each; so the whole data path lives
 * here instead. This thread sleeps in poll(2) on the queue's doorbell (the
 * ioeventfd KVM signals when the guest writes QueueNotify), on a stop
 * eventfd and on the I/O threads' completion eventfd. Each wake-up takes
 * every chain the ring holds, checks it as the main thread did (the same
 * Virtqueue and parseRequest, over its own view of guest memory), moves the
 * data, writes the status byte, returns the chain and raises the interrupt
 * itself when the driver wants one (raiseInterrupt: the cause bit in the
 * session's status word first, then the irqfd).
 *
 * By default this thread also does the I/O itself, one request after
 * another: on a 2-core host, where the vCPU keeps one core busy, that
 * measured fastest by far, since any other thread only waits for the same
 * core. Given I/O threads (BlockOptions.ioThreads), it hands them the
 * requests that arrive together, so that several are in the kernel at
 * once; but only once one of them has started, which takes a while after
 * the disk is opened (io_threads.ts): until then it does them itself. Messages
 * are taken in order and a session is served to its end before the next
 * message is read, so a new activation starts only once the old one's I/O
 * is over. Anything that goes wrong (a rule the guest broke, or a bug of ours) ends the
 * session with a message to the main thread, which fails the device; it
 * never kills this thread. :*/

import { drainEventfd, POLL } from "../../sys/calls.ts";
import { BlockIo } from "./io_threads.ts";
import type { DiskShape } from "./request.ts";
import { QCTL, type QueueCommand, type QueueInit, type SessionStart } from "./protocol.ts";
import { type DiskThread, Session } from "./session.ts";
import { pollReady, postReport, THREAD_CTL, type ThreadReport, Withdrawn } from "../thread/window.ts";

class QueueServer implements DiskThread {
  readonly init: QueueInit;
  readonly ctl: Int32Array<SharedArrayBuffer>;
  readonly shape: DiskShape;
  readonly io: BlockIo | undefined;
  readonly #pfd = new Int32Array(6);
  #session = 0;

  constructor(init: QueueInit) {
    this.init = init;
    this.ctl = new Int32Array(init.ctl, 0, QCTL.WORDS);
    this.shape = { sectors: init.sectors, readOnly: init.readOnly, segMax: init.segMax };
    this.io = init.threads > 0
      ? new BlockIo(init.fd, {
        slots: init.slots,
        maxIovecs: init.segMax,
        threads: init.threads,
        name: init.name,
        up: { buffer: init.ctl, index: QCTL.IO_UP },
      })
      : undefined;
    Atomics.store(this.ctl, THREAD_CTL.UP, 1);
  }

  post(kind: ThreadReport["kind"], text: string): void {
    postReport(this.ctl, (r) => port.postMessage(r), { kind, session: this.#session, text });
  }

  /**
   * Serves one session until the main thread withdraws it or the guest breaks a rule. A session withdrawn
   * before we got to it is skipped without a trace: by now the main thread may have activated the next one.
   */
  run(start: SessionStart): void {
    if (Atomics.load(this.ctl, THREAD_CTL.REQ) !== start.session) return;
    this.#session = start.session;
    const s = new Session(this, start);
    try {
      for (;;) {
        if (s.turn()) continue;
        this.#sleep(s);
        Atomics.store(this.ctl, THREAD_CTL.IDLE, 0);
      }
    } catch (e) {
      if (!(e instanceof Withdrawn)) this.post("fail", e instanceof Error ? e.message : String(e));
    } finally {
      s.end();
    }
  }

  /**
   * poll(2) on the doorbell, the stop eventfd and the completions until one is ready. The stop eventfd is
   * drained here; the doorbell only inside the next ring window, since after a reset its fd is not ours.
   */
  #sleep(s: Session): void {
    const pfd = this.#pfd;
    pfd[0] = s.doorbell;
    pfd[2] = this.init.stopFd;
    pfd[4] = this.io?.doneFd ?? -1;
    pfd[1] = pfd[3] = pfd[5] = POLL.IN;
    pollReady(pfd, 3, this.init.name);
    if (pfd[1]! >>> 16) s.rang = true;
    if (pfd[3]! >>> 16) drainEventfd(this.init.stopFd);
  }

  /** Stops the I/O threads; after this the thread touches nothing. */
  close(): void {
    this.io?.close();
    Atomics.store(this.ctl, THREAD_CTL.CLOSED, 1);
    Atomics.notify(this.ctl, THREAD_CTL.CLOSED);
  }
}

/** The Worker global, typed narrowly (this file is checked with the Window lib). */
const port = self as unknown as {
  onmessage: ((ev: MessageEvent<QueueCommand>) => void) | null;
  postMessage(message: ThreadReport): void;
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
