/** Building kvm_run pages by hand for the handleExit tests (exits_*test.ts). */

import type { RunEnd } from "../../lib/vcpu_protocol.ts";
import assert from "node:assert/strict";
import { Bus, type BusAction, type BusDevice } from "../../lib/bus.ts";
import type { ExitContext, ExitResult } from "../../lib/kvm/exits.ts";
import { KVM_CONST, KVM_EXIT } from "../../lib/kvm/ioctl.ts";
import { KVM_RUN, setField } from "../../lib/kvm/structs.ts";

/** A kvm_run member, by its C name. */
export type FieldName = keyof typeof KVM_RUN.fields;
/** kvm_run's members: offsets and widths. */
export const R = KVM_RUN.fields;

/** A fresh, zeroed kvm_run page (KVM_RUN.size bytes unless told). */
export function page(size: number = KVM_RUN.size): { bytes: Uint8Array<ArrayBuffer>; view: DataView<ArrayBuffer> } {
  const bytes = new Uint8Array(size);
  return { bytes, view: new DataView(bytes.buffer) };
}

/** Writes members of a kvm_run page. */
export function set(view: DataView, fields: Partial<Record<FieldName, number | bigint>>): void {
  for (const [name, value] of Object.entries(fields)) setField(view, 0, R[name as FieldName], value);
}

/** A device that records every access and answers from `answer`. */
export class Recorder implements BusDevice {
  readonly reads: { offset: number; size: number }[] = [];
  readonly writes: { offset: number; size: number; value: number }[] = [];
  constructor(
    readonly name: string,
    readonly answer: (offset: number, size: number) => number = () => 0,
    readonly action: BusAction = undefined,
  ) {}
  read(offset: number, size: number): number {
    this.reads.push({ offset, size });
    return this.answer(offset, size);
  }
  write(offset: number, size: number, value: number): BusAction {
    this.writes.push({ offset, size, value });
    return this.action;
  }
}

/** Empty PIO and MMIO buses, and a log that keeps its lines. */
export function context(): ExitContext & { lines: string[] } {
  const lines: string[] = [];
  return { pio: new Bus("pio"), mmio: new Bus("mmio"), log: (l) => lines.push(l), lines };
}

/** A port I/O exit: port, access size, direction, string count and where its data sits. */
export interface Pio {
  port: number;
  size: number;
  out: boolean;
  count?: number;
  dataOffset?: number;
}

/** Fills in a port I/O exit. */
export function pioExit(view: DataView, p: Pio): void {
  set(view, {
    exit_reason: KVM_EXIT.IO,
    "io.port": p.port,
    "io.size": p.size,
    "io.count": p.count ?? 1,
    "io.direction": p.out ? KVM_CONST.EXIT_IO_OUT : KVM_CONST.EXIT_IO_IN,
    "io.data_offset": p.dataOffset ?? 1024,
  });
}

/** Fills in an MMIO exit. */
export function mmioExit(view: DataView, addr: number | bigint, len: number, write: boolean): void {
  set(view, { exit_reason: KVM_EXIT.MMIO, "mmio.phys_addr": addr, "mmio.len": len, "mmio.is_write": write ? 1 : 0 });
}

/** Asserts a stop verdict, clean with the given end or not clean (`false`), whose reason matches `pattern`. */
export function assertStop(r: ExitResult, end: false | Exclude<RunEnd, "error">, pattern: RegExp): void {
  assert.equal(r.kind, "stop", JSON.stringify(r));
  if (r.kind !== "stop") return;
  assert.equal(r.clean, end !== false, r.reason);
  if (r.clean) assert.equal(r.end, end, r.reason);
  assert.match(r.reason, pattern);
}

/** The verdict for an exit that was handled. */
export const CONTINUE: ExitResult = { kind: "continue" };
