/*T:811 The boot timer as the vCPU thread's bus sees it: a byte written at
 * its first address is recorded with the time since the launcher started
 * (between the clock read before and after the write) and printed as one
 * line; other widths and offsets do nothing; a guest writing in a loop gets
 * BOOT_TIMER_PRINTED lines and one more saying the rest are not shown, and
 * only BOOT_TIMER_KEPT writes kept. Its page lies in the 32-bit hole, past
 * every byte of RAM and clear of every virtio window. :*/

import assert from "node:assert/strict";
import {
  BOOT_TIMER_ADDR,
  BOOT_TIMER_MAGIC,
  BOOT_TIMER_PRINTED,
  BOOT_TIMER_SIZE,
  BootTimer,
} from "../../lib/devices/boot_timer.ts";
import { Bus } from "../../lib/bus.ts";
import { MMIO_HOLE_START, ramRegions } from "../../lib/memory.ts";
import { layoutMmio, VIRTIO_IRQS } from "../../lib/virtio/mmio/set.ts";
import { RngDevice } from "../../lib/virtio/rng.ts";
import { MMIO_WINDOW } from "../../lib/virtio/mmio/regs.ts";
import { BOOT_TIMER_KEPT, bootClockMs, BootTimings, parseBootTimerLines } from "../../lib/timings.ts";

Deno.test("boot timer: a byte at offset 0 is recorded and printed with the time since the start", () => {
  const timings = BootTimings.start();
  const lines: string[] = [];
  const dev = new BootTimer({ timings, print: (l) => lines.push(l) });
  const before = bootClockMs() - timings.originMs;
  assert.equal(dev.write(0, 1, BOOT_TIMER_MAGIC), undefined, "never asks for a reset");
  const after = bootClockMs() - timings.originMs;
  const [kept] = timings.report().bootTimer;
  assert.equal(kept?.value, 123);
  assert.ok(before <= kept.ms && kept.ms <= after, `${before} <= ${kept.ms} <= ${after}`);
  assert.equal(lines.length, 1);
  const [printed] = parseBootTimerLines(lines[0]!);
  assert.equal(printed?.value, 123);
  assert.ok(Math.abs(printed.ms - kept.ms) <= 0.05, "the printed time is the recorded one, to 0.1 ms");
  assert.equal(dev.read(0, 1), 0);
});

Deno.test("boot timer: other widths and offsets are ignored", () => {
  const timings = BootTimings.start();
  const lines: string[] = [];
  const dev = new BootTimer({ timings, print: (l) => lines.push(l) });
  for (const size of [2, 4, 8]) dev.write(0, size, BOOT_TIMER_MAGIC);
  for (const offset of [1, 4, BOOT_TIMER_SIZE - 1]) dev.write(offset, 1, BOOT_TIMER_MAGIC);
  assert.equal(timings.report().bootTimerWrites, 0);
  assert.deepEqual(lines, []);
  dev.write(0, 1, 0x1ff);
  assert.equal(timings.report().bootTimer[0]?.value, 0xff, "the byte, not the register");
});

Deno.test("boot timer: a guest writing in a loop cannot flood stderr or memory", () => {
  const timings = BootTimings.start();
  const lines: string[] = [];
  const dev = new BootTimer({ timings, print: (l) => lines.push(l) });
  for (let i = 0; i < 10_000; i++) dev.write(0, 1, i);
  assert.equal(lines.length, BOOT_TIMER_PRINTED + 1);
  assert.equal(parseBootTimerLines(lines.join("\n")).length, BOOT_TIMER_PRINTED);
  assert.match(lines.at(-1)!, /no longer printed/);
  const r = timings.report();
  assert.equal(r.bootTimer.length, BOOT_TIMER_KEPT);
  assert.equal(r.bootTimerWrites, 10_000);
});

Deno.test("boot timer: silent and unrecorded without --verbose or --timings", () => {
  const dev = new BootTimer();
  assert.equal(dev.write(0, 1, BOOT_TIMER_MAGIC), undefined);
});

Deno.test("boot timer: its page is in the hole, past RAM and clear of every virtio window", () => {
  assert.equal(BOOT_TIMER_ADDR, 0xc000_0000);
  assert.ok(BOOT_TIMER_ADDR >= MMIO_HOLE_START);
  for (const r of ramRegions(64 * 1024 * 1024 * 1024)) {
    assert.ok(BOOT_TIMER_ADDR + BOOT_TIMER_SIZE <= r.gpa || BOOT_TIMER_ADDR >= r.gpa + r.size, "not in RAM");
  }
  const bus = new Bus("mmio");
  const devices = VIRTIO_IRQS.map(() => new RngDevice());
  for (const s of layoutMmio(devices)) bus.add(s.base, MMIO_WINDOW, { name: s.device.name, read: () => 0, write() {} });
  bus.add(BOOT_TIMER_ADDR, BOOT_TIMER_SIZE, new BootTimer());
  assert.equal(bus.find(BOOT_TIMER_ADDR)?.base, BOOT_TIMER_ADDR);
  for (const d of devices) d.close();
});
