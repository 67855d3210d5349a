/*T:506 The device's queue thread, beyond what device_test.ts checks request
 * by request: a broken chain found on that thread among good ones fails the
 * device with the rule named, lets nothing of the broken request reach the
 * file, and leaves the device ready for the next activation; an irqfd that
 * cannot be written fails it too. Behind the real MmioTransport, a
 * QueueNotify write reaches the queue thread through the doorbell, and the
 * queue thread sets the used-buffer bit in InterruptStatus before it writes
 * the irqfd.
 *
 * Then what a slow host does to the threads, made to happen on any host
 * by acting while they are still starting: activations withdrawn before
 * the queue thread got to them must not make the device look done before
 * the one that counts is answered, and requests that come before the I/O
 * threads have started must not wait for them. :*/

import assert from "node:assert/strict";
import { VIRTIO_BLK_S, VIRTIO_BLK_T } from "../../../lib/virtio/blk/request.ts";
import { close, eventfd, O, open, POLL, pollOne } from "../../../lib/sys/calls.ts";
import { MMIO_INT, MMIO_REG, MMIO_WINDOW, MmioTransport } from "../../../lib/virtio/mmio/transport.ts";
import { bench, BlkBench, header, pattern, post, readData, status } from "./harness.ts";
import type { TestDriver } from "../driver.ts";

const T = VIRTIO_BLK_T;
const S = VIRTIO_BLK_S;

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

Deno.test("blk: an irqfd that cannot be written fails the device naming it and the errno, not a lost interrupt", async () => {
  const readOnly = open("/dev/null", O.RDONLY);
  try {
    await bench(async (b) => {
      const d = b.activate();
      post(d, header(T.IN, 1), { inLen: 512 });
      b.notify();
      const deadline = Date.now() + 20_000;
      while (b.failures.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      assert.equal(b.failures.length, 1, "the device failed");
      assert.match(b.failures[0]!, new RegExp(`write on .*irqfd ${readOnly}.*EBADF`));
    }, { irqfd: readOnly });
  } finally {
    close(readOnly);
  }
});

Deno.test("blk: behind MmioTransport a QueueNotify reaches the queue thread, which sets InterruptStatus and raises the irqfd", async () => {
  await bench(async (b) => {
    const image = new SharedArrayBuffer(MMIO_WINDOW);
    const irqfd = eventfd();
    const t = new MmioTransport(b.dev, {
      memory: b.mem,
      loop: b.loop,
      image,
      doorbells: [b.doorbell],
      irqfd,
      log: (line) => b.logs.push(line),
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
      const r = post(d, header(T.IN, 2), { inLen: 1024 });
      w(R.QUEUE_NOTIFY, 0);
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
      assert.equal(t.status, 0, "reset");
      await b.settle();
      assert.equal(b.dev.inFlight, 0);
    } finally {
      t.reset();
      close(irqfd);
    }
  });
});

Deno.test("blk: activations withdrawn before the queue thread got to them do not make the device look done", async () => {
  // The queue thread is still starting, so every start message below waits in its queue, and each reset finds
  // a session it has not acknowledged and does not wait. The thread then works through the withdrawn ones
  // before it gets to the last: all that time the device must still look busy.
  const b = BlkBench.create();
  try {
    const d = b.prepare();
    for (let k = 0; k < 200; k++) {
      b.start();
      b.dev.reset();
    }
    const r = post(d, header(T.IN, 3), { inLen: 512 });
    b.start();
    // Watched without yielding, so that even a short wrong "done" is seen. The bound takes in the thread's
    // start, which a slow host makes long.
    const deadline = Date.now() + 120_000;
    while (b.dev.busy) {
      if (Date.now() > deadline) {
        throw new Error(`the last activation was not answered within 120 s (queue thread up: ${b.dev.started})`);
      }
    }
    assert.deepEqual(d.used().map((u) => u.id), [r], "not busy only once the last activation's request is answered");
    await b.settle();
    assert.equal(status(b, r), S.OK);
    assert.deepEqual(readData(b, r), b.initial.subarray(3 * 512, 4 * 512));
    assert.deepEqual(b.failures, []);
  } finally {
    await b.close();
  }
});

Deno.test("blk: requests that come before the I/O threads have started do not wait for them", async () => {
  const b = BlkBench.create({ ioThreads: 2 });
  try {
    const post4 = (d: TestDriver, first: number) =>
      [0, 1, 2, 3].map((k) => post(d, header(T.IN, first + k), { inLen: 512 }));
    const answered = async (heads: number[], first: number) => {
      const deadline = Date.now() + 20_000;
      while (b.dev.busy) {
        const handedOff = b.dev.peakInFlight;
        if (handedOff > 0 && b.dev.ioThreadsRunning === 0) {
          assert.fail(`${handedOff} requests were left to I/O threads none of which had started`);
        }
        if (Date.now() > deadline) throw new Error(`device still busy: ${b.dev.inFlight} requests in flight`);
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
      await b.settle();
      for (const [k, head] of heads.entries()) {
        assert.equal(status(b, head), S.OK);
        assert.deepEqual(readData(b, head), b.initial.subarray((first + k) * 512, (first + k + 1) * 512));
      }
    };
    await b.ready({ ioThreads: false });
    assert.equal(b.dev.ioThreadsRunning, 0, "the I/O threads start well after the queue thread");
    const d = b.prepare();
    const early = post4(d, 0);
    b.start();
    await answered(early, 0);
    assert.equal(b.dev.peakInFlight, 0, "the queue thread did them itself");
    await b.ready();
    const d2 = b.activate({ base: 0x20000 });
    const late = post4(d2, 8);
    b.notify();
    await answered(late, 8);
    assert.ok(b.dev.peakInFlight > 1, "once they run, the I/O threads get the batch");
    assert.deepEqual(b.failures, []);
  } finally {
    await b.close();
  }
});
