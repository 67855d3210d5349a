/*S:150 A guest console wants every keystroke as it is typed, Ctrl-C
 * included, so stdin goes raw: no line editing, no echo, no signals. The
 * user's terminal settings are saved first and put back on every way out;
 * restore() is idempotent so every exit path may call it. struct termios on
 * x86_64 glibc is 60 bytes with c_lflag at offset 12. :*/

import { lastErrno, libc } from "./libc.ts";
import { SysError } from "./errno.ts";
import { ioctl } from "./calls.ts";

const TERMIOS_SIZE = 60;
const C_LFLAG = 12;
const ISIG = 0x1;
const ICANON = 0x2;
const ECHO = 0x8;
const IEXTEN = 0x8000;
const TCSANOW = 0;

/** Saved terminal settings for one fd, with a raw mode switch. */
export class RawTerminal {
  readonly #fd: number;
  #saved: Uint8Array<ArrayBuffer> | undefined;

  /** @param fd the terminal's descriptor (normally 0) */
  constructor(fd = 0) {
    this.#fd = fd;
  }

  /** True while raw mode is on and not yet restored. */
  get active(): boolean {
    return this.#saved !== undefined;
  }

  /**
   * Saves the settings and turns off canonical mode, echo and signals.
   * Returns false (and changes nothing) when the fd is not a terminal.
   */
  enter(): boolean {
    if (this.#saved !== undefined) return true;
    const saved = new Uint8Array(TERMIOS_SIZE);
    if (libc.tcgetattr(this.#fd, Deno.UnsafePointer.of(saved)) < 0) return false;
    const raw = saved.slice();
    const view = new DataView(raw.buffer);
    view.setUint32(C_LFLAG, view.getUint32(C_LFLAG, true) & ~(ISIG | ICANON | ECHO | IEXTEN), true);
    if (libc.tcsetattr(this.#fd, TCSANOW, Deno.UnsafePointer.of(raw)) < 0) {
      throw new SysError("tcsetattr", lastErrno(), `fd ${this.#fd}`);
    }
    this.#saved = saved;
    return true;
  }

  /** Puts the saved settings back; safe to call any number of times. */
  restore(): void {
    const saved = this.#saved;
    if (saved === undefined) return;
    this.#saved = undefined;
    libc.tcsetattr(this.#fd, TCSANOW, Deno.UnsafePointer.of(saved));
  }
}

const TIOCGWINSZ = 0x5413;

/** A terminal's size in characters. */
export interface WindowSize {
  /** Columns. */
  cols: number;
  /** Rows. */
  rows: number;
}

/**
 * The window size of terminal `fd` (TIOCGWINSZ).
 * @param fd a descriptor that may be a terminal
 * @returns columns and rows, or undefined if `fd` is not a terminal
 */
export function windowSize(fd: number): WindowSize | undefined {
  const ws = new Uint16Array(4);
  try {
    ioctl(fd, TIOCGWINSZ, ws, "TIOCGWINSZ");
  } catch {
    return undefined;
  }
  return { rows: ws[0]!, cols: ws[1]! };
}
