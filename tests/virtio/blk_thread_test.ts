/*T:506 The device's queue thread, beyond what blk_test.ts checks request
 * by request: with a transport that hands over nothing (no doorbell, no
 * irqfd) the device's own eventfds and ctx.used carry the work; and a
 * broken chain found on that thread among good ones fails the device with
 * the rule named, lets nothing of the broken request reach the file, and
 * leaves the device ready for the next activation. Behind the real
 * MmioTransport, the transport hands over the queue's doorbell (and takes
 * it back at reset), and the queue thread sets the used-buffer bit in
 * InterruptStatus before it writes the irqfd. :*/

import assert from "node:assert/strict";
import { VIRTIO_BLK_S, VIRTIO_BLK_T } from "../../lib/virtio/blk_request.ts";
import { close, eventfd, POLL, pollOne, writeAll } from "../../lib/sys/calls.ts";
import { MMIO_INT, MMIO_REG, MMIO_WINDOW, MmioTransport } from "../../lib/virtio/mmio.ts";
import { bench, header, pattern, post, readData, status } from "./blk_harness.ts";

const T = VIRTIO_BLK_T;
const S = VIRTIO_BLK_S;
const ONE = new Uint8Array(new BigUint64Array([1n]).buffer);

Deno.test("blk: without a doorbell handed over, notify() and ctx.used still carry requests and interrupts", async () => {
  await bench(async (b) => {
    const d = b.activate();
    const r = post(d, header(T.IN, 7), { inLen: 1024 });
    const w = post(d, header(T.OUT, 9), { out: pattern(512, 5) });
    b.notify();
    await b.settle();
    const deadline = Date.now() + 20_000;
    while (b.usedCalls === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 1));
    assert.ok(b.usedCalls >= 1, "ctx.used was called");
    assert.equal(status(b, r), S.OK);
    assert.equal(status(b, w), S.OK);
    assert.deepEqual(readData(b, r), b.initial.subarray(7 * 512, 9 * 512));
    assert.deepEqual(b.file().subarray(9 * 512, 10 * 512), pattern(512, 5));
    assert.deepEqual(b.failures, []);
  }, { wired: false });
});

Deno.test("blk: a broken chain among good ones fails the device, touches nothing, and the next activation works", async () => {
  await bench(async (b) => {
    const d = b.prepare();
    const good = post(d, header(T.IN, 1), { inLen: 512 });
    post(d, header(T.OUT, 2), { out: pattern(512, 1), statusLen: 0 });
    b.start();
    await b.settle();
    assert.equal(b.failures.length, 1);
    assert.match(b.failures[0]!, /\[blk-no-status\]$/);
    assert.ok(d.used().every((u) => u.id === good), "only the good request may have been answered");
    assert.deepEqual(b.file(), b.initial, "the broken write never reached the file");
    const d2 = b.activate({ base: 0x20000 });
    const r = post(d2, header(T.IN, 3), { inLen: 512 });
    b.notify();
    await b.settle();
    assert.equal(status(b, r), S.OK);
    assert.deepEqual(readData(b, r), b.initial.subarray(3 * 512, 4 * 512));
  });
});

Deno.test("blk: behind MmioTransport the queue thread takes the doorbell, sets InterruptStatus, raises the irqfd", async () => {
  await bench(async (b) => {
    const image = new SharedArrayBuffer(MMIO_WINDOW);
    const doorbell = eventfd();
    const irqfd = eventfd();
    const watched: string[] = [];
    const t = new MmioTransport(b.dev, {
      memory: b.mem,
      loop: b.loop,
      image,
      interrupt: () => writeAll(irqfd, ONE),
      log: (line) => b.logs.push(line),
      wiring: { doorbells: [doorbell], irqfd, watch: (q, on) => watched.push(`${q}:${on}`) },
    });
    try {
      const d = b.prepare();
      const R = MMIO_REG;
      const w = (reg: number, v: number | bigint) => t.write(reg, 4, Number(v));
      w(R.STATUS, 1);
      w(R.STATUS, 3);
      w(R.DRIVER_FEATURES_SEL, 1);
      w(R.DRIVER_FEATURES, 1);
      w(R.STATUS, 11);
      w(R.QUEUE_SEL, 0);
      w(R.QUEUE_NUM, d.size);
      w(R.QUEUE_DESC_LOW, d.layout.desc);
      w(R.QUEUE_AVAIL_LOW, d.layout.avail);
      w(R.QUEUE_USED_LOW, d.layout.used);
      w(R.QUEUE_READY, 1);
      w(R.STATUS, 15);
      assert.equal(t.status, 15, "DRIVER_OK");
      assert.deepEqual(watched, ["0:false"], "the transport stopped watching the doorbell it handed over");
      const r = post(d, header(T.IN, 2), { inLen: 1024 });
      writeAll(doorbell, ONE);
      const deadline = Date.now() + 20_000;
      while ((d.usedIdx() === 0 || pollOne(irqfd, POLL.IN, 0) === 0) && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
      assert.deepEqual(d.used().map((u) => u.id), [r]);
      assert.equal(status(b, r), S.OK);
      assert.deepEqual(readData(b, r), b.initial.subarray(1024, 2048));
      assert.notEqual(pollOne(irqfd, POLL.IN, 0), 0, "the irqfd was written");
      assert.equal(t.read(R.INTERRUPT_STATUS, 4) & MMIO_INT.VRING, MMIO_INT.VRING, "InterruptStatus has the used bit");
      w(R.STATUS, 0);
      assert.deepEqual(watched, ["0:false", "0:true"], "a reset hands the doorbell back to the transport");
      assert.equal(b.dev.inFlight, 0);
    } finally {
      t.reset();
      close(doorbell);
      close(irqfd);
    }
  });
});
