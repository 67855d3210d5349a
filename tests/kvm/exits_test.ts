/*T:330 handleExit is the whole policy of the vCPU thread, and it trusts
 * nothing but a page of bytes. These tests build that page by hand, field by
 * field from the same layout table the launcher uses, and hand it to
 * handleExit with real buses and small recording devices. Each exit kind is
 * checked for what it dispatches and what it answers: port I/O of every
 * width, string I/O (count > 1) in order, MMIO of every length, the all-ones
 * answer of an empty bus, and the one-line verdict of every way a guest can
 * stop: port I/O here, MMIO and the other exits in exits_mmio_test.ts.
 * Then fast-check fills the page with random bytes (exits_fuzz_test.ts):
 * whatever the kernel (or a bug) leaves there, handleExit must return a
 * verdict, never throw, never hand a device an offset outside its range,
 * and never write outside the exit's data area. :*/

import assert from "node:assert/strict";
import { Bus } from "../../lib/bus.ts";
import { type ExitContext, handleExit } from "../../lib/kvm/exits.ts";
import { KVM_EXIT } from "../../lib/kvm/ioctl.ts";
import { KVM_RUN } from "../../lib/kvm/structs.ts";
import { I8042, PostCodePort } from "../../lib/devices/i8042.ts";
import { assertStop, context, CONTINUE, page, pioExit, Recorder, set } from "./exits_rig.ts";

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
  assertStop(handleExit(view, ctx), "reset", /^reset requested by i8042$/);
  // A reset in the middle of rep outsb ends the string there.
  const ctx2 = context();
  const r = new Recorder("resetter", () => 0, "reset");
  ctx2.pio.add(0x500, 1, r);
  pioExit(view, { port: 0x500, size: 1, out: true, count: 5, dataOffset: 80 });
  assertStop(handleExit(view, ctx2), "reset", /resetter/);
  assert.equal(r.writes.length, 1);
});
