/*T:505 The block device on the host, request by request: what it tells the
 * driver in its configuration, what each request type does to the file and
 * to guest memory, every rule that answers IOERR or UNSUPP, the one rule
 * that fails the device, and several requests in flight at once (resets
 * are in reset_test.ts). The device serves its queue on its own thread, so
 * a test that wants a whole batch seen at once posts it before activating
 * the device (prepare, then start), and every check of the outcome waits for the device to settle. :*/

import assert from "node:assert/strict";
import { BlockDevice } from "../../../lib/virtio/blk/device.ts";
import { VIRTIO_ID } from "../../../lib/virtio/device.ts";
import { ID_BYTES, VIRTIO_BLK_F, VIRTIO_BLK_S, VIRTIO_BLK_T } from "../../../lib/virtio/blk/request.ts";
import { fnv1a } from "../../helpers/launcher.ts";
import { bench, diskPattern, header, pattern, post, readData, status } from "./harness.ts";

const T = VIRTIO_BLK_T;
const S = VIRTIO_BLK_S;

Deno.test("blk: configuration space and features", async () => {
  await bench(async (b) => {
    const dev = b.dev;
    assert.equal(dev.deviceId, VIRTIO_ID.BLOCK);
    assert.deepEqual(dev.queueSizes, [256]);
    const cfg = new DataView(dev.config.buffer, dev.config.byteOffset, dev.config.byteLength);
    assert.equal(cfg.getBigUint64(0, true), 64n, "capacity in 512-byte sectors");
    assert.equal(cfg.getUint32(12, true), 254, "seg_max");
    assert.equal(cfg.getUint32(20, true), 512, "blk_size");
    const f = (n: number) => (dev.features >> BigInt(n)) & 1n;
    assert.equal(f(VIRTIO_BLK_F.SEG_MAX), 1n);
    assert.equal(f(VIRTIO_BLK_F.BLK_SIZE), 1n);
    assert.equal(f(VIRTIO_BLK_F.FLUSH), 1n);
    assert.equal(f(VIRTIO_BLK_F.RO), 0n);
    assert.match(dev.serial, /^disk\.img-[0-9a-f]+$/);
    assert.ok(dev.serial.length <= ID_BYTES);
    await Promise.resolve();
  });
  await bench(async (b) => {
    assert.equal((b.dev.features >> BigInt(VIRTIO_BLK_F.RO)) & 1n, 1n, "RO offered with ,ro");
    assert.equal(b.dev.sectors, 3, "a partial last sector is not part of the disk");
    await Promise.resolve();
  }, { readOnly: true, diskBytes: 3 * 512 + 100 });
});

Deno.test("blk: files that cannot be disks are refused with one line naming them", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "lguest-blk-" });
  try {
    const fifo = `${dir}/pipe`;
    await new Deno.Command("mkfifo", { args: [fifo] }).output();
    const cases: Array<[string, RegExp]> = [
      [`${dir}/missing.img`, /missing\.img' does not exist/],
      [dir, /is a directory, not a regular file/],
      ["/dev/null", /'\/dev\/null' is a character device, not a regular file/],
      [fifo, /is a pipe, not a regular file/],
    ];
    for (const [path, re] of cases) {
      assert.throws(() => BlockDevice.open(path), (e: Error) => {
        assert.match(e.message, re);
        assert.ok(e.message.includes(path), e.message);
        assert.ok(!e.message.includes("\n"), "one line");
        return true;
      });
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("blk: a file that cannot be opened for writing is refused unless ,ro is given", () => {
  const busy = Deno.execPath();
  assert.throws(() => BlockDevice.open(busy), (e: Error) => {
    assert.ok(
      e.message.startsWith(`block device file '${busy}' cannot be opened for reading and writing: `),
      e.message,
    );
    assert.ok(e.message.endsWith("(add ,ro for a read-only disk)"), e.message);
    return true;
  });
  const dev = BlockDevice.open(busy, { readOnly: true });
  try {
    assert.equal(dev.sectors, Math.floor(Deno.statSync(busy).size / 512));
  } finally {
    dev.close();
  }
});

Deno.test("blk: reads land in guest memory exactly as the file has them", async () => {
  await bench(async (b) => {
    const d = b.activate();
    const heads = [
      post(d, header(T.IN, 0), { inLen: 512 }),
      post(d, header(T.IN, 5), { inLen: 3 * 512, pieces: 3 }),
      post(d, header(T.IN, 63), { inLen: 512, indirect: true }),
      post(d, header(T.IN, 10), { inLen: 2 * 512, pieces: 5, indirect: true }),
    ];
    const sectors = [0, 5, 63, 10];
    b.notify();
    await b.settle();
    const used = d.used();
    assert.deepEqual(used.map((u) => u.id).sort(), [...heads].sort());
    heads.forEach((head, k) => {
      const data = readData(b, head);
      const at = sectors[k]! * 512;
      assert.equal(status(b, head), S.OK);
      assert.deepEqual(data, b.initial.subarray(at, at + data.length));
      assert.equal(used.find((u) => u.id === head)!.len, data.length + 1, "used length: data plus status");
    });
    assert.deepEqual(b.failures, []);
  });
});

Deno.test("blk: writes reach the file (checksum), flush succeeds, the file keeps its size", async () => {
  await bench(async (b) => {
    const d = b.activate();
    const a = pattern(512, 1);
    const c = pattern(4 * 512, 2);
    const last = pattern(512, 3);
    const heads = [
      post(d, header(T.OUT, 2), { out: a }),
      post(d, header(T.OUT, 20), { out: c, pieces: 4, indirect: true }),
      post(d, header(T.OUT, 63), { out: last }),
    ];
    b.notify();
    await b.settle();
    const flush = post(d, header(T.FLUSH, 0));
    b.notify();
    await b.settle();
    const used = d.used();
    assert.equal(used.length, 4);
    for (const u of used) {
      assert.equal(status(b, u.id), S.OK);
      assert.equal(u.len, 1, "only the status byte was written");
    }
    assert.ok(used.some((u) => u.id === flush));
    const expect = b.initial.slice();
    expect.set(a, 2 * 512);
    expect.set(c, 20 * 512);
    expect.set(last, 63 * 512);
    const file = b.file();
    assert.equal(file.length, b.initial.length);
    assert.equal(fnv1a(file), fnv1a(expect));
    assert.deepEqual(file, expect);
    assert.equal(heads.length, 3);
  });
});

Deno.test("blk: GET_ID returns the serial, zero padded to 20 bytes", async () => {
  await bench(async (b) => {
    const d = b.activate();
    const full = post(d, header(T.GET_ID, 0), { inLen: ID_BYTES });
    const short = post(d, header(T.GET_ID, 0), { inLen: 4 });
    b.notify();
    await b.settle();
    const id = new Uint8Array(ID_BYTES);
    new TextEncoder().encodeInto(b.dev.serial, id);
    assert.deepEqual(readData(b, full), id);
    assert.deepEqual(readData(b, short), id.subarray(0, 4));
    assert.equal(status(b, full), S.OK);
    const used = d.used();
    assert.equal(used.find((u) => u.id === full)!.len, ID_BYTES + 1);
  });
});

Deno.test("blk: a read-only disk answers writes with IOERR and leaves the file alone", async () => {
  await bench(async (b) => {
    const d = b.activate();
    const w = post(d, header(T.OUT, 1), { out: pattern(512, 9) });
    const f = post(d, header(T.FLUSH, 0));
    const r = post(d, header(T.IN, 1), { inLen: 512 });
    b.notify();
    await b.settle();
    assert.equal(status(b, w), S.IOERR);
    assert.equal(status(b, f), S.OK);
    assert.equal(status(b, r), S.OK);
    assert.deepEqual(readData(b, r), b.initial.subarray(512, 1024));
    assert.deepEqual(b.file(), b.initial);
    assert.ok(b.logs.some((l) => l.includes("[blk-read-only]")), b.logs.join("\n"));
  }, { readOnly: true });
});

Deno.test("blk: out-of-range, misaligned, malformed and unknown requests are refused, the file untouched", async () => {
  await bench(async (b) => {
    const d = b.prepare();
    const cases: Array<[number, number, string]> = [
      [post(d, header(T.IN, 64), { inLen: 512 }), S.IOERR, "blk-range"],
      [post(d, header(T.IN, 63), { inLen: 1024 }), S.IOERR, "blk-range"],
      [post(d, header(T.OUT, 0xffff_ffff_ffff_ffffn), { out: pattern(512, 1) }), S.IOERR, "blk-range"],
      [post(d, header(T.OUT, 64), { out: pattern(512, 1) }), S.IOERR, "blk-range"],
      [post(d, header(T.IN, 0), { inLen: 100 }), S.IOERR, "blk-align"],
      [post(d, header(T.OUT, 0), { out: pattern(513, 1) }), S.IOERR, "blk-align"],
      [post(d, header(T.IN, 0).subarray(0, 12), { inLen: 512 }), S.IOERR, "blk-header"],
      [post(d, header(T.IN, 0), { out: pattern(512, 1), inLen: 512 }), S.IOERR, "blk-layout"],
      [post(d, header(T.OUT, 0), { out: pattern(512, 1), statusLen: 2 }), S.IOERR, "blk-layout"],
      [post(d, header(11, 0), { out: pattern(512, 1) }), S.UNSUPP, "blk-type"],
      [post(d, header(0xdead, 0)), S.UNSUPP, "blk-type"],
    ];
    b.start();
    await b.settle();
    const used = d.used();
    assert.equal(used.length, cases.length);
    for (const [head, want, rule] of cases) {
      assert.equal(status(b, head), want, `request ${head} (${rule})`);
      assert.ok(b.logs.some((l) => l.includes(`request ${head}:`) && l.endsWith(`[${rule}]`)), rule);
    }
    assert.equal(b.interrupts, 1, "one interrupt for the whole batch");
    assert.equal(b.isrMissing, 0, "the used-buffer bit was set in InterruptStatus before the interrupt");
    assert.deepEqual(b.file(), b.initial);
    assert.deepEqual(b.failures, []);
  });
});

Deno.test("blk: a zero-length transfer succeeds without touching the file", async () => {
  await bench(async (b) => {
    const d = b.activate();
    const r = post(d, header(T.IN, 64));
    const w = post(d, header(T.OUT, 64));
    b.notify();
    await b.settle();
    assert.equal(status(b, r), S.OK);
    assert.equal(status(b, w), S.OK);
    assert.deepEqual(b.file(), b.initial);
  });
});

Deno.test("blk: a chain without a status byte fails the device naming the rule", async () => {
  await bench(async (b) => {
    const d = b.activate();
    post(d, header(T.IN, 0), { statusLen: 0 });
    b.notify();
    await b.settle();
    assert.equal(b.failures.length, 1);
    assert.match(b.failures[0]!, /^virtio-blk queue 0: request \d+ has no device-writable byte .*\[blk-no-status\]$/);
    assert.deepEqual(d.used(), []);
    const d2 = b.activate();
    const r = post(d2, header(T.IN, 1), { inLen: 512 });
    b.notify();
    await b.settle();
    assert.equal(status(b, r), S.OK, "after a reset the device works again");
  });
});

Deno.test("blk: a disk with a partial last sector never reads or writes it, and never grows", async () => {
  await bench(async (b) => {
    const d = b.activate();
    const w = post(d, header(T.OUT, 3), { out: pattern(512, 4) });
    const past = post(d, header(T.OUT, 3), { out: pattern(1024, 4) });
    const r = post(d, header(T.IN, 4), { inLen: 512 });
    b.notify();
    await b.settle();
    assert.equal(status(b, w), S.OK);
    assert.equal(status(b, past), S.IOERR);
    assert.equal(status(b, r), S.IOERR);
    const file = b.file();
    assert.equal(file.length, 4 * 512 + 77);
    assert.deepEqual(file.subarray(4 * 512), b.initial.subarray(4 * 512), "the tail is untouched");
    assert.deepEqual(file.subarray(3 * 512, 4 * 512), pattern(512, 4));
  }, { diskBytes: 4 * 512 + 77 });
});

Deno.test("blk: a read the file can no longer satisfy (truncated under us) is an I/O error, not invented bytes", async () => {
  await bench(async (b) => {
    Deno.truncateSync(b.path, 32 * 512 + 100);
    const d = b.activate();
    const whole = post(d, header(T.IN, 31), { inLen: 512 });
    const torn = post(d, header(T.IN, 32), { inLen: 1024 });
    const gone = post(d, header(T.IN, 40), { inLen: 512 });
    b.notify();
    await b.settle();
    assert.equal(status(b, whole), S.OK);
    assert.equal(status(b, torn), S.IOERR);
    assert.equal(status(b, gone), S.IOERR);
    const used = d.used();
    assert.equal(used.find((u) => u.id === torn)!.len, 0, "a failed read reports no data written");
    assert.ok(
      b.logs.some((l) => l.includes(`request ${torn}: read of 1024 bytes at 16384 failed: only 100 bytes`)),
      b.logs.join("\n"),
    );
  });
});

Deno.test("blk: many requests are in flight at once, more than the slots, all answered correctly", async () => {
  await bench(async (b) => {
    await b.ready();
    const d = b.prepare({ size: 256 });
    const writes = new Map<number, number>();
    const reads = new Map<number, number>();
    for (let k = 0; k < 100; k++) {
      if (k % 2 === 0) {
        writes.set(post(d, header(T.OUT, k / 2), { out: pattern(512, k), indirect: true }), k);
      } else reads.set(post(d, header(T.IN, 50 + (k % 14)), { inLen: 512, indirect: true }), k);
    }
    b.start();
    await b.settle();
    assert.equal(b.dev.peakInFlight, 64, "every slot was busy before any completion was collected");
    const used = d.used();
    assert.equal(used.length, 100);
    assert.equal(new Set(used.map((u) => u.id)).size, 100);
    for (const [head, k] of reads) {
      assert.equal(status(b, head), S.OK);
      const at = (50 + (k % 14)) * 512;
      assert.deepEqual(readData(b, head), b.initial.subarray(at, at + 512));
    }
    const file = b.file();
    for (const [head, k] of writes) {
      assert.equal(status(b, head), S.OK);
      const sector = k / 2;
      assert.deepEqual(file.subarray(sector * 512, sector * 512 + 512), pattern(512, k));
    }
  }, { ioThreads: 2 });
});

Deno.test("blk: with EVENT_IDX the device asks to be notified once it has drained the queue", async () => {
  await bench(async (b) => {
    const d = b.activate({ eventIdx: true, startIndex: 0xfffe });
    await b.settle();
    post(d, header(T.IN, 0), { inLen: 512 });
    assert.ok(d.needsNotify());
    b.notify();
    await b.settle();
    assert.equal(d.used().length, 1);
    post(d, header(T.GET_ID, 0), { inLen: 20 });
    assert.ok(d.needsNotify(), "avail_event was moved on, so the next request rings the bell");
    b.notify();
    await b.settle();
    assert.equal(d.used().length, 1);
    assert.equal(diskPattern(0), b.initial[0]);
  });
});
