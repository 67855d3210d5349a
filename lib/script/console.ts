/*L:441 A console a program can hold. With `console: "script"` the
 * machine's serial port is wired not to this process's terminal but to one
 * end of a UNIX socket pair: the vCPU thread writes the UART's output into
 * the guest's end and the keyboard wiring (V:375) reads the guest's input
 * from it, exactly as they would with stdin and stdout. We keep the other
 * end. During a run the event loop reads it whenever the guest has printed
 * something and feeds three consumers: the transcript that waitFor()
 * searches (L:440), the byte stream of `readable`, and any waiter whose
 * pattern just appeared. write() puts bytes into the socket, where the
 * keyboard wiring picks them up as it would a keystroke. When the run
 * ends, whatever the guest wrote last is read out before a waiter is told
 * that the guest stopped; close() (the machine's) closes both ends. :*/

import { close, read, setNonBlocking, socketpair, write } from "../sys/calls.ts";
import { EPOLL } from "../sys/epoll.ts";
import type { EventLoop } from "../eventloop.ts";
import { type ConsoleMatch, describePattern, Transcript } from "./transcript.ts";

export type { ConsoleMatch };

const AF_UNIX = 1;
const SOCK_STREAM = 1;

/** Options for {@link ScriptConsole.waitFor}. */
export interface WaitOptions {
  /** Give up after this many milliseconds (default 60 000). */
  timeoutMs?: number | undefined;
}

/** The default of {@link WaitOptions.timeoutMs}. */
export const DEFAULT_WAIT_MS = 60_000;

interface Waiter {
  pattern: RegExp | string;
  resolve(m: ConsoleMatch): void;
  reject(e: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

/**
 * The guest's serial console, for programs: read it as a stream, wait for text, type into it. Made
 * by `Machine.create({ console: "script", ... })` and owned by that machine.
 */
export class ScriptConsole {
  /** Our end; the guest's end is {@link ScriptConsole.guestFd}. */
  readonly #fd: number;
  readonly #guestFd: number;
  readonly #transcript = new Transcript();
  readonly #buf = new Uint8Array(16 << 10);
  #waiter: Waiter | undefined;
  #stream: ReadableStreamDefaultController<Uint8Array> | undefined;
  #readable: ReadableStream<Uint8Array> | undefined;
  #loop: EventLoop | undefined;
  /** Why there will be no more output, once the run is over. */
  #ended: string | undefined;
  #closed = false;

  /** Makes the socket pair; the machine calls this. */
  constructor() {
    const [ours, guest] = socketpair(AF_UNIX, SOCK_STREAM);
    this.#fd = ours;
    this.#guestFd = guest;
    setNonBlocking(ours);
  }

  /** The descriptor the UART writes to and the keyboard wiring reads from (the machine's business). */
  get guestFd(): number {
    return this.#guestFd;
  }

  /**
   * The guest's console output as bytes, from the first time this is read on (read it before
   * `run()` to see everything). It closes when the run ends.
   */
  get readable(): ReadableStream<Uint8Array> {
    this.#readable ??= new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#stream = controller;
        if (this.#ended !== undefined) controller.close();
      },
      cancel: () => {
        this.#stream = undefined;
      },
    });
    return this.#readable;
  }

  /**
   * Types into the guest's console. Bytes written before `run()` wait in the socket until the
   * guest reads them.
   * @param data text (sent as UTF-8) or bytes
   * @throws Error once the machine is closed
   */
  async write(data: string | Uint8Array): Promise<void> {
    let bytes = typeof data === "string" ? new TextEncoder().encode(data) : data.slice();
    while (bytes.length > 0) {
      if (this.#closed) throw new Error("console: the machine is closed");
      const n = write(this.#fd, bytes);
      if (n > 0) bytes = bytes.subarray(n);
      else await new Promise((r) => setTimeout(r, 5)); // the socket is full: the guest is not reading yet
    }
  }

  /**
   * Waits until `pattern` appears in output no earlier wait has consumed (L:440).
   * @param pattern a regular expression, or a string matched literally
   * @param options how long to wait
   * @returns the match and the text before it
   * @throws Error on timeout or when the run ends first, with the last lines the console showed;
   *   also if another wait is still pending
   */
  waitFor(pattern: RegExp | string, options: WaitOptions = {}): Promise<ConsoleMatch> {
    if (this.#waiter !== undefined) {
      return Promise.reject(new Error("console: waitFor() is already waiting; await it first"));
    }
    const found = this.#transcript.take(pattern);
    if (found !== undefined) return Promise.resolve(found);
    if (this.#ended !== undefined) return Promise.reject(this.#failure(pattern, `never appeared: ${this.#ended}`));
    const ms = options.timeoutMs ?? DEFAULT_WAIT_MS;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiter = undefined;
        reject(this.#failure(pattern, `did not appear within ${ms} ms`));
      }, ms);
      this.#waiter = { pattern, resolve, reject, timer };
    });
  }

  /**
   * The last lines the console showed (read by a wait or not).
   * @param n how many (default 20)
   */
  lastLines(n = 20): string[] {
    return this.#transcript.lastLines(n);
  }

  /** The run starts: the loop reads our end from now on. */
  attach(loop: EventLoop): void {
    this.#loop = loop;
    this.#ended = undefined;
    loop.add(this.#fd, EPOLL.IN, () => this.#drain());
  }

  /**
   * The run is over and every vCPU is out of KVM_RUN: read what the guest wrote last, then end
   * the stream and any wait, saying why (e.g. "the run ended: guest powered off").
   */
  detach(why: string): void {
    this.#loop?.remove(this.#fd);
    this.#loop = undefined;
    this.#drain();
    this.#ended = why;
    this.#stream?.close();
    this.#stream = undefined;
    const w = this.#waiter;
    if (w !== undefined) {
      this.#waiter = undefined;
      clearTimeout(w.timer);
      w.reject(this.#failure(w.pattern, `never appeared: ${why}`));
    }
  }

  /** Closes both ends (the machine's close() calls this, after the run). Idempotent. */
  close(): void {
    if (this.#closed) return;
    if (this.#ended === undefined) this.detach("the machine was closed");
    this.#closed = true;
    close(this.#fd);
    close(this.#guestFd);
  }

  #drain(): void {
    if (this.#closed) return;
    for (;;) {
      const n = read(this.#fd, this.#buf);
      if (n <= 0) return;
      const chunk = this.#buf.slice(0, n);
      this.#transcript.push(chunk);
      this.#stream?.enqueue(chunk);
      const w = this.#waiter;
      const found = w && this.#transcript.take(w.pattern);
      if (w && found) {
        this.#waiter = undefined;
        clearTimeout(w.timer);
        w.resolve(found);
      }
    }
  }

  #failure(pattern: RegExp | string, why: string): Error {
    const tail = this.#transcript.lastLines(20).map((l) => `  | ${l}`).join("\n");
    return new Error(
      `console: ${describePattern(pattern)} ${why}; the last lines it showed:\n${tail || "  (nothing)"}`,
    );
  }
}
