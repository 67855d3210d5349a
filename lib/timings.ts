/*L:430 Where a boot's time goes. With --timings the launcher notes when
 * each phase of its life ended and prints them at exit, as milliseconds
 * since the process started: the runtime up (the main module and its
 * imports evaluated), the vCPU Worker's modules loaded, the VM built, the
 * kernel entered (the boot vCPU's first KVM_RUN), the first byte on either
 * console, each write to the boot timer (L:340), the guest stopped, and
 * everything torn down.
 *
 * "Since the process started" needs a start. Deno's performance.timeOrigin
 * is not it: the main isolate's origin is taken after Deno has read and
 * compiled the program, tens of milliseconds in, and a Worker's origin is
 * its own isolate's. The kernel knows: field 22 of /proc/self/stat is the
 * process's start in clock ticks (USER_HZ, 100 a second) on the boot-time
 * clock, so every mark is read from CLOCK_BOOTTIME, which any thread can
 * read and which agrees between threads to the nanosecond. The start is
 * known only to the tick: every figure may be up to 10 ms late, all by the
 * same amount, so differences between phases are exact.
 *
 * Several threads mark phases (the vCPU threads the kernel's entry, the
 * serial console's first byte and the boot timer; the main thread hvc0's
 * first byte and the rest), so the marks live in a SharedArrayBuffer. A
 * phase is marked once: its state word goes from FREE to CLAIMED by
 * compare-and-exchange, so of two threads racing for "first console byte"
 * exactly one writes the time, and then to WRITTEN, which is what a reader
 * waits for, so it never sees half a number. Boot-timer writes take the
 * next slot by an atomic add, and only the first BOOT_TIMER_KEPT are kept:
 * a guest writing in a loop costs us a counter, nothing more. :*/

import { libc } from "./sys/libc.ts";

/** The phases, in the order a boot passes them. */
export const PHASES = [
  "runtime up",
  "modules loaded",
  "VM built",
  "kernel entered",
  "first console byte",
  "guest stopped",
  "torn down",
] as const;

/** One phase of a launcher's life. */
export type Phase = typeof PHASES[number];

/** How many boot-timer writes are kept (later ones are only counted). */
export const BOOT_TIMER_KEPT = 16;

const CLOCK_BOOTTIME = 7;
/** Linux reports process times in USER_HZ ticks, 100 a second on x86. */
const USER_HZ = 100;
/** The write counter stops here, so a guest writing for days cannot wrap it. */
const COUNT_CAP = 0x4000_0000;

/* Int32 words, then Float64 slots from byte FLOATS_AT. */
const STATE = 0; // one word per phase
const COUNT = 8; // boot-timer writes seen
const READY = 16; // one word per kept boot-timer write
const FLOATS_AT = 128;
const ORIGIN = 0; // the process's start
const TIME = 1; // one slot per phase
const TIMER_AT = 8; // one slot per kept write
const TIMER_VALUE = TIMER_AT + BOOT_TIMER_KEPT;
const SIZE = FLOATS_AT + (TIMER_VALUE + BOOT_TIMER_KEPT) * 8;

const FREE = 0;
const CLAIMED = 1;
const WRITTEN = 2;

const ts = new BigInt64Array(2);

/**
 * Now, in ms on CLOCK_BOOTTIME (since the host booted): the clock of
 * /proc/<pid>/stat's start time, the same on every thread.
 * @returns milliseconds, to the nanosecond
 */
export function bootClockMs(): number {
  if (libc.clock_gettime(CLOCK_BOOTTIME, ts) !== 0) throw new Error("clock_gettime(CLOCK_BOOTTIME) failed");
  return Number(ts[0]!) * 1000 + Number(ts[1]!) / 1e6;
}

/**
 * When this process started, in ms on {@link bootClockMs}'s clock, to the kernel's 10 ms tick.
 * @param stat the text of /proc/self/stat (read if not given)
 * @returns the start (field 22, starttime) in ms
 * @throws Error if the text has no start time
 */
export function processStartMs(stat: string = Deno.readTextFileSync("/proc/self/stat")): number {
  // The command name (field 2) is in parentheses and may hold spaces or ')': fields 3.. follow the last ')'.
  const ticks = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]);
  if (!Number.isSafeInteger(ticks) || ticks < 0) throw new Error("no start time in /proc/self/stat");
  return ticks * 1000 / USER_HZ;
}

/** A boot-timer write as kept. */
export interface BootTimerMark {
  /** ms since the launcher started. */
  ms: number;
  /** The byte the guest wrote. */
  value: number;
}

/** What a run's timings came to. */
export interface TimingsReport {
  /** Each phase with its time in ms since the launcher started, or null if it was not reached. */
  phases: Array<{ phase: Phase; ms: number | null }>;
  /** The kept boot-timer writes, in the order they took their slots. */
  bootTimer: BootTimerMark[];
  /** Every boot-timer write seen, kept or not. */
  bootTimerWrites: number;
}

/** The phase marks of one launcher run, shared between its threads. */
export class BootTimings {
  /** The marks: hand this to another thread and {@link BootTimings.attach} it there. */
  readonly shared: SharedArrayBuffer;
  readonly #words: Int32Array<SharedArrayBuffer>;
  readonly #slots: Float64Array<SharedArrayBuffer>;

  private constructor(shared: SharedArrayBuffer) {
    if (shared.byteLength !== SIZE) throw new RangeError(`timings: shared buffer of ${shared.byteLength} bytes`);
    this.shared = shared;
    this.#words = new Int32Array(shared, 0, FLOATS_AT / 4);
    this.#slots = new Float64Array(shared, FLOATS_AT);
  }

  /**
   * Starts the marks of this process, with its start read from /proc/self/stat.
   * @param originMs the start, in ms on {@link bootClockMs}'s clock (for tests)
   * @returns marks with nothing marked yet
   */
  static start(originMs: number = processStartMs()): BootTimings {
    const t = new BootTimings(new SharedArrayBuffer(SIZE));
    t.#slots[ORIGIN] = originMs;
    return t;
  }

  /**
   * The marks another thread started.
   * @param shared their {@link BootTimings.shared}
   * @returns a view of the same marks
   */
  static attach(shared: SharedArrayBuffer): BootTimings {
    return new BootTimings(shared);
  }

  /** The process's start, in ms on {@link bootClockMs}'s clock. */
  get originMs(): number {
    return this.#slots[ORIGIN]!;
  }

  /**
   * Marks `phase` as ended at `atMs`, unless it was marked already.
   * @param phase the phase
   * @param atMs when, on {@link bootClockMs}'s clock (default now)
   * @returns true if this call marked it
   */
  mark(phase: Phase, atMs: number = bootClockMs()): boolean {
    const i = PHASES.indexOf(phase);
    if (Atomics.load(this.#words, STATE + i) !== FREE) return false;
    if (Atomics.compareExchange(this.#words, STATE + i, FREE, CLAIMED) !== FREE) return false;
    this.#slots[TIME + i] = atMs;
    Atomics.store(this.#words, STATE + i, WRITTEN);
    return true;
  }

  /**
   * Whether `phase` has been marked (cheap: one atomic load).
   * @param phase the phase
   * @returns true once some thread has claimed it
   */
  marked(phase: Phase): boolean {
    return Atomics.load(this.#words, STATE + PHASES.indexOf(phase)) !== FREE;
  }

  /**
   * Records a boot-timer write.
   * @param value the byte written
   * @param atMs when, on {@link bootClockMs}'s clock (default now)
   * @returns true if it was kept (one of the first {@link BOOT_TIMER_KEPT})
   */
  bootTimer(value: number, atMs: number = bootClockMs()): boolean {
    if (Atomics.load(this.#words, COUNT) >= COUNT_CAP) return false;
    const slot = Atomics.add(this.#words, COUNT, 1);
    if (slot >= BOOT_TIMER_KEPT) return false;
    this.#slots[TIMER_AT + slot] = atMs;
    this.#slots[TIMER_VALUE + slot] = value;
    Atomics.store(this.#words, READY + slot, WRITTEN);
    return true;
  }

  /**
   * The marks so far, in ms since the launcher started.
   * @returns every phase (null where not reached) and the kept boot-timer writes
   */
  report(): TimingsReport {
    const since = (ms: number) => ms - this.originMs;
    const phases = PHASES.map((phase, i) => ({
      phase,
      ms: Atomics.load(this.#words, STATE + i) === WRITTEN ? since(this.#slots[TIME + i]!) : null,
    }));
    const bootTimer: BootTimerMark[] = [];
    for (let slot = 0; slot < BOOT_TIMER_KEPT; slot++) {
      if (Atomics.load(this.#words, READY + slot) !== WRITTEN) continue;
      bootTimer.push({ ms: since(this.#slots[TIMER_AT + slot]!), value: this.#slots[TIMER_VALUE + slot]! });
    }
    return { phases, bootTimer, bootTimerWrites: Math.min(Atomics.load(this.#words, COUNT), COUNT_CAP) };
  }
}

/*L:431 The printed forms. A boot-timer write is one line the moment it
 * happens (with --verbose or --timings), and the table at exit has one
 * line per phase and per kept write, in the order they happened, then the
 * phases never reached. Both are parsed back by the tests and the
 * benchmark, so the format lives here, next to its parser. :*/

const ms1 = (ms: number) => ms.toFixed(1);

/**
 * The line a boot-timer write prints (without the "lguest: " prefix).
 * @param ms ms since the launcher started
 * @param value the byte the guest wrote
 * @returns e.g. "boot timer: 412.5 ms since the launcher started (value 123)"
 */
export function bootTimerLine(ms: number, value: number): string {
  return `boot timer: ${ms1(ms)} ms since the launcher started (value ${value})`;
}

/**
 * Finds the boot-timer lines in a launcher's stderr.
 * @param text stderr, or any text holding such lines
 * @returns each write, in order
 */
export function parseBootTimerLines(text: string): BootTimerMark[] {
  const re = /boot timer: ([0-9]+(?:\.[0-9]+)?) ms since the launcher started \(value ([0-9]+)\)/g;
  return [...text.matchAll(re)].map((m) => ({ ms: Number(m[1]), value: Number(m[2]) }));
}

/** The heading of the table {@link formatTimings} prints. */
export const TIMINGS_HEADING = "timings, in ms since the launcher started (its start is known to 10 ms):";

/**
 * The table printed at exit by --timings (lines without the "lguest: " prefix).
 * @param report what {@link BootTimings.report} returned
 * @returns the heading, then one line per reached phase and kept write in time order, then the rest
 */
export function formatTimings(report: TimingsReport): string[] {
  const rows: Array<{ ms: number; text: string }> = [];
  for (const { phase, ms } of report.phases) if (ms !== null) rows.push({ ms, text: phase });
  for (const { ms, value } of report.bootTimer) rows.push({ ms, text: `boot timer (value ${value})` });
  // A stable sort: marks taken at the same instant keep the boot's order.
  rows.sort((a, b) => a.ms - b.ms);
  const lines = [TIMINGS_HEADING, ...rows.map((r) => `${ms1(r.ms).padStart(10)}  ${r.text}`)];
  for (const { phase, ms } of report.phases) if (ms === null) lines.push(`${"-".padStart(10)}  ${phase} (not reached)`);
  const dropped = report.bootTimerWrites - report.bootTimer.length;
  if (dropped > 0) lines.push(`${"-".padStart(10)}  boot timer: ${dropped} later writes not kept`);
  return lines;
}
