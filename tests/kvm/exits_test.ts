/*T:330 handleExit is the whole policy of the vCPU thread, and it trusts
 * nothing but a page of bytes. These tests build that page by hand, field by
 * field from the same layout table the launcher uses, and hand it to
 * handleExit with real buses and small recording devices. Each exit kind is
 * checked for what it dispatches and what it answers: port I/O of every
 * width, string I/O (count > 1) in order, MMIO of every length, the all-ones
 * answer of an empty bus, and the one-line verdict of every way a guest can
 * stop. Then fast-check fills the page with random bytes: whatever the
 * kernel (or a bug) leaves there, handleExit must return a verdict, never
 * throw, never hand a device an offset outside its range, and never write
 * outside the exit's data area. :*/

import assert from "node:assert/strict";
import fc from "fast-check";
import { Bus, type BusAction, type BusDevice } from "../../lib/bus.ts";
import { type ExitContext, type ExitResult, handleExit } from "../../lib/kvm/exits.ts";
import { KVM_CONST, KVM_EXIT } from "../../lib/kvm/ioctl.ts";
import { KVM_RUN, setField } from "../../lib/kvm/structs.ts";
import { I8042, PostCodePort } from "../../lib/devices/i8042.ts";

type FieldName = keyof typeof KVM_RUN.fields;
const R = KVM_RUN.fields;

/** A fresh, zeroed kvm_run page (KVM_RUN.size bytes unless told). */
function page(size: number = KVM_RUN.size): { bytes: Uint8Array<ArrayBuffer>; view: DataView<ArrayBuffer> } {
  const bytes = new Uint8Array(size);
  return { bytes, view: new DataView(bytes.buffer) };
}

function set(view: DataView, fields: Partial<Record<FieldName, number | bigint>>): void {
  for (const [name, value] of Object.entries(fields)) setField(view, 0, R[name as FieldName], value);
}

/** A device that records every access and answers from `answer`. */
class Recorder implements BusDevice {
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

function context(): ExitContext & { lines: string[] } {
  const lines: string[] = [];
  return { pio: new Bus("pio"), mmio: new Bus("mmio"), log: (l) => lines.push(l), lines };
}

interface Pio {
  port: number;
  size: number;
  out: boolean;
  count?: number;
  dataOffset?: number;
}

function pioExit(view: DataView, p: Pio): void {
  set(view, {
    exit_reason: KVM_EXIT.IO,
    "io.port": p.port,
    "io.size": p.size,
    "io.count": p.count ?? 1,
    "io.direction": p.out ? KVM_CONST.EXIT_IO_OUT : KVM_CONST.EXIT_IO_IN,
    "io.data_offset": p.dataOffset ?? 1024,
  });
}

function mmioExit(view: DataView, addr: number | bigint, len: number, write: boolean): void {
  set(view, { exit_reason: KVM_EXIT.MMIO, "mmio.phys_addr": addr, "mmio.len": len, "mmio.is_write": write ? 1 : 0 });
}

function assertStop(r: ExitResult, clean: boolean, pattern: RegExp): void {
  assert.equal(r.kind, "stop", JSON.stringify(r));
  if (r.kind !== "stop") return;
  assert.equal(r.clean, clean, r.reason);
  assert.match(r.reason, pattern);
}

const CONTINUE: ExitResult = { kind: "continue" };

Deno.test("exits: PIO out of 1, 2 and 4 bytes dispatches the value at the port's offset", () => {
  for (const [size, value] of [[1, 0xab], [2, 0xbeef], [4, 0xdeadbeef]] as const) {
    const ctx = context();
    const d = new Recorder("uart");
    ctx.pio.add(0x3f8, 8, d);
    const { view } = page();
    pioExit(view, { port: 0x3fb, size, out: true, dataOffset: 1000 });
    if (size === 1) view.setUint8(1000, value);
    else if (size === 2) view.setUint16(1000, value, true);
    else view.setUint32(1000, value, true);
    view.setUint8(1000 + size, 0x77); // a neighbour byte that must not be read
    assert.deepEqual(handleExit(view, ctx), CONTINUE);
    assert.deepEqual(d.writes, [{ offset: 3, size, value }]);
    assert.deepEqual(d.reads, []);
    assert.deepEqual(ctx.lines, []);
  }
});

Deno.test("exits: PIO in writes the device's answer, little-endian, into the data area only", () => {
  for (
    const [size, answer, bytes] of [
      [1, 0x5a, [0x5a]],
      [2, 0x1234, [0x34, 0x12]],
      [4, 0x89abcdef, [0xef, 0xcd, 0xab, 0x89]],
    ] as const
  ) {
    const ctx = context();
    const d = new Recorder("dev", () => answer);
    ctx.pio.add(0x60, 5, d);
    const { bytes: raw, view } = page();
    pioExit(view, { port: 0x64, size, out: false, dataOffset: 2000 });
    raw.fill(0xee, 2000, 2010);
    assert.deepEqual(handleExit(view, ctx), CONTINUE);
    assert.deepEqual(d.reads, [{ offset: 4, size }]);
    assert.deepEqual([...raw.subarray(2000, 2000 + size)], bytes);
    assert.equal(raw[2000 + size], 0xee, "byte after the data is untouched");
    assert.equal(raw[1999], 0, "byte before the data is untouched");
  }
});

Deno.test("exits: a device answer wider than the access is truncated to its size", () => {
  const ctx = context();
  ctx.pio.add(0x80, 1, new Recorder("wide", () => 0x12345678));
  const { bytes, view } = page();
  pioExit(view, { port: 0x80, size: 1, out: false, dataOffset: 100 });
  handleExit(view, ctx);
  assert.deepEqual([...bytes.subarray(100, 102)], [0x78, 0]);
});

Deno.test("exits: string PIO (count > 1) is handled element by element, in order", () => {
  const ctx = context();
  let next = 0x11;
  const d = new Recorder("fifo", () => (next += 0x11) - 0x11);
  ctx.pio.add(0x1f0, 8, d);
  const { bytes, view } = page();
  // rep outsw: three 16-bit words.
  pioExit(view, { port: 0x1f0, size: 2, out: true, count: 3, dataOffset: 512 });
  bytes.set([0x01, 0x02, 0x03, 0x04, 0x05, 0x06], 512);
  assert.deepEqual(handleExit(view, ctx), CONTINUE);
  assert.deepEqual(d.writes, [
    { offset: 0, size: 2, value: 0x0201 },
    { offset: 0, size: 2, value: 0x0403 },
    { offset: 0, size: 2, value: 0x0605 },
  ]);
  // rep insb: four bytes.
  pioExit(view, { port: 0x1f7, size: 1, out: false, count: 4, dataOffset: 700 });
  assert.deepEqual(handleExit(view, ctx), CONTINUE);
  assert.deepEqual([...bytes.subarray(700, 705)], [0x11, 0x22, 0x33, 0x44, 0]);
  assert.deepEqual(d.reads, [1, 2, 3, 4].map(() => ({ offset: 7, size: 1 })));
  // count 0 touches nothing.
  pioExit(view, { port: 0x1f0, size: 4, out: true, count: 0 });
  assert.deepEqual(handleExit(view, ctx), CONTINUE);
  assert.equal(d.writes.length, 3);
});

Deno.test("exits: an unclaimed port reads as all ones of the access size and the read is logged", () => {
  for (const [size, want] of [[1, [0xff, 0]], [2, [0xff, 0xff, 0]], [4, [0xff, 0xff, 0xff, 0xff, 0]]] as const) {
    const ctx = context();
    ctx.pio.add(0x3f8, 8, new Recorder("uart"));
    const { bytes, view } = page();
    pioExit(view, { port: 0x2f8, size, out: false, dataOffset: 300 });
    assert.deepEqual(handleExit(view, ctx), CONTINUE);
    assert.deepEqual([...bytes.subarray(300, 300 + want.length)], want);
    assert.deepEqual(ctx.lines, ["pio: unclaimed read of port 0x2f8"]);
  }
  // rep insw on nothing: every element is all ones.
  const ctx = context();
  const { bytes, view } = page();
  pioExit(view, { port: 0x170, size: 2, out: false, count: 2, dataOffset: 10 });
  handleExit(view, ctx);
  assert.deepEqual([...bytes.subarray(10, 15)], [0xff, 0xff, 0xff, 0xff, 0]);
  assert.equal(ctx.lines.length, 2);
});

Deno.test("exits: an unclaimed port write is swallowed and logged with value and port", () => {
  const ctx = context();
  const { view } = page();
  pioExit(view, { port: 0x2fb, size: 1, out: true, dataOffset: 64 });
  view.setUint8(64, 0x41);
  assert.deepEqual(handleExit(view, ctx), CONTINUE);
  assert.deepEqual(ctx.lines, ["pio: unclaimed write 0x41 to port 0x2fb"]);
  // Without a logger it is silent and still continues.
  const quiet: ExitContext = { pio: new Bus("pio"), mmio: new Bus("mmio") };
  assert.deepEqual(handleExit(view, quiet), CONTINUE);
});

Deno.test("exits: a bad PIO size or data outside kvm_run stops the VM uncleanly, touching no device", () => {
  const ctx = context();
  const d = new Recorder("uart");
  ctx.pio.add(0x3f8, 8, d);
  for (const size of [0, 3, 8, 255]) {
    const { view } = page();
    pioExit(view, { port: 0x3f8, size, out: true });
    assertStop(handleExit(view, ctx), false, new RegExp(`^bad PIO size ${size}$`));
  }
  const outside: [number, number, number][] = [
    [KVM_RUN.size - 1, 2, 1],
    [KVM_RUN.size, 1, 1],
    [2000, 4, 100],
    [0, 4, 0xffff_ffff],
  ];
  for (const [dataOffset, size, count] of outside) {
    for (const out of [true, false]) {
      const { view } = page();
      pioExit(view, { port: 0x3f8, size, out, count, dataOffset });
      assertStop(handleExit(view, ctx), false, new RegExp(`PIO data at ${dataOffset} outside kvm_run`));
    }
  }
  const { view } = page();
  set(view, { exit_reason: KVM_EXIT.IO, "io.size": 1, "io.count": 1, "io.data_offset": 2n ** 64n - 1n });
  assertStop(handleExit(view, ctx), false, /outside kvm_run/);
  assert.deepEqual(d.writes, []);
  assert.deepEqual(d.reads, []);
  // Exactly at the end is fine.
  const edge = page();
  pioExit(edge.view, { port: 0x3f8, size: 4, out: false, dataOffset: KVM_RUN.size - 4 });
  assert.deepEqual(handleExit(edge.view, ctx), CONTINUE);
  assert.equal(d.reads.length, 1);
});

Deno.test("exits: PIO data on the page after kvm_run (as KVM puts it) works with the full mapping", () => {
  const ctx = context();
  const d = new Recorder("uart");
  ctx.pio.add(0x3f8, 8, d);
  const { view } = page(3 * 4096);
  pioExit(view, { port: 0x3f8, size: 1, out: true, dataOffset: 4096 });
  view.setUint8(4096, 0x68);
  assert.deepEqual(handleExit(view, ctx), CONTINUE);
  assert.deepEqual(d.writes, [{ offset: 0, size: 1, value: 0x68 }]);
});

Deno.test("exits: a device write asking for reset stops the VM cleanly (real i8042, port 0x64)", () => {
  const ctx = context();
  ctx.pio.add(0x60, 5, new I8042());
  const post = new PostCodePort();
  ctx.pio.add(0x80, 1, post);
  const { view } = page();
  pioExit(view, { port: 0x80, size: 1, out: true, dataOffset: 80 });
  view.setUint8(80, 0x42);
  assert.deepEqual(handleExit(view, ctx), CONTINUE);
  assert.equal(post.last, 0x42);
  pioExit(view, { port: 0x64, size: 1, out: true, dataOffset: 80 });
  view.setUint8(80, 0xfe);
  assertStop(handleExit(view, ctx), true, /^reset requested by i8042$/);
  // A reset in the middle of rep outsb ends the string there.
  const ctx2 = context();
  const r = new Recorder("resetter", () => 0, "reset");
  ctx2.pio.add(0x500, 1, r);
  pioExit(view, { port: 0x500, size: 1, out: true, count: 5, dataOffset: 80 });
  assertStop(handleExit(view, ctx2), true, /resetter/);
  assert.equal(r.writes.length, 1);
});

Deno.test("exits: MMIO reads and writes of 1, 2, 4 and 8 bytes", () => {
  const cases = [
    [1, 0xa5, [0xa5]],
    [2, 0xa55a, [0x5a, 0xa5]],
    [4, 0x01020304, [4, 3, 2, 1]],
    [8, 0x0011_2233_4455_6677, [0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0]],
  ] as const;
  for (const [len, value, bytesLe] of cases) {
    const ctx = context();
    const d = new Recorder("virtio", () => value);
    ctx.mmio.add(0xd000_0000, 0x200, d);
    const { bytes, view } = page();
    mmioExit(view, 0xd000_0070, len, true);
    bytes.set(bytesLe, R["mmio.data"].offset);
    assert.deepEqual(handleExit(view, ctx), CONTINUE);
    assert.deepEqual(d.writes, [{ offset: 0x70, size: len, value }]);

    const r = page();
    mmioExit(r.view, 0xd000_01f8, len, false);
    assert.deepEqual(handleExit(r.view, ctx), CONTINUE);
    assert.deepEqual(d.reads, [{ offset: 0x1f8, size: len }]);
    const data = r.bytes.subarray(R["mmio.data"].offset, R["mmio.data"].offset + 8);
    assert.deepEqual([...data.subarray(0, len)], bytesLe);
    assert.ok(data.subarray(len).every((b) => b === 0), "bytes past the access are untouched");
  }
});

Deno.test("exits: unclaimed MMIO reads fill exactly len bytes with 0xff; writes are logged", () => {
  for (const len of [1, 2, 3, 4, 8]) {
    const ctx = context();
    const { bytes, view } = page();
    mmioExit(view, 0xfeb0_0000, len, false);
    assert.deepEqual(handleExit(view, ctx), CONTINUE);
    const data = bytes.subarray(R["mmio.data"].offset, R["mmio.data"].offset + 8);
    assert.deepEqual([...data], [...new Array(8).keys()].map((i) => i < len ? 0xff : 0));
    assert.deepEqual(ctx.lines, [`mmio: unclaimed read of ${len} bytes at 0xfeb00000`]);
  }
  const ctx = context();
  const { view } = page();
  mmioExit(view, 0x1234, 4, true);
  assert.deepEqual(handleExit(view, ctx), CONTINUE);
  assert.deepEqual(ctx.lines, ["mmio: unclaimed write of 4 bytes at 0x1234"]);
});

Deno.test("exits: bad MMIO lengths stop uncleanly; an MMIO reset request stops cleanly", () => {
  const ctx = context();
  const d = new Recorder("virtio", () => 0, "reset");
  ctx.mmio.add(0xd000_0000, 0x200, d);
  for (const len of [0, 9, 0xffff_ffff]) {
    const { view } = page();
    mmioExit(view, 0xd000_0000, len, true);
    assertStop(handleExit(view, ctx), false, new RegExp(`^bad MMIO length ${len} at 0xd0000000$`));
  }
  assert.equal(d.writes.length, 0);
  const { view } = page();
  mmioExit(view, 0xd000_0010, 4, true);
  assertStop(handleExit(view, ctx), true, /^reset requested by virtio$/);
});

Deno.test("exits: shutdown, halt and system events", () => {
  const ctx = context();
  const { view } = page();
  set(view, { exit_reason: KVM_EXIT.SHUTDOWN });
  assertStop(handleExit(view, ctx), true, /triple fault/);
  set(view, { exit_reason: KVM_EXIT.HLT });
  assertStop(handleExit(view, ctx), true, /^guest halted$/);
  set(view, { exit_reason: KVM_EXIT.SYSTEM_EVENT, "system_event.type": 1 });
  assertStop(handleExit(view, ctx), true, /^guest powered off$/);
  set(view, { "system_event.type": 2 });
  assertStop(handleExit(view, ctx), true, /^guest reset$/);
  set(view, { "system_event.type": 3 });
  assertStop(handleExit(view, ctx), false, /^guest system event 3 \(crash\)$/);
  set(view, { "system_event.type": 0 });
  assertStop(handleExit(view, ctx), false, /system event 0/);
  set(view, { exit_reason: KVM_EXIT.INTR });
  assert.deepEqual(handleExit(view, ctx), { kind: "interrupted" });
});

Deno.test("exits: internal errors name the suberror and the data words in hex", () => {
  const ctx = context();
  const { view } = page();
  set(view, { exit_reason: KVM_EXIT.INTERNAL_ERROR, "internal.suberror": 1, "internal.ndata": 2 });
  view.setBigUint64(R["internal.data"].offset, 0xdeadn, true);
  view.setBigUint64(R["internal.data"].offset + 8, 0xffff_ffff_8100_0000n, true);
  view.setBigUint64(R["internal.data"].offset + 16, 0x5555n, true); // beyond ndata
  const r = handleExit(view, ctx);
  assertStop(r, false, /suberror 1 \(emulation failure\)/);
  assert.ok(r.kind === "stop" && r.reason.endsWith("data [0xdead 0xffffffff81000000]"), JSON.stringify(r));
  assert.ok(r.kind === "stop" && !r.reason.includes("0x5555"));

  set(view, { "internal.suberror": 3, "internal.ndata": 0 });
  assertStop(handleExit(view, ctx), false, /^KVM internal error: suberror 3 \(delivery event\)$/);
  set(view, { "internal.suberror": 2 });
  assertStop(handleExit(view, ctx), false, /simultaneous exception/);
  set(view, { "internal.suberror": 77, "internal.ndata": 0xffff_ffff });
  const many = handleExit(view, ctx);
  assertStop(many, false, /suberror 77 \(unknown\)/);
  assert.ok(many.kind === "stop");
  assert.equal(many.reason.split("data [")[1]!.split(" ").length, 16, "ndata is capped at the 16 words KVM has");
});

Deno.test("exits: failed entry and unknown exits report the hardware reason in hex", () => {
  const ctx = context();
  const { view } = page();
  set(view, { exit_reason: KVM_EXIT.FAIL_ENTRY, "fail_entry.hardware_entry_failure_reason": 0x8000_0021 });
  assertStop(handleExit(view, ctx), false, /^KVM entry failed: hardware reason 0x80000021$/);
  set(view, { exit_reason: KVM_EXIT.UNKNOWN, "hw.hardware_exit_reason": 0x30 });
  assertStop(handleExit(view, ctx), false, /^unknown exit: hardware reason 0x30$/);
  for (const reason of [99, KVM_EXIT.EXCEPTION, KVM_EXIT.DEBUG, 0xffff_ffff]) {
    set(view, { exit_reason: reason });
    assertStop(handleExit(view, ctx), false, new RegExp(`^unexpected exit reason ${reason}$`));
  }
});

/*T:331 The property: any page, any exit. The generator biases the fields
 * that matter (exit reason, PIO size/count/offset, MMIO address and length)
 * toward the interesting values and leaves the rest of the page random. :*/

const REASONS = [...Object.values(KVM_EXIT), 99, 0xffff_ffff];
const WIDTHS = new Set([1, 2, 4, 8]);

Deno.test("exits: property: random kvm_run pages never throw and stay within bounds", () => {
  const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
  const gen = fc.record({
    bytes: fc.uint8Array({ minLength: KVM_RUN.size, maxLength: KVM_RUN.size }),
    reason: fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...REASONS) }, { weight: 1, arbitrary: u32 }),
    ioSize: fc.option(fc.constantFrom(0, 1, 2, 3, 4, 8, 255)),
    ioCount: fc.option(fc.oneof(fc.integer({ min: 0, max: 8 }), u32)),
    ioOffset: fc.option(fc.oneof(fc.integer({ min: 0, max: KVM_RUN.size + 8 }), fc.bigInt(0n, 2n ** 64n - 1n))),
    port: fc.option(fc.oneof(fc.integer({ min: 0x3f0, max: 0x408 }), fc.integer({ min: 0x58, max: 0x88 }))),
    mmioAddr: fc.option(
      fc.oneof(
        fc.bigInt(0xcfff_fff0n, 0xd000_0210n),
        fc.bigInt(0xfedf_fff0n, 0xfee0_1010n),
        fc.bigInt(0n, 2n ** 64n - 1n),
      ),
    ),
    mmioLen: fc.option(fc.oneof(fc.integer({ min: 0, max: 10 }), u32)),
  });
  fc.assert(
    fc.property(gen, (g) => {
      const { bytes, view } = page();
      bytes.set(g.bytes);
      set(view, { exit_reason: g.reason });
      if (g.ioSize !== null) set(view, { "io.size": g.ioSize });
      if (g.ioCount !== null) set(view, { "io.count": g.ioCount });
      if (g.ioOffset !== null) set(view, { "io.data_offset": g.ioOffset });
      if (g.port !== null) set(view, { "io.port": g.port });
      if (g.mmioAddr !== null) set(view, { "mmio.phys_addr": g.mmioAddr });
      if (g.mmioLen !== null) set(view, { "mmio.len": g.mmioLen });
      const before = bytes.slice();

      const ctx = context();
      const problems: string[] = [];
      const watch = (name: string, length: number, action: BusAction = undefined): BusDevice => {
        const check = (kind: string, offset: number, size: number) => {
          if (!Number.isInteger(offset) || offset < 0 || offset >= length) problems.push(`${name} ${kind} @${offset}`);
          if (!WIDTHS.has(size)) problems.push(`${name} ${kind} size ${size}`);
        };
        return {
          name,
          read: (offset, size) => {
            check("read", offset, size);
            return (offset * 0x01010101 + size) % 2 ** (8 * Math.min(size, 6));
          },
          write: (offset, size, value) => {
            check("write", offset, size);
            if (!Number.isSafeInteger(value) || value < 0) problems.push(`${name} write value ${value}`);
            return action;
          },
        };
      };
      ctx.pio.add(0x3f8, 8, watch("serial", 8));
      ctx.pio.add(0x60, 5, watch("i8042", 5, "reset"));
      ctx.pio.add(0x80, 1, watch("post", 1));
      ctx.mmio.add(0xd000_0000, 0x200, watch("virtio", 0x200));
      ctx.mmio.add(0xfee0_0000, 0x1000, watch("lapic", 0x1000, "reset"));

      // Only the exit's own data area may change; it is computed before the
      // exit is handled, because IN data may overwrite the header itself.
      const reason = view.getUint32(R.exit_reason.offset, true);
      let lo = 0;
      let hi = 0;
      if (reason === KVM_EXIT.IO) {
        lo = Number(view.getBigUint64(R["io.data_offset"].offset, true));
        hi = lo + view.getUint8(R["io.size"].offset) * view.getUint32(R["io.count"].offset, true);
      } else if (reason === KVM_EXIT.MMIO) {
        lo = R["mmio.data"].offset;
        hi = lo + 8;
      }
      const r = handleExit(view, ctx);
      assert.ok(["continue", "interrupted", "stop"].includes(r.kind), JSON.stringify(r));
      if (r.kind === "stop") {
        assert.equal(typeof r.clean, "boolean");
        assert.ok(r.reason.length > 0);
      }
      assert.deepEqual(problems, []);

      for (let i = 0; i < bytes.length; i++) {
        if (bytes[i] !== before[i]) assert.ok(i >= lo && i < hi, `byte ${i} changed outside [${lo}, ${hi})`);
      }
    }),
    { numRuns: 5000 },
  );
});
