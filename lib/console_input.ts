/*L:510 Keyboard input for the guest. The main loop reads stdin when epoll
 * says it is readable and hands the bytes to the console device. If the
 * device cannot take them all (the guest is not reading), we stop watching
 * stdin and keep the rest, and the device's "space" eventfd tells us when to
 * resume: the heir of the seed's enable_fd. With stdin in raw mode Ctrl-C is
 * just a byte; three of them within a second, and nothing else in between,
 * is the user's way out, as in the original. :*/

import { EPOLL } from "./sys/epoll.ts";
import { read, readAt } from "./sys/calls.ts";
import { bufferAddress } from "./sys/calls.ts";
import type { EventLoop } from "./eventloop.ts";

/** Where console input goes: returns how many bytes it accepted. */
export type ConsoleSink = (bytes: Uint8Array) => number;

const CTRL_C = 0x03;

/** Counts Ctrl-C presses; true on the third within a second. */
export class AbortCounter {
  #count = 0;
  #start = 0;

  /** Feeds input bytes; returns true when the user asked to quit. */
  feed(bytes: Uint8Array, now = performance.now()): boolean {
    for (const b of bytes) {
      if (b !== CTRL_C) {
        this.#count = 0;
        continue;
      }
      if (this.#count === 0 || now - this.#start > 1000) {
        this.#count = 1;
        this.#start = now;
      } else if (++this.#count === 3) {
        this.#count = 0;
        return true;
      }
    }
    return false;
  }
}

/** Pumps stdin (or any readable fd) into a console device. */
export class ConsoleInput {
  readonly #loop: EventLoop;
  readonly #fd: number;
  readonly #spaceFd: number;
  readonly #sink: ConsoleSink;
  readonly #onAbort: () => void;
  readonly #buf = new Uint8Array(4096);
  readonly #drain = new BigUint64Array(1);
  readonly #abort = new AbortCounter();
  #held: Uint8Array = new Uint8Array(0);
  #watching = false;
  #closed = false;

  /**
   * @param loop the main event loop
   * @param fd the input descriptor (0 for stdin)
   * @param spaceFd eventfd the device signals when it has room again
   * @param sink the device's receive function
   * @param onAbort called on three Ctrl-C within a second
   */
  constructor(loop: EventLoop, fd: number, spaceFd: number, sink: ConsoleSink, onAbort: () => void) {
    this.#loop = loop;
    this.#fd = fd;
    this.#spaceFd = spaceFd;
    this.#sink = sink;
    this.#onAbort = onAbort;
    loop.add(spaceFd, EPOLL.IN, () => this.#onSpace());
    this.#watch();
  }

  #watch(): void {
    if (this.#watching || this.#closed) return;
    this.#watching = this.#loop.add(this.#fd, EPOLL.IN, (ev) => this.#onReadable(ev));
    if (!this.#watching) this.#close();
  }

  #unwatch(): void {
    if (!this.#watching) return;
    this.#loop.remove(this.#fd);
    this.#watching = false;
  }

  #close(): void {
    this.#unwatch();
    this.#closed = true;
  }

  #deliver(bytes: Uint8Array): void {
    if (this.#abort.feed(bytes)) {
      this.#onAbort();
      return;
    }
    const n = this.#sink(bytes);
    if (n < bytes.length) {
      this.#held = bytes.slice(n);
      this.#unwatch();
    }
  }

  #onReadable(events: number): void {
    const n = read(this.#fd, this.#buf);
    if (n === 0 || (n < 0 && (events & (EPOLL.HUP | EPOLL.ERR)))) {
      this.#close();
      return;
    }
    if (n > 0) this.#deliver(this.#buf.subarray(0, n));
  }

  #onSpace(): void {
    readAt(this.#spaceFd, bufferAddress(this.#drain), 8);
    if (this.#held.length === 0) return;
    const held = this.#held;
    this.#held = new Uint8Array(0);
    const n = this.#sink(held);
    if (n < held.length) this.#held = held.slice(n);
    else this.#watch();
  }

  /** Stops reading. */
  close(): void {
    this.#close();
    this.#loop.remove(this.#spaceFd);
  }
}
