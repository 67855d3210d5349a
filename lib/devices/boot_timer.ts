/*L:340 The boot timer, after Firecracker's: a page of MMIO at the start of
 * the 32-bit hole, 0xc0000000, where no RAM is (RAM past 3 GiB moves above
 * 4 GiB, L:100) and no other device sits (the virtio windows start at
 * 0xd0000000). A guest that wants to know how long its boot took writes
 * one byte to the page's first address, and the launcher notes the time
 * since it started; the byte is a label the guest chooses. Our /init
 * writes 123, Firecracker's value, with busybox's
 * `devmem 0xc0000000 8 123` as soon as /dev is up, and the test guest
 * writes 1 when its C code starts.
 *
 * It lives on the vCPU thread's bus, so the time is read during the exit
 * itself, not after a trip to the main thread. With --verbose or --timings
 * each write prints one line; a guest writing in a loop gets the first
 * BOOT_TIMER_PRINTED lines and one saying the rest are not shown, and its
 * writes are counted, not kept (L:430). Writes of other widths or to other
 * offsets are ignored, and the page reads as zeros. :*/

import type { BusAction, BusDevice } from "../bus.ts";
import { bootClockMs, bootTimerLine, type BootTimings, processStartMs } from "../timings.ts";

/** The boot timer's guest physical address. */
export const BOOT_TIMER_ADDR = 0xc000_0000;
/** The page it takes on the MMIO bus. */
export const BOOT_TIMER_SIZE = 0x1000;
/** The byte our /init writes, as Firecracker's guests do. */
export const BOOT_TIMER_MAGIC = 123;
/** How many writes one vCPU thread prints before it goes quiet. */
export const BOOT_TIMER_PRINTED = 16;

/** What a {@link BootTimer} does with a write. */
export interface BootTimerOptions {
  /** Where writes are recorded (for --timings). */
  timings?: BootTimings | undefined;
  /** Prints one line (with --verbose or --timings); without it nothing is printed. */
  print?: ((line: string) => void) | undefined;
}

/** The boot-timer page. */
export class BootTimer implements BusDevice {
  readonly name = "boot-timer";
  readonly #timings: BootTimings | undefined;
  readonly #print: ((line: string) => void) | undefined;
  readonly #originMs: number;
  #printed = 0;

  /**
   * @param options where writes are recorded and printed
   */
  constructor(options: BootTimerOptions = {}) {
    this.#timings = options.timings;
    this.#print = options.print;
    this.#originMs = options.timings?.originMs ?? (options.print === undefined ? 0 : processStartMs());
  }

  /** The page reads as zeros. */
  read(_offset: number, _size: number): number {
    return 0;
  }

  /** A byte at offset 0 is a boot-timer write; anything else is ignored. */
  write(offset: number, size: number, value: number): BusAction {
    if (offset !== 0 || size !== 1) return;
    const now = bootClockMs();
    const byte = value & 0xff;
    this.#timings?.bootTimer(byte, now);
    if (this.#print === undefined || this.#printed > BOOT_TIMER_PRINTED) return;
    this.#printed++;
    if (this.#printed <= BOOT_TIMER_PRINTED) this.#print(bootTimerLine(now - this.#originMs, byte));
    else this.#print(`boot timer: more writes; they are no longer printed`);
  }
}
