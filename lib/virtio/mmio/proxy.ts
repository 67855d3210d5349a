/*V:230 The vCPU thread's half of a virtio-mmio window. Reads are answered
 * from the shared register image without leaving the thread; so is the
 * interrupt acknowledgement, the one write on the hot path (every
 * interrupt). Every other write changes transport state that lives on the
 * main thread, so it goes through the mailbox: the vCPU posts the write,
 * signals an eventfd the main loop watches, and waits until the main thread
 * has applied it. Such writes happen a few dozen times per device at boot;
 * waiting makes them behave exactly like a register write on real hardware,
 * including reset, which must be complete before the driver's next access. :*/

import type { BusAction, BusDevice } from "../../bus.ts";
import { signalEventfd } from "../../sys/calls.ts";
import { MMIO_REG, RegisterImage } from "./regs.ts";

const IDLE = 0;
const POSTED = 1;
const DONE = 2;
/* Int32 slots of the mailbox. */
const STATE = 0;
const DEVICE = 1;
const OFFSET = 2;
const SIZE = 3;
const VALUE = 4;
const STOP = 5;
const VALUE_HIGH = 6;

/** Bytes of shared memory one mailbox needs. */
export const MAILBOX_BYTES = 32;

/** One forwarded register write. */
export interface ForwardedWrite {
  /** Index of the device (window) written. */
  device: number;
  /** Offset within the window. */
  offset: number;
  /** Access size. */
  size: number;
  /** Value written. */
  value: number;
}

/** The vCPU-side sender of forwarded writes. */
export class MailboxClient {
  readonly #box: Int32Array<SharedArrayBuffer>;
  readonly #fd: number;

  /**
   * @param shared MAILBOX_BYTES of shared memory
   * @param eventFd the eventfd the main loop watches
   */
  constructor(shared: SharedArrayBuffer, eventFd: number) {
    this.#box = new Int32Array(shared, 0, MAILBOX_BYTES / 4);
    this.#fd = eventFd;
  }

  /** Posts a write and waits until the main thread applied it (or stop() was called). */
  send(w: ForwardedWrite): void {
    const b = this.#box;
    b[DEVICE] = w.device;
    b[OFFSET] = w.offset;
    b[SIZE] = w.size;
    b[VALUE] = w.value | 0;
    b[VALUE_HIGH] = Math.floor(w.value / 0x1_0000_0000) | 0;
    Atomics.store(b, STATE, POSTED);
    signalEventfd(this.#fd);
    while (Atomics.load(b, STATE) === POSTED && Atomics.load(b, STOP) === 0) {
      Atomics.wait(b, STATE, POSTED, 100);
    }
    Atomics.store(b, STATE, IDLE);
  }
}

/** The main-thread receiver of forwarded writes. */
export class MailboxServer {
  readonly #box: Int32Array<SharedArrayBuffer>;

  /** @param shared the same MAILBOX_BYTES the client uses */
  constructor(shared: SharedArrayBuffer) {
    this.#box = new Int32Array(shared, 0, MAILBOX_BYTES / 4);
  }

  /** Allocates a mailbox. */
  static shared(): SharedArrayBuffer {
    return new SharedArrayBuffer(MAILBOX_BYTES);
  }

  /** Applies a posted write, if any, with `apply`, then releases the vCPU. */
  serve(apply: (w: ForwardedWrite) => void): void {
    const b = this.#box;
    if (Atomics.load(b, STATE) !== POSTED) return;
    try {
      const value = (b[VALUE]! >>> 0) + (b[VALUE_HIGH]! >>> 0) * 0x1_0000_0000;
      apply({ device: b[DEVICE]!, offset: b[OFFSET]!, size: b[SIZE]!, value });
    } finally {
      Atomics.store(b, STATE, DONE);
      Atomics.notify(b, STATE);
    }
  }

  /** Releases a waiting vCPU for good (shutdown). */
  stop(): void {
    Atomics.store(this.#box, STOP, 1);
    Atomics.notify(this.#box, STATE);
  }
}

/** One mailbox per vCPU, served together (V:241): every client rings the same eventfd. */
export class MailboxSet {
  readonly #servers: MailboxServer[];

  /** @param shared one mailbox per vCPU, each from {@link MailboxServer.shared} */
  constructor(shared: readonly SharedArrayBuffer[]) {
    this.#servers = shared.map((m) => new MailboxServer(m));
  }

  /** Applies the write posted in each mailbox, if any, in mailbox order, releasing each vCPU in turn. */
  serve(apply: (w: ForwardedWrite) => void): void {
    for (const s of this.#servers) s.serve(apply);
  }

  /** Releases every waiting vCPU for good (shutdown). */
  stop(): void {
    for (const s of this.#servers) s.stop();
  }
}

/** A virtio-mmio window as seen from the vCPU thread. */
export class MmioProxy implements BusDevice {
  readonly name: string;
  readonly #image: RegisterImage;
  readonly #index: number;
  readonly #mailbox: MailboxClient;

  /**
   * @param name for logs
   * @param index the device's window index
   * @param image the shared register image
   * @param mailbox where state-changing writes go
   */
  constructor(name: string, index: number, image: SharedArrayBuffer, mailbox: MailboxClient) {
    this.name = name;
    this.#index = index;
    this.#image = new RegisterImage(image);
    this.#mailbox = mailbox;
  }

  /** Serves a read from the register image. */
  read(offset: number, size: number): number {
    return this.#image.read(offset, size);
  }

  /** Acknowledges interrupts in place; forwards every other write. */
  write(offset: number, size: number, value: number): BusAction {
    if (offset === MMIO_REG.INTERRUPT_ACK && size === 4) {
      Atomics.and(this.#image.words, MMIO_REG.INTERRUPT_STATUS >> 2, ~value);
      return;
    }
    this.#mailbox.send({ device: this.#index, offset, size, value });
  }
}
