/*L:320 The first console every x86 kernel knows is the 8250 UART at port
 * 0x3f8 (COM1), raising IRQ 4. We model the 16550A closely enough for Linux's
 * serial driver: the divisor latch behind LCR.DLAB, the scratch register its
 * probe writes and reads back, loopback mode for its autoconfig, a FIFO flag
 * in IIR, and the two interrupts that matter: "transmitter empty" and "data
 * received". Transmission is instant: a byte written to THR goes straight to
 * the output, so THR is always empty again by the time the guest looks.
 *
 * The register file lives in a SharedArrayBuffer. The vCPU Worker executes
 * the guest's register accesses; the main thread's event loop feeds keyboard
 * input into the receive ring. A small spin lock keeps the two consistent,
 * and whichever thread changes the state recomputes the interrupt line. :*/

import type { BusAction, BusDevice } from "../bus.ts";

/** COM1's port base. */
export const COM1_BASE = 0x3f8;
/** COM1's ISA interrupt. */
export const COM1_IRQ = 4;
/** Bytes of shared state a serial port needs. */
export const SERIAL_SHARED_BYTES = 64 + 4096;

const RX_CAPACITY = 4096;
const RING = 64;

/* Int32 slots in the shared state. */
const LOCK = 0;
const IER = 1;
const LCR = 2;
const MCR = 3;
const SCR = 4;
const DLL = 5;
const DLM = 6;
const FCR = 7;
const THRE_PENDING = 8;
const IRQ_LEVEL = 9;
const RX_HEAD = 10;
const RX_TAIL = 11;
const WANT_SPACE = 12;

const IER_RDI = 0x01;
const IER_THRI = 0x02;
const IIR_NONE = 0x01;
const IIR_THRI = 0x02;
const IIR_RDI = 0x04;
const IIR_FIFO = 0xc0;
const LCR_DLAB = 0x80;
const MCR_LOOP = 0x10;
const LSR_DR = 0x01;
const LSR_THRE = 0x20;
const LSR_TEMT = 0x40;
const MSR_DCD_DSR_CTS = 0xb0;

/** How the port reaches the outside world (set per thread). */
export interface SerialWiring {
  /** Receives each transmitted byte. */
  output?: (byte: number) => void;
  /** Drives the interrupt line. */
  irq?: (level: boolean) => void;
  /** Told when the receive ring has room again after being full. */
  space?: () => void;
}

/** A 16550A-style UART whose state is shared between threads. */
export class Serial8250 implements BusDevice {
  readonly name = "serial";
  readonly #s: Int32Array<SharedArrayBuffer>;
  readonly #rx: Uint8Array<SharedArrayBuffer>;
  readonly #wiring: SerialWiring;

  /**
   * @param shared SERIAL_SHARED_BYTES of shared memory (zeroed on first use)
   * @param wiring this thread's output, interrupt and flow-control hooks
   */
  constructor(shared: SharedArrayBuffer, wiring: SerialWiring = {}) {
    if (shared.byteLength < SERIAL_SHARED_BYTES) throw new RangeError("serial shared state too small");
    this.#s = new Int32Array(shared, 0, RING / 4);
    this.#rx = new Uint8Array(shared, RING, RX_CAPACITY);
    this.#wiring = wiring;
  }

  /** Allocates fresh shared state for one port. */
  static sharedState(): SharedArrayBuffer {
    return new SharedArrayBuffer(SERIAL_SHARED_BYTES);
  }

  #lock(): void {
    while (Atomics.compareExchange(this.#s, LOCK, 0, 1) !== 0) {
      Atomics.wait(this.#s, LOCK, 1, 1);
    }
  }

  #unlock(): void {
    Atomics.store(this.#s, LOCK, 0);
    Atomics.notify(this.#s, LOCK, 1);
  }

  #rxCount(): number {
    return (this.#s[RX_TAIL]! - this.#s[RX_HEAD]! + RX_CAPACITY * 2) % (RX_CAPACITY * 2);
  }

  #iir(): number {
    const s = this.#s;
    const fifo = (s[FCR]! & 1) ? IIR_FIFO : 0;
    if ((s[IER]! & IER_RDI) && this.#rxCount() > 0) return IIR_RDI | fifo;
    if ((s[IER]! & IER_THRI) && s[THRE_PENDING]) return IIR_THRI | fifo;
    return IIR_NONE | fifo;
  }

  /** Recomputes the interrupt line; called with the lock held. */
  #updateIrq(): void {
    const level = (this.#iir() & IIR_NONE) === 0 ? 1 : 0;
    if (this.#s[IRQ_LEVEL] === level) return;
    this.#s[IRQ_LEVEL] = level;
    this.#wiring.irq?.(level === 1);
  }

  #pushRx(byte: number): boolean {
    if (this.#rxCount() >= RX_CAPACITY) return false;
    const tail = this.#s[RX_TAIL]!;
    this.#rx[tail % RX_CAPACITY] = byte;
    this.#s[RX_TAIL] = (tail + 1) % (RX_CAPACITY * 2);
    return true;
  }

  #popRx(): number {
    if (this.#rxCount() === 0) return 0;
    const head = this.#s[RX_HEAD]!;
    const byte = this.#rx[head % RX_CAPACITY]!;
    this.#s[RX_HEAD] = (head + 1) % (RX_CAPACITY * 2);
    if (this.#s[WANT_SPACE]) {
      this.#s[WANT_SPACE] = 0;
      this.#wiring.space?.();
    }
    return byte;
  }

  /**
   * Queues input bytes for the guest (main thread). Returns how many were
   * taken; when fewer than offered, the ring is full and `space` will be
   * called once the guest has read some.
   */
  receive(bytes: Uint8Array): number {
    this.#lock();
    try {
      let n = 0;
      while (n < bytes.length && this.#pushRx(bytes[n]!)) n++;
      if (n < bytes.length) this.#s[WANT_SPACE] = 1;
      this.#updateIrq();
      return n;
    } finally {
      this.#unlock();
    }
  }

  /** Bytes waiting in the receive ring. */
  get pending(): number {
    return this.#rxCount();
  }

  /** A guest read of register `offset` (0-7). */
  read(offset: number, _size: number): number {
    this.#lock();
    try {
      const s = this.#s;
      const dlab = (s[LCR]! & LCR_DLAB) !== 0;
      switch (offset) {
        case 0: {
          if (dlab) return s[DLL]!;
          const byte = this.#popRx();
          this.#updateIrq();
          return byte;
        }
        case 1:
          return dlab ? s[DLM]! : s[IER]!;
        case 2: {
          const iir = this.#iir();
          if ((iir & 0x0f) === IIR_THRI) s[THRE_PENDING] = 0;
          this.#updateIrq();
          return iir;
        }
        case 3:
          return s[LCR]!;
        case 4:
          return s[MCR]!;
        case 5:
          return LSR_THRE | LSR_TEMT | (this.#rxCount() > 0 ? LSR_DR : 0);
        case 6:
          return this.#msr();
        case 7:
          return s[SCR]!;
        default:
          return 0xff;
      }
    } finally {
      this.#unlock();
    }
  }

  /** Modem status: in loopback mode it mirrors MCR, as the driver's probe expects. */
  #msr(): number {
    const mcr = this.#s[MCR]!;
    if (!(mcr & MCR_LOOP)) return MSR_DCD_DSR_CTS;
    return ((mcr & 0x01) << 5) | ((mcr & 0x02) << 3) | ((mcr & 0x04) << 4) | ((mcr & 0x08) << 4);
  }

  /** A guest write of `value` to register `offset` (0-7). */
  write(offset: number, _size: number, value: number): BusAction {
    const v = value & 0xff;
    let out = -1;
    let space = false;
    this.#lock();
    try {
      const s = this.#s;
      const dlab = (s[LCR]! & LCR_DLAB) !== 0;
      switch (offset) {
        case 0:
          if (dlab) s[DLL] = v;
          else {
            if (s[MCR]! & MCR_LOOP) this.#pushRx(v);
            else out = v;
            s[THRE_PENDING] = 1;
          }
          break;
        case 1:
          if (dlab) s[DLM] = v;
          else {
            if ((v & IER_THRI) && !(s[IER]! & IER_THRI)) s[THRE_PENDING] = 1;
            s[IER] = v & 0x0f;
          }
          break;
        case 2:
          if (v & 0x02) {
            s[RX_HEAD] = s[RX_TAIL]!;
            space = s[WANT_SPACE] !== 0;
            s[WANT_SPACE] = 0;
          }
          s[FCR] = v & 0xc1;
          break;
        case 3:
          s[LCR] = v;
          break;
        case 4:
          s[MCR] = v & 0x1f;
          break;
        case 7:
          s[SCR] = v;
          break;
      }
      this.#updateIrq();
    } finally {
      this.#unlock();
    }
    if (out >= 0) this.#wiring.output?.(out);
    if (space) this.#wiring.space?.();
  }
}
