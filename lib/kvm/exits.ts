/*L:310 Every return from KVM_RUN lands here. This function is the whole
 * policy of the vCPU thread: port and MMIO accesses go to the bus, a triple
 * fault, a keyboard-controller reset or an ACPI power-off ends the VM
 * cleanly, and anything we did not expect (an emulation failure, a failed
 * entry, an exit reason we do not know) stops the VM with one line that
 * says what happened and where.
 * It reads the kvm_run page through a DataView and never calls into KVM, so
 * the tests feed it hand-made exits without a VM. :*/

import type { Bus } from "../bus.ts";
import type { RunEnd } from "../vcpu_protocol.ts";
import { KVM_CONST, KVM_EXIT, KVM_SYSTEM_EVENT } from "./ioctl.ts";
import { getField, KVM_RUN } from "./structs.ts";

/** What the run loop should do after an exit. */
export type ExitResult =
  | { kind: "continue" }
  | { kind: "interrupted" }
  | { kind: "stop"; clean: true; end: Exclude<RunEnd, "error">; reason: string }
  | { kind: "stop"; clean: false; reason: string };

/** The buses an exit may be dispatched to, and an optional logger. */
export interface ExitContext {
  /** Port I/O devices. */
  readonly pio: Bus;
  /** MMIO devices. */
  readonly mmio: Bus;
  /** Receives --verbose lines (unclaimed accesses). */
  readonly log?: (line: string) => void;
}

const R = KVM_RUN.fields;
const CONTINUE: ExitResult = { kind: "continue" };

/*L:311 The hot path. A guest that talks to a port exits to us thousands of
 * times a second, so the fields a PIO or MMIO exit needs are read at offsets
 * fixed once here (from the one layout table, with their sizes checked), by
 * plain DataView reads: no generic field lookup and no BigInt per exit. The
 * 64-bit data_offset is read as two halves; a high half that is not zero
 * could never point inside kvm_run anyway. :*/
function offsetOf(name: keyof typeof R, size: number): number {
  const f = R[name];
  if (f.size !== size) throw new Error(`kvm_run.${name} is ${f.size} bytes, expected ${size}`);
  return f.offset;
}
const EXIT_REASON = offsetOf("exit_reason", 4);
const IO_DIRECTION = offsetOf("io.direction", 1);
const IO_SIZE = offsetOf("io.size", 1);
const IO_PORT = offsetOf("io.port", 2);
const IO_COUNT = offsetOf("io.count", 4);
const IO_DATA_OFFSET = offsetOf("io.data_offset", 8);
const MMIO_ADDR = offsetOf("mmio.phys_addr", 8);
const MMIO_LEN = offsetOf("mmio.len", 4);
const MMIO_IS_WRITE = offsetOf("mmio.is_write", 1);
const MMIO_DATA = R["mmio.data"].offset;
const hex = (n: number | bigint) => `0x${n.toString(16)}`;

/** Reads `size` little-endian bytes at `off`. */
function readLe(v: DataView, off: number, size: number): number {
  switch (size) {
    case 1:
      return v.getUint8(off);
    case 2:
      return v.getUint16(off, true);
    case 4:
      return v.getUint32(off, true);
    default:
      return Number(v.getBigUint64(off, true) & 0x1f_ffff_ffff_ffffn);
  }
}

/** Writes `size` little-endian bytes of `value` at `off`. */
function writeLe(v: DataView, off: number, size: number, value: number): void {
  switch (size) {
    case 1:
      return v.setUint8(off, value & 0xff);
    case 2:
      return v.setUint16(off, value & 0xffff, true);
    case 4:
      return v.setUint32(off, value >>> 0, true);
    default:
      return v.setBigUint64(off, BigInt(value), true);
  }
}

function pioExit(run: DataView, ctx: ExitContext): ExitResult {
  const port = run.getUint16(IO_PORT, true);
  const size = run.getUint8(IO_SIZE);
  const count = run.getUint32(IO_COUNT, true);
  const out = run.getUint8(IO_DIRECTION) === KVM_CONST.EXIT_IO_OUT;
  const offHigh = run.getUint32(IO_DATA_OFFSET + 4, true);
  let off = run.getUint32(IO_DATA_OFFSET, true);
  if (size !== 1 && size !== 2 && size !== 4) return { kind: "stop", clean: false, reason: `bad PIO size ${size}` };
  if (offHigh !== 0 || off + size * count > run.byteLength) {
    off += offHigh * 2 ** 32;
    return { kind: "stop", clean: false, reason: `PIO data at ${off} outside kvm_run` };
  }
  const range = ctx.pio.find(port);
  for (let i = 0; i < count; i++, off += size) {
    if (range === undefined) {
      if (out) ctx.log?.(`pio: unclaimed write ${hex(readLe(run, off, size))} to port ${hex(port)}`);
      else {
        ctx.log?.(`pio: unclaimed read of port ${hex(port)}`);
        writeLe(run, off, size, 0xffffffff);
      }
      continue;
    }
    if (out) {
      const action = range.device.write(port - range.base, size, readLe(run, off, size));
      if (action !== undefined) {
        return { kind: "stop", clean: true, end: action, reason: `${action} requested by ${range.device.name}` };
      }
    } else {
      writeLe(run, off, size, range.device.read(port - range.base, size));
    }
  }
  return CONTINUE;
}

function mmioExit(run: DataView, ctx: ExitContext): ExitResult {
  const addr = run.getUint32(MMIO_ADDR, true) + run.getUint32(MMIO_ADDR + 4, true) * 2 ** 32;
  const len = run.getUint32(MMIO_LEN, true);
  const write = run.getUint8(MMIO_IS_WRITE) !== 0;
  const data = MMIO_DATA;
  if (len < 1 || len > 8) return { kind: "stop", clean: false, reason: `bad MMIO length ${len} at ${hex(addr)}` };
  const range = ctx.mmio.find(addr);
  if (range === undefined) {
    if (write) ctx.log?.(`mmio: unclaimed write of ${len} bytes at ${hex(addr)}`);
    else {
      ctx.log?.(`mmio: unclaimed read of ${len} bytes at ${hex(addr)}`);
      for (let i = 0; i < len; i++) run.setUint8(data + i, 0xff);
    }
    return CONTINUE;
  }
  const size = len === 8 ? 8 : len >= 4 ? 4 : len >= 2 ? 2 : 1;
  if (write) {
    const action = range.device.write(addr - range.base, size, readLe(run, data, size));
    if (action !== undefined) {
      return { kind: "stop", clean: true, end: action, reason: `${action} requested by ${range.device.name}` };
    }
  } else {
    writeLe(run, data, size, range.device.read(addr - range.base, size));
  }
  return CONTINUE;
}

function internalError(run: DataView): ExitResult {
  const sub = getField(run, 0, R["internal.suberror"]);
  const n = Math.min(getField(run, 0, R["internal.ndata"]), 16);
  const data: string[] = [];
  for (let i = 0; i < n; i++) data.push(hex(run.getBigUint64(R["internal.data"].offset + i * 8, true)));
  const kinds: Record<number, string> = { 1: "emulation failure", 2: "simultaneous exception", 3: "delivery event" };
  const what = kinds[sub] ?? "unknown";
  return {
    kind: "stop",
    clean: false,
    reason: `KVM internal error: suberror ${sub} (${what})${data.length ? `, data [${data.join(" ")}]` : ""}`,
  };
}

/**
 * Decides what one exit means, dispatching device accesses to the buses.
 * @param run a DataView over the vCPU's kvm_run page
 * @param ctx the buses and logger
 * @returns continue, interrupted, or stop (clean or not) with a reason
 */
export function handleExit(run: DataView, ctx: ExitContext): ExitResult {
  const reason = run.getUint32(EXIT_REASON, true);
  switch (reason) {
    case KVM_EXIT.IO:
      return pioExit(run, ctx);
    case KVM_EXIT.MMIO:
      return mmioExit(run, ctx);
    case KVM_EXIT.INTR:
      return { kind: "interrupted" };
    case KVM_EXIT.SHUTDOWN:
      return { kind: "stop", clean: true, end: "triple-fault", reason: "guest triple fault (shutdown)" };
    case KVM_EXIT.HLT:
      return { kind: "stop", clean: true, end: "halt", reason: "guest halted" };
    case KVM_EXIT.SYSTEM_EVENT: {
      const type = getField(run, 0, R["system_event.type"]);
      if (type === KVM_SYSTEM_EVENT.SHUTDOWN || type === KVM_SYSTEM_EVENT.RESET) {
        const off = type === KVM_SYSTEM_EVENT.SHUTDOWN;
        return {
          kind: "stop",
          clean: true,
          end: off ? "power-off" : "reset",
          reason: off ? "guest powered off" : "guest reset",
        };
      }
      return { kind: "stop", clean: false, reason: `guest system event ${type} (crash)` };
    }
    case KVM_EXIT.INTERNAL_ERROR:
      return internalError(run);
    case KVM_EXIT.FAIL_ENTRY: {
      const why = run.getBigUint64(R["fail_entry.hardware_entry_failure_reason"].offset, true);
      return { kind: "stop", clean: false, reason: `KVM entry failed: hardware reason ${hex(why)}` };
    }
    case KVM_EXIT.UNKNOWN: {
      const hw = run.getBigUint64(R["hw.hardware_exit_reason"].offset, true);
      return { kind: "stop", clean: false, reason: `unknown exit: hardware reason ${hex(hw)}` };
    }
    default:
      return { kind: "stop", clean: false, reason: `unexpected exit reason ${reason}` };
  }
}
