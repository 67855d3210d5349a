/*L:510 Keyboard input for the guest. The main loop reads stdin when epoll
 * says it is readable and hands the bytes to one console: the virtio
 * console if the kernel's last console= names hvc0, the UART otherwise. If
 * the console cannot take them all (the guest is not reading), we stop
 * watching stdin and keep the rest, and the console tells us through
 * resume() when it has room: the heir of the seed's enable_fd. With stdin in
 * raw mode Ctrl-C is just a byte; three of them within a second, and nothing
 * else in between, is the user's way out, as in the original. :*/

import { EPOLL } from "./sys/epoll.ts";
import { read } from "./sys/calls.ts";
import type { EventLoop } from "./eventloop.ts";

/** Where console input goes: returns how many bytes it accepted. */
export type ConsoleSink = (bytes: Uint8Array) => number;

/** Which console gets the keyboard. */
export type InputTarget = "hvc0" | "serial";

const CTRL_C = 0x03;

/*V:374 Which console is the user's? Linux writes its messages to every
 * console= it is given, but /dev/console, where init reads and writes, is
 * the last one. So the last console= decides: if it names hvc0 (options
 * after a comma allowed), keystrokes go to the virtio console; anything
 * else, or no console= at all, and they go to the serial port, as they
 * always did. :*/

/**
 * The console that should get keyboard input, from the kernel command line.
 * @param cmdline the whole kernel command line
 * @returns "hvc0" if the last `console=` names hvc0, else "serial"
 */
export function consoleInputTarget(cmdline: string): InputTarget {
  let last: string | undefined;
  for (const word of cmdline.split(/\s+/)) {
    if (word.startsWith("console=")) last = word.slice("console=".length);
  }
  return last?.split(",")[0] === "hvc0" ? "hvc0" : "serial";
}

/** Counts Ctrl-C presses; true on the third within a second. */
export class AbortCounter {
  #count = 0;
  #start = 0;

  /**
   * Feeds input bytes.
   * @param bytes what was typed
   * @param now the time in ms (default performance.now())
   * @returns true when the user asked to quit
   */
  feed(bytes: Uint8Array, now: number = performance.now()): boolean {
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

/** Pumps stdin (or any readable fd) into a console. */
export class ConsoleInput {
  readonly #loop: EventLoop;
  readonly #fd: number;
  readonly #sink: ConsoleSink;
  readonly #onAbort: () => void;
  readonly #buf = new Uint8Array(4096);
  readonly #abort = new AbortCounter();
  #held: Uint8Array = new Uint8Array(0);
  #watching = false;
  #closed = false;

  /**
   * Starts watching `fd`.
   * @param loop the main event loop
   * @param fd the input descriptor (0 for stdin)
   * @param sink the console's receive function
   * @param onAbort called on three Ctrl-C within a second
   */
  constructor(loop: EventLoop, fd: number, sink: ConsoleSink, onAbort: () => void) {
    this.#loop = loop;
    this.#fd = fd;
    this.#sink = sink;
    this.#onAbort = onAbort;
    this.#watch();
  }

  /** Bytes read but not yet taken by the console. */
  get held(): number {
    return this.#held.length;
  }

  /** True while stdin is in the epoll set. */
  get watching(): boolean {
    return this.#watching;
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
    if (this.#held.length > 0) {
      const all = new Uint8Array(this.#held.length + bytes.length);
      all.set(this.#held);
      all.set(bytes, this.#held.length);
      this.#held = all;
      this.#unwatch();
      return;
    }
    const n = this.#sink(bytes);
    if (n < bytes.length) {
      this.#held = bytes.slice(n);
      this.#unwatch();
    }
  }

  #onReadable(events: number): void {
    let n: number;
    try {
      n = read(this.#fd, this.#buf);
    } catch {
      this.#close();
      return;
    }
    if (n === 0 || (n < 0 && (events & (EPOLL.HUP | EPOLL.ERR)))) {
      this.#close();
      return;
    }
    if (n > 0) this.#deliver(this.#buf.subarray(0, n));
  }

  /**
   * The console has room again: offers the held bytes, and reads stdin again once they are all taken.
   * Safe to call at any time, also from inside the sink.
   */
  resume(): void {
    if (this.#held.length > 0) {
      const held = this.#held;
      this.#held = new Uint8Array(0);
      const n = this.#sink(held);
      if (n < held.length) {
        this.#held = held.subarray(n);
        this.#unwatch();
        return;
      }
    }
    this.#watch();
  }

  /** Stops reading. */
  close(): void {
    this.#close();
  }
}
