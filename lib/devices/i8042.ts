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

/** An i8042 with no keyboard or mouse, whose reset line ends the VM. */
export class I8042 implements BusDevice {
  readonly name = "i8042";
  #ctr = 0x45;
  #output: number[] = [];
  #pending = 0;
  #lastCommand = false;

  /** Decodes accesses at I8042_DATA_PORT (offset 0) and +4 (offset 4). */
  read(offset: number, _size: number): number {
    if (offset === 4) {
      return (this.#output.length ? STATUS_OBF : 0) | STATUS_SYS | (this.#lastCommand ? STATUS_CMD : 0);
    }
    if (offset === 0) return this.#output.shift() ?? 0;
    return 0xff;
  }

  /** Handles a command (offset 4) or data byte (offset 0). */
  write(offset: number, _size: number, value: number): BusAction {
    const v = value & 0xff;
    if (offset === 4) {
      this.#lastCommand = true;
      this.#pending = 0;
      switch (v) {
        case CMD_READ_CTR:
          this.#output.push(this.#ctr);
          break;
        case CMD_WRITE_CTR:
          this.#pending = CMD_WRITE_CTR;
          break;
        case CMD_SELF_TEST:
          this.#output.push(0x55);
          break;
        case CMD_PULSE_RESET:
          return "reset";
      }
      return;
    }
    if (offset === 0) {
      this.#lastCommand = false;
      if (this.#pending === CMD_WRITE_CTR) this.#ctr = v;
      this.#pending = 0;
    }
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
