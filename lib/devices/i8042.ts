/*L:330 The PC keyboard controller matters to us for one command: writing
 * 0xFE to its command port pulses the CPU reset line, which is how Linux
 * reboots a PC without ACPI. We answer the few other commands a kernel's
 * probe sends (read/write the command byte, self-test, port enables) so the
 * probe concludes there is a controller with nothing attached, and we turn
 * the reset pulse into a clean end of the VM. :*/

import type { BusAction, BusDevice } from "../bus.ts";

/** The data port. */
export const I8042_DATA_PORT = 0x60;
/** The command/status port. */
export const I8042_COMMAND_PORT = 0x64;

const STATUS_OBF = 0x01;
const STATUS_SYS = 0x04;
const STATUS_CMD = 0x08;
const CMD_READ_CTR = 0x20;
const CMD_WRITE_CTR = 0x60;
const CMD_SELF_TEST = 0xaa;
const CMD_PULSE_RESET = 0xfe;

/*L:331 With several vCPUs the guest may send a command on one CPU and read
 * the answer, or write the command byte, on another, so the controller's
 * state lives in shared memory, one copy for every vCPU thread, and each
 * access takes a small spin lock (the same kind as the UART's, L:320). The
 * output buffer holds at most two bytes: every command answers with one. :*/

/* Int32 slots of the shared state. */
const LOCK = 0;
const CTR = 1;
const PENDING = 2;
const LAST_COMMAND = 3;
const OUT_COUNT = 4;
const OUT = 5;
const OUT_CAPACITY = 2;

/** Bytes of shared state one controller needs. */
export const I8042_SHARED_BYTES = (OUT + OUT_CAPACITY) * 4;

/** An i8042 with no keyboard or mouse, whose reset line ends the VM. */
export class I8042 implements BusDevice {
  readonly name = "i8042";
  readonly #s: Int32Array<SharedArrayBuffer>;

  /** @param shared {@link I8042_SHARED_BYTES} from {@link I8042.sharedState}, the same for every vCPU thread (default: a fresh one) */
  constructor(shared: SharedArrayBuffer = I8042.sharedState()) {
    if (shared.byteLength < I8042_SHARED_BYTES) throw new RangeError("i8042 shared state too small");
    this.#s = new Int32Array(shared, 0, I8042_SHARED_BYTES / 4);
  }

  /** Allocates the state of a controller just out of reset (command byte 0x45, nothing to read). */
  static sharedState(): SharedArrayBuffer {
    const shared = new SharedArrayBuffer(I8042_SHARED_BYTES);
    new Int32Array(shared)[CTR] = 0x45;
    return shared;
  }

  #locked<T>(f: (s: Int32Array<SharedArrayBuffer>) => T): T {
    const s = this.#s;
    while (Atomics.compareExchange(s, LOCK, 0, 1) !== 0) Atomics.wait(s, LOCK, 1, 1);
    try {
      return f(s);
    } finally {
      Atomics.store(s, LOCK, 0);
      Atomics.notify(s, LOCK, 1);
    }
  }

  /** Decodes accesses at I8042_DATA_PORT (offset 0) and +4 (offset 4). */
  read(offset: number, _size: number): number {
    if (offset !== 0 && offset !== 4) return 0xff;
    return this.#locked((s) => {
      const count = s[OUT_COUNT]!;
      if (offset === 4) return (count ? STATUS_OBF : 0) | STATUS_SYS | (s[LAST_COMMAND] ? STATUS_CMD : 0);
      if (count === 0) return 0;
      const byte = s[OUT]!;
      s[OUT] = s[OUT + 1]!;
      s[OUT_COUNT] = count - 1;
      return byte;
    });
  }

  /** Handles a command (offset 4) or data byte (offset 0). */
  write(offset: number, _size: number, value: number): BusAction {
    const v = value & 0xff;
    return this.#locked((s): BusAction => {
      const push = (b: number) => {
        if (s[OUT_COUNT]! < OUT_CAPACITY) s[OUT + s[OUT_COUNT]!] = b;
        s[OUT_COUNT] = Math.min(s[OUT_COUNT]! + 1, OUT_CAPACITY);
      };
      if (offset === 4) {
        s[LAST_COMMAND] = 1;
        s[PENDING] = 0;
        switch (v) {
          case CMD_READ_CTR:
            push(s[CTR]!);
            break;
          case CMD_WRITE_CTR:
            s[PENDING] = CMD_WRITE_CTR;
            break;
          case CMD_SELF_TEST:
            push(0x55);
            break;
          case CMD_PULSE_RESET:
            return "reset";
        }
        return;
      }
      if (offset === 0) {
        s[LAST_COMMAND] = 0;
        if (s[PENDING] === CMD_WRITE_CTR) s[CTR] = v;
        s[PENDING] = 0;
      }
    });
  }
}

/** Port 0x80, the POST-code port Linux writes for I/O delays: a silent sink. */
export class PostCodePort implements BusDevice {
  readonly name = "post";
  /** Last value written, for debugging. */
  last = 0;
  /** Reads as all ones, like an empty slot. */
  read(): number {
    return 0xff;
  }
  /** Remembers the code. */
  write(_offset: number, _size: number, value: number): BusAction {
    this.last = value & 0xff;
  }
}
