/*T:401 The virtqueue tests, by hand, in four files. This one takes the
 * polite path: a TestDriver posts chains (one buffer, several, through an
 * indirect table), the queue pops them back and returns them, and we read
 * the used ring as the guest would; then the indices that start at 65533
 * and cross zero. queue_notify_test.ts covers the two ways the driver tunes
 * interrupts (the NO_INTERRUPT bit, and used_event exactly on and either
 * side of the boundary) and the device tunes doorbells.
 * queue_layout_test.ts checks what the constructor accepts. Last,
 * queue_rules_test.ts plays the adversary: one test per rule, each checking
 * the rule id, that the message names the queue, and that a refused pop
 * left the queue where it was. :*/

import assert from "node:assert/strict";
import { IoVecs } from "../../lib/sys/iovec.ts";
import { chainIoVecs, readableData, readChain, writeChain } from "../../lib/virtio/chain.ts";
import {
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
  VRING_DESC_F_INDIRECT,
  VRING_DESC_F_NEXT,
  VRING_DESC_F_WRITE,
  VRING_USED_F_NO_NOTIFY,
} from "../../lib/virtio/queue.ts";
import { TestDriver } from "./driver.ts";
import { assertRefused, bytes, I, MiB, N, NAME, popOk, R, setup, W, withMem } from "./queue_rig.ts";

Deno.test("queue: constants match virtio_ring.h", () => {
  assert.deepEqual([VRING_DESC_F_NEXT, VRING_DESC_F_WRITE, VRING_DESC_F_INDIRECT], [1, 2, 4]);
  assert.equal(VRING_USED_F_NO_NOTIFY, 1);
  assert.deepEqual([VIRTIO_RING_F_INDIRECT_DESC, VIRTIO_RING_F_EVENT_IDX], [28, 29]);
});

Deno.test("queue: one readable buffer is popped, and then nothing", () => {
  setup({}, (d, q, mem) => {
    assert.equal(q.name, NAME);
    assert.equal(q.size, 8);
    assert.equal(q.hasAvailable(), false);
    assert.equal(q.pop(), undefined);
    const head = d.add([bytes(1, 2, 3)], []);
    assert.equal(q.hasAvailable(), true);
    const c = popOk(q);
    assert.equal(c.head, head);
    assert.deepEqual(c.readable, d.posted(head)!.readable);
    assert.deepEqual(c.writable, []);
    assert.equal(c.readableBytes, 3);
    assert.equal(c.writableBytes, 0);
    assert.deepEqual(mem.slice(c.readable[0]!.addr, 3), bytes(1, 2, 3));
    assert.equal(q.lastAvailIdx, 1);
    assert.equal(q.hasAvailable(), false);
    assert.equal(q.pop(), undefined);
  });
});

Deno.test("queue: a multi-buffer chain comes back readable first, then writable", () => {
  setup({}, (d, q, mem) => {
    const head = d.add([bytes(1), bytes(2, 3), bytes(4, 5, 6)], [10, 20]);
    assert.equal(d.freeCount, 3);
    const c = popOk(q);
    const p = d.posted(head)!;
    assert.equal(c.head, head);
    assert.deepEqual(c.readable, p.readable);
    assert.deepEqual(c.writable, p.writable);
    assert.equal(c.readable.length, 3);
    assert.equal(c.writable.length, 2);
    assert.equal(c.readableBytes, 6);
    assert.equal(c.writableBytes, 30);
    assert.deepEqual(readableData(mem, c), bytes(1, 2, 3, 4, 5, 6));
  });
});

Deno.test("queue: an indirect table is followed, and may come after direct descriptors", () => {
  setup({}, (d, q, mem) => {
    const head = d.add([bytes(9, 8), bytes(7)], [4, 5], { indirect: true });
    assert.equal(d.freeCount, 7);
    const c = popOk(q);
    const p = d.posted(head)!;
    assert.equal(c.head, head);
    assert.deepEqual(c.readable, p.readable);
    assert.deepEqual(c.writable, p.writable);
    assert.deepEqual(readableData(mem, c), bytes(9, 8, 7));

    // Two direct readable descriptors, then an indirect one (its WRITE flag must be ignored).
    const a = d.alloc(2);
    mem.write(a, bytes(0xaa, 0xbb));
    const b = d.alloc(16);
    const t = d.alloc(32, 16);
    d.writeTable(t, [{ addr: a + 1, len: 1, flags: R | N, next: 1 }, { addr: b, len: 16, flags: W, next: 0 }]);
    d.writeDesc(5, { addr: a, len: 1, flags: N, next: 6 });
    d.writeDesc(6, { addr: t, len: 32, flags: I | W, next: 0 });
    d.publish(5);
    const c2 = popOk(q);
    assert.equal(c2.head, 5);
    assert.deepEqual(c2.readable, [{ addr: a, len: 1 }, { addr: a + 1, len: 1 }]);
    assert.deepEqual(c2.writable, [{ addr: b, len: 16 }]);
    assert.deepEqual(readableData(mem, c2), bytes(0xaa, 0xbb));
  });
});

Deno.test("queue: pushUsed writes {id, len} then used.idx; the driver reads it back", () => {
  setup({}, (d, q, mem) => {
    const h1 = d.add([bytes(1)], [8]);
    const h2 = d.add([], [4], { indirect: true });
    const c1 = popOk(q);
    const c2 = popOk(q);
    assert.equal(writeChain(mem, c1, bytes(1, 2, 3, 4, 5)), 5);
    q.pushUsed(c1.head, 5);
    assert.equal(d.usedIdx(), 1);
    const used = Number(d.layout.used);
    assert.equal(mem.readU32(used + 4), h1);
    assert.equal(mem.readU32(used + 8), 5);
    assert.equal(writeChain(mem, c2, bytes(7, 7, 7, 7, 7, 7)), 4, "a short chain takes only what fits");
    q.pushUsed(c2.head, 4);
    assert.equal(mem.readU32(used + 12), h2);
    assert.equal(mem.readU32(used + 16), 4);
    assert.deepEqual(d.used(), [{ id: h1, len: 5 }, { id: h2, len: 4 }]);
    assert.deepEqual(d.used(), []);
    assert.deepEqual(d.writableData(h1), bytes(1, 2, 3, 4, 5));
    assert.deepEqual(d.writableData(h2), bytes(7, 7, 7, 7));
    assert.equal(d.freeCount, 8, "all descriptors are back on the driver's free list");
  });
});

Deno.test("queue: pushUsed refuses a head past the ring or a length that is not a u32", () => {
  setup({}, (d, q) => {
    for (const head of [-1, 8, 1.5, NaN]) assert.throws(() => q.pushUsed(head, 0), RangeError);
    for (const len of [-1, 2 ** 32, 0.5, NaN]) assert.throws(() => q.pushUsed(0, len), RangeError);
    assert.equal(d.usedIdx(), 0);
    q.pushUsed(7, 0xffffffff);
    assert.equal(d.usedIdx(), 1);
  });
});

Deno.test("queue: unpop gives the last popped chains back, in order", () => {
  setup({}, (d, q) => {
    assert.throws(() => q.unpop(), /unpop/);
    const h1 = d.add([bytes(1)], []);
    const h2 = d.add([bytes(2)], []);
    assert.equal(popOk(q).head, h1);
    q.unpop();
    assert.equal(q.lastAvailIdx, 0);
    assert.equal(q.hasAvailable(), true);
    assert.equal(popOk(q).head, h1);
    assert.equal(popOk(q).head, h2);
    q.unpop();
    q.unpop();
    assert.throws(() => q.unpop(), /unpop/);
    assert.equal(popOk(q).head, h1);
    q.pushUsed(h1, 0);
    assert.throws(() => q.unpop(), /unpop/, "a chain already returned cannot be unpopped");
    assert.equal(popOk(q).head, h2);
    assert.equal(q.pop(), undefined);
  });
});

Deno.test("queue: unpop at index 0 wraps back to 65535", () => {
  setup({ startIndex: 0 }, (d, q) => {
    assert.equal(q.lastAvailIdx, 0);
    d.add([bytes(1)], []);
    popOk(q);
    q.unpop();
    assert.equal(q.lastAvailIdx, 0);
  });
  setup({ startIndex: 65535 }, (d, q) => {
    d.add([bytes(1)], []);
    popOk(q);
    assert.equal(q.lastAvailIdx, 0);
    q.unpop();
    assert.equal(q.lastAvailIdx, 65535);
  });
});

Deno.test("queue: hasAvailable does not validate; pop does", () => {
  setup({}, (d, q, mem) => {
    d.publish(99);
    assert.equal(q.hasAvailable(), true);
    assertRefused(q, mem, "desc-index");
    assert.equal(q.hasAvailable(), true);
  });
});

Deno.test("queue: zero-length buffers are checked for order but left out, whatever their address", () => {
  setup({}, (d, q) => {
    const a = d.alloc(4);
    d.writeDesc(0, { addr: 0xffff_ffff_ffff_ffffn, len: 0, flags: N, next: 1 });
    d.writeDesc(1, { addr: a, len: 4, flags: N, next: 2 });
    d.writeDesc(2, { addr: 1n << 60n, len: 0, flags: W, next: 0 });
    d.publish(0);
    const c = popOk(q);
    assert.deepEqual(c.readable, [{ addr: a, len: 4 }]);
    assert.deepEqual(c.writable, []);
    assert.equal(c.writableBytes, 0);
  });
});

Deno.test("queue: a size-1 queue and a size-32768 queue both work", () => {
  withMem(MiB, (mem) => {
    const d = new TestDriver(mem, { base: 0, size: 1 });
    const q = d.queue(NAME);
    for (let k = 0; k < 5; k++) {
      // One descriptor: a single buffer, or an indirect table holding two.
      const h = k % 2 ? d.add([bytes(k)], [1], { indirect: true }) : d.add([], [1]);
      assert.equal(h, 0);
      const c = popOk(q);
      assert.equal(c.readable.length, k % 2);
      q.pushUsed(c.head, 1);
      assert.deepEqual(d.used(), [{ id: 0, len: 1 }]);
    }
  });
  withMem(2 * MiB, (mem) => {
    const d = new TestDriver(mem, { base: 0, size: 32768, startIndex: 65530 });
    const q = d.queue(NAME);
    const heads = Array.from({ length: 10 }, (_, k) => d.add([bytes(k)], [], { indirect: k % 2 === 1 }));
    for (const h of heads) assert.equal(popOk(q).head, h);
  });
});

Deno.test("queue: avail and used indices cross 65535 -> 0 without a hitch", () => {
  for (const eventIdx of [false, true]) {
    setup({ size: 4, startIndex: 65533, eventIdx }, (d, q, mem) => {
      assert.equal(q.lastAvailIdx, 65533);
      assert.equal(d.usedIdx(), 65533);
      const used = Number(d.layout.used);
      for (let round = 0; round < 6; round++) {
        const h = d.add([bytes(round)], [2], { indirect: round % 2 === 0 });
        const c = popOk(q);
        assert.equal(c.head, h);
        assert.deepEqual(readableData(mem, c), bytes(round));
        const slot = (65533 + round) % 4;
        q.pushUsed(c.head, 2);
        assert.equal(mem.readU32(used + 4 + 8 * slot), h, `used slot ${slot}`);
        assert.equal(q.lastAvailIdx, (65533 + round + 1) & 0xffff);
        assert.equal(d.usedIdx(), (65533 + round + 1) & 0xffff);
        assert.deepEqual(d.used(), [{ id: h, len: 2 }]);
      }
      assert.equal(q.lastAvailIdx, 3);
    });
  }
});

Deno.test("queue: a full ring posted across the wrap is popped whole", () => {
  setup({ size: 8, startIndex: 65532 }, (d, q) => {
    const heads = Array.from({ length: 8 }, (_, k) => d.add([bytes(k)], []));
    assert.equal(d.availIdx, 4);
    assert.equal(d.freeCount, 0);
    for (const h of heads) assert.equal(popOk(q).head, h);
    assert.equal(q.pop(), undefined);
    for (const h of heads) q.pushUsed(h, 0);
    assert.deepEqual(d.used().map((u) => u.id), heads);
  });
});

Deno.test("queue: avail.idx exactly `size` ahead is fine, one more is not (across the wrap)", () => {
  setup({ size: 4, startIndex: 65534 }, (d, q, mem) => {
    for (let k = 0; k < 4; k++) d.add([bytes(k)], []);
    assert.equal(d.availIdx, 2, "4 entries ahead, across the wrap");
    assert.equal(popOk(q).readableBytes, 1);
    q.unpop();
    d.setAvailIdx(3);
    const err = assertRefused(q, mem, "avail-index");
    assert.match(err.message, /avail\.idx 3 is 5 entries ahead .*65534/);
  });
});

Deno.test("chain helpers: readChain, writeChain and chainIoVecs honour skip and max", () => {
  setup({}, (d, q, mem) => {
    const head = d.add([bytes(1, 2), bytes(3), bytes(4, 5, 6)], [2, 3]);
    const c = popOk(q);
    const dst = new Uint8Array(4);
    assert.equal(readChain(mem, c, dst, 1), 4);
    assert.deepEqual(dst, bytes(2, 3, 4, 5));
    assert.equal(readChain(mem, c, new Uint8Array(10), 5), 1);
    assert.equal(readChain(mem, c, new Uint8Array(10), 6), 0);
    assert.deepEqual(readableData(mem, c, 2, 2), bytes(3, 4));
    assert.deepEqual(readableData(mem, c, 9), bytes());
    assert.equal(writeChain(mem, c, bytes(9, 8, 7), 1), 3);
    q.pushUsed(head, 4);
    d.used();
    assert.deepEqual(d.writableData(head), bytes(0, 9, 8, 7));
    const iov = new IoVecs(8);
    assert.equal(chainIoVecs(mem, c.readable, iov, 1, 3), 3);
    assert.equal(iov.count, 3);
    const p = d.posted(head)!;
    assert.equal(iov.raw[0], mem.hostAddress + BigInt(p.readable[0]!.addr + 1));
    assert.equal(iov.raw[1], 1n);
    assert.equal(iov.raw[2], mem.hostAddress + BigInt(p.readable[1]!.addr));
    assert.equal(iov.raw[3], 1n);
    assert.equal(iov.raw[4], mem.hostAddress + BigInt(p.readable[2]!.addr));
    assert.equal(iov.raw[5], 1n);
  });
});
