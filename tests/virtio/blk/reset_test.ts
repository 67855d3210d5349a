/*T:507 Reset, as a vCPU meets it: the guest writes 0 to the status
 * register and the launcher's main thread must not stall while the disk is
 * busy. So the tests reset the device while its queue thread is provably
 * inside a large preadv (the in-flight count is up both before reset() is
 * called and after it returns; an attempt where the read ended in between
 * proves nothing and is made again), and time the call. Then the driver
 * lays out new rings elsewhere and carries on, and the old request's
 * answer must never arrive: its status byte, the old used ring and the old
 * interrupt line stay as they were at the reset, although the read itself
 * does finish into the old buffer (as a controller's DMA would), before
 * the new session's first answer. The same with I/O threads and a batch of
 * writes. The page cache cannot be dropped from here (lib/sys has no
 * posix_fadvise), so the read is made long by its size instead. :*/

import assert from "node:assert/strict";
import { VIRTIO_BLK_S, VIRTIO_BLK_T } from "../../../lib/virtio/blk/request.ts";
import { POLL, pollOne } from "../../../lib/sys/calls.ts";
import { bench, type BlkBench, header, post, readData, status } from "./harness.ts";
import type { TestDriver } from "../driver.ts";

const T = VIRTIO_BLK_T;
const S = VIRTIO_BLK_S;
const MiB = 1024 * 1024;
/** The longest reset() may take. */
const RESET_MS = 20;

/**
 * Spins (without yielding) until the device has `atLeast` requests in flight; false if `d`'s requests were
 * all answered first (this thread was not running meanwhile) or after 20 s.
 */
function waitInFlight(b: BlkBench, d: TestDriver, posted: number, atLeast = 1): boolean {
  const deadline = performance.now() + 20_000;
  const start = d.usedIdx();
  while (b.dev.inFlight < atLeast) {
    if (((d.usedIdx() - start) & 0xffff) >= posted || performance.now() > deadline) return false;
  }
  return true;
}

/** Marks a request's status byte, so that any answer to it shows. */
function markStatus(b: BlkBench, d: TestDriver, head: number): void {
  const w = d.posted(head)!.writable;
  const last = w[w.length - 1]!;
  b.mem.writeU8(last.addr + last.len - 1, 0xee);
}

/** What must not change after a reset: the old ring's used index and the old interrupt line. */
function snapshot(b: BlkBench, d: TestDriver) {
  const line = b.irq!;
  return { usedIdx: d.usedIdx(), count: line.count, irqfd: line.line.irqfd, statusWord: line.line.status };
}

Deno.test("blk: reset returns at once while the queue thread is inside a large read; its answer never lands", async () => {
  await bench(async (b) => {
    const size = 32 * MiB;
    for (let attempt = 1;; attempt++) {
      const d = b.prepare({ base: 0x1000, size: 16, dataBase: 0x100000, dataSize: size + MiB });
      const old = post(d, header(T.IN, 0), { inLen: size });
      markStatus(b, d, old);
      const start = d.usedIdx();
      b.start();
      const inFlight = waitInFlight(b, d, 1);
      const t0 = performance.now();
      b.dev.reset();
      const took = performance.now() - t0;
      const stillInFlight = inFlight && b.dev.inFlight > 0;
      b.reset();
      const before = snapshot(b, d);
      if (!stillInFlight) {
        assert.ok(inFlight || d.usedIdx() !== start, "the read was never in flight, nor answered");
        assert.ok(attempt < 10, "the read never outlasted a reset in 10 attempts");
        await b.settle();
        continue;
      }
      assert.ok(took < RESET_MS, `reset() took ${took.toFixed(2)} ms with a ${size / MiB} MiB read in flight`);
      const d2 = b.activate({ base: 0x80000, size: 8, dataBase: 0x90000, dataSize: 0x10000 });
      const r = post(d2, header(T.IN, 5), { inLen: 512 });
      b.notify();
      await b.settle();
      assert.deepEqual(d2.used().map((u) => u.id), [r], "the new rings work");
      assert.equal(status(b, r), S.OK);
      assert.deepEqual(readData(b, r), b.initial.subarray(5 * 512, 6 * 512));
      assert.ok(b.interrupts >= 1, "the new line's eventfd was signalled");
      assert.equal(b.isrMissing, 0);
      const [buffer, statusByte] = d.posted(old)!.writable;
      const tail = b.mem.slice(buffer!.addr + size - 4096, 4096);
      assert.deepEqual(tail, b.initial.subarray(size - 4096, size), "the old read finished first");
      assert.equal(b.mem.readU8(statusByte!.addr), 0xee, "the old request's status byte was never written");
      assert.equal(d.usedIdx(), before.usedIdx, "the old used ring got nothing after the reset");
      assert.equal(pollOne(before.irqfd, POLL.IN, 0), 0, "the old interrupt line was never signalled again");
      assert.equal(new Int32Array(before.statusWord)[1], 0, "nor its status word");
      assert.deepEqual(b.failures, []);
      return;
    }
  }, { diskBytes: 40 * MiB, ramBytes: 40 * MiB, ioThreads: 0 });
});

Deno.test("blk: reset with a batch of writes with the I/O threads returns at once; the old ring gets nothing", async () => {
  await bench(async (b) => {
    await b.ready();
    const d = b.prepare({ size: 256, dataSize: 70 * MiB });
    const data = new Uint8Array(MiB);
    for (let k = 0; k < 64; k++) post(d, header(T.OUT, (k % 8) * 2048), { out: data.fill(k + 1), indirect: true });
    b.start();
    assert.ok(waitInFlight(b, d, 64, 2), "several writes in flight when the reset comes");
    const t0 = performance.now();
    b.dev.reset();
    const took = performance.now() - t0;
    b.reset();
    const before = snapshot(b, d);
    assert.ok(took < RESET_MS, `reset() took ${took.toFixed(2)} ms`);
    const d2 = b.activate({ base: 76 * MiB, size: 16 });
    const r = post(d2, header(T.IN, 0), { inLen: 512 });
    b.notify();
    await b.settle();
    assert.equal(b.dev.inFlight, 0);
    assert.equal(d.usedIdx(), before.usedIdx, "the old ring got nothing after the reset");
    assert.equal(pollOne(before.irqfd, POLL.IN, 0), 0, "the old interrupt line was never signalled again");
    assert.deepEqual(d2.used().map((u) => u.id), [r]);
    assert.equal(status(b, r), S.OK);
    assert.deepEqual(readData(b, r), b.file().subarray(0, 512), "the new session reads what the old writes left");
    assert.deepEqual(b.failures, []);
  }, { diskBytes: 8 * MiB, ramBytes: 80 * MiB, ioThreads: 2 });
});
