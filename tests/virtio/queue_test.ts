/*T:401 The virtqueue tests, by hand. First the polite path: a TestDriver
 * posts chains (one buffer, several, through an indirect table), the queue
 * pops them back and returns them, and we read the used ring as the guest
 * would. Then the counters: indices that start at 65533 and cross zero, and
 * the two ways the driver tunes interrupts (the NO_INTERRUPT bit, and
 * used_event exactly on and either side of the boundary) and the device
 * tunes doorbells. Last, the adversary: one test per rule, each checking
 * the rule id, that the message names the queue, and that a refused pop
 * left the queue where it was. :*/

import assert from "node:assert/strict";
import { GuestMemory } from "../../lib/memory.ts";
import { IoVecs } from "../../lib/sys/iovec.ts";
import { chainIoVecs, readableData, readChain, writeChain } from "../../lib/virtio/chain.ts";
import {
  type Chain,
  type QueueLayout,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
  Virtqueue,
  VirtqueueError,
  VRING_DESC_F_INDIRECT,
  VRING_DESC_F_NEXT,
  VRING_DESC_F_WRITE,
  VRING_USED_F_NO_NOTIFY,
} from "../../lib/virtio/queue.ts";
import { TestDriver, type TestDriverOptions } from "./driver.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const NAME = "vq-under-test";
const R = 0; // readable, no flags
const W = VRING_DESC_F_WRITE;
const N = VRING_DESC_F_NEXT;
const I = VRING_DESC_F_INDIRECT;

/** Runs `body` with fresh guest RAM, always unmapping it. */
function withMem(size: number, body: (mem: GuestMemory) => void): void {
  const mem = GuestMemory.create(size);
  try {
    body(mem);
  } finally {
    mem.close();
  }
}

/** A 1 MiB guest with a driver at 0x1000 and its queue. */
function setup(
  opts: Partial<TestDriverOptions> = {},
  body: (d: TestDriver, q: Virtqueue, mem: GuestMemory) => void,
  features: { indirect?: boolean } = {},
): void {
  withMem(MiB, (mem) => {
    const d = new TestDriver(mem, { base: 0x1000, size: 8, ...opts });
    body(d, d.queue(NAME, features), mem);
  });
}

function bytes(...values: number[]): Uint8Array {
  return Uint8Array.from(values);
}

/** Asserts that `fn` throws a VirtqueueError for `rule` naming the queue. */
function assertRule(fn: () => unknown, rule: string, queue = NAME): VirtqueueError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof VirtqueueError, `expected VirtqueueError(${rule}), got ${String(caught)}`);
  assert.equal(caught.rule, rule, caught.message);
  assert.equal(caught.queue, queue);
  assert.ok(caught.message.includes(queue), `message names the queue: ${caught.message}`);
  assert.ok(caught.message.includes(rule), `message names the rule: ${caught.message}`);
  assert.equal(caught.name, "VirtqueueError");
  return caught;
}

/** Asserts a refused pop changed neither the queue's state nor guest memory, and refuses again. */
function assertRefused(q: Virtqueue, mem: GuestMemory, rule: string): VirtqueueError {
  const before = mem.bytes.slice();
  const last = q.lastAvailIdx;
  const used = q.usedIdx;
  const err = assertRule(() => q.pop(), rule);
  assert.equal(q.lastAvailIdx, last, "lastAvailIdx not advanced");
  assert.equal(q.usedIdx, used);
  assert.ok(mem.bytes.every((b, i) => b === before[i]), "pop wrote nothing");
  assertRule(() => q.pop(), rule);
  return err;
}

function popOk(q: Virtqueue): Chain {
  const c = q.pop();
  assert.ok(c !== undefined, "a chain is available");
  return c;
}

// ---------------------------------------------------------------- polite path

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
    assert.equal(q.usedIdx, 1);
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
  setup({}, (_d, q) => {
    for (const head of [-1, 8, 1.5, NaN]) assert.throws(() => q.pushUsed(head, 0), RangeError);
    for (const len of [-1, 2 ** 32, 0.5, NaN]) assert.throws(() => q.pushUsed(0, len), RangeError);
    assert.equal(q.usedIdx, 0);
    q.pushUsed(7, 0xffffffff);
    assert.equal(q.usedIdx, 1);
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

// ---------------------------------------------------------------- wrap-around

Deno.test("queue: avail and used indices cross 65535 -> 0 without a hitch", () => {
  for (const eventIdx of [false, true]) {
    setup({ size: 4, startIndex: 65533, eventIdx }, (d, q, mem) => {
      assert.equal(q.lastAvailIdx, 65533);
      assert.equal(q.usedIdx, 65533);
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
        assert.equal(q.usedIdx, (65533 + round + 1) & 0xffff);
        assert.equal(d.usedIdx(), q.usedIdx);
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

// ---------------------------------------------------------------- interrupts and notifications

Deno.test("queue: needsInterrupt without EVENT_IDX follows NO_INTERRUPT, and only for new entries", () => {
  setup({}, (d, q) => {
    assert.equal(q.needsInterrupt(), false, "nothing used yet");
    const h = d.add([bytes(1)], []);
    popOk(q);
    q.pushUsed(h, 0);
    assert.equal(q.needsInterrupt(), true);
    assert.equal(q.needsInterrupt(), false, "nothing new since");
    d.setNoInterrupt(true);
    for (let k = 0; k < 3; k++) {
      d.add([bytes(k)], []);
      q.pushUsed(popOk(q).head, 0);
    }
    assert.equal(q.needsInterrupt(), false, "NO_INTERRUPT");
    d.setNoInterrupt(false);
    d.add([bytes(1)], []);
    q.pushUsed(popOk(q).head, 0);
    assert.equal(q.needsInterrupt(), true);
  });
});

Deno.test("queue: needsInterrupt with EVENT_IDX fires exactly when used.idx passes used_event", () => {
  for (const start of [0, 100, 65534, 65535]) {
    setup({ size: 8, eventIdx: true, startIndex: start }, (d, q) => {
      const push = (n: number) => {
        for (let k = 0; k < n; k++) {
          const h = d.add([bytes(k)], []);
          popOk(q);
          q.pushUsed(h, 0);
        }
        d.used();
      };
      // used_event = start + 1: the first entry (start -> start+1) does not cross it, the second does.
      d.setUsedEvent(start + 1);
      push(1);
      assert.equal(q.needsInterrupt(), false, `start ${start}: used.idx ${start + 1} has not passed event`);
      push(1);
      assert.equal(q.needsInterrupt(), true, `start ${start}: used.idx ${start + 2} passed event ${start + 1}`);
      // A batch of three whose last element is the event one: fires.
      const base = (start + 2) & 0xffff;
      d.setUsedEvent(base + 2);
      push(3);
      assert.equal(q.needsInterrupt(), true, "event inside the batch");
      // Event exactly at the new index (one further than the batch reaches): no.
      const b2 = (base + 3) & 0xffff;
      d.setUsedEvent(b2 + 3);
      push(3);
      assert.equal(q.needsInterrupt(), false, "event not yet reached");
      assert.equal(q.needsInterrupt(), false, "nothing new");
      push(1);
      assert.equal(q.needsInterrupt(), true, "now it is");
      // NO_INTERRUPT means nothing with EVENT_IDX.
      d.setNoInterrupt(true);
      d.setUsedEvent(q.usedIdx);
      push(1);
      assert.equal(q.needsInterrupt(), true, "avail.flags ignored with EVENT_IDX");
      // An event far behind (the driver does not want to hear): no.
      d.setUsedEvent(q.usedIdx - 100);
      push(2);
      assert.equal(q.needsInterrupt(), false, "event behind the window");
    });
  }
});

Deno.test("queue: enableNotifications without EVENT_IDX toggles NO_NOTIFY and rechecks", () => {
  setup({}, (d, q) => {
    assert.equal(q.enableNotifications(false), false);
    assert.equal(d.usedFlags(), VRING_USED_F_NO_NOTIFY);
    d.add([bytes(1)], []);
    assert.equal(d.needsNotify(), false, "driver sees NO_NOTIFY");
    assert.equal(q.enableNotifications(true), true, "a buffer arrived while notifications were off");
    assert.equal(d.usedFlags(), 0);
    popOk(q);
    assert.equal(q.enableNotifications(true), false);
    d.add([bytes(2)], []);
    assert.equal(d.needsNotify(), true, "driver rings");
    assert.equal(d.readAvailEvent(), 0, "avail_event untouched without EVENT_IDX");
  });
});

Deno.test("queue: enableNotifications with EVENT_IDX writes avail_event and rechecks", () => {
  setup({ eventIdx: true, startIndex: 65534 }, (d, q) => {
    const flags = d.usedFlags();
    d.add([bytes(1)], []);
    d.add([bytes(2)], []);
    assert.equal(d.needsNotify(), true, "avail_event = start: the first buffer rings");
    popOk(q);
    assert.equal(q.enableNotifications(false), true, "one still waiting");
    assert.equal(d.readAvailEvent(), 65534, "off writes nothing");
    popOk(q);
    assert.equal(q.lastAvailIdx, 0);
    assert.equal(q.enableNotifications(true), false);
    assert.equal(d.readAvailEvent(), 0, "avail_event = next index to read, across the wrap");
    assert.equal(d.usedFlags(), flags, "used.flags untouched with EVENT_IDX");
    d.add([bytes(3)], []);
    assert.equal(d.needsNotify(), true, "the very next buffer rings");
    d.add([bytes(4)], []);
    assert.equal(d.needsNotify(), false, "but not the one after");
    assert.equal(q.enableNotifications(true), true, "recheck sees both");
    assert.equal(d.readAvailEvent(), 0);
    popOk(q);
    popOk(q);
    assert.equal(q.enableNotifications(true), false);
    assert.equal(d.readAvailEvent(), 2);
  });
});

// ---------------------------------------------------------------- constructor validation

Deno.test("queue: constructor refuses sizes that are not powers of two from 1 to 32768", () => {
  withMem(4 * MiB, (mem) => {
    for (const size of [0, -1, 3, 6, 1.5, 32769, 65536, 2 ** 31, NaN]) {
      const layout: QueueLayout = { size, desc: 0n, avail: 0x100000n, used: 0x200000n };
      assertRule(() => new Virtqueue(mem, layout, { eventIdx: false, indirect: false }, NAME), "queue-size");
    }
    const q = new Virtqueue(mem, { size: 32768, desc: 0n, avail: 0x80000n, used: 0x100000n }, {
      eventIdx: true,
      indirect: true,
    }, NAME);
    assert.equal(q.size, 32768);
    assert.equal(q.lastAvailIdx, 0);
    assert.equal(q.usedIdx, 0);
    assert.throws(
      () => new Virtqueue(mem, q.layout, q.features, NAME, { lastAvailIdx: 65536, usedIdx: 0 }),
      RangeError,
    );
  });
});

Deno.test("queue: constructor refuses misaligned rings", () => {
  withMem(MiB, (mem) => {
    const ok: QueueLayout = { size: 8, desc: 0x1000n, avail: 0x2000n, used: 0x3000n };
    const f = { eventIdx: false, indirect: false };
    new Virtqueue(mem, ok, f, NAME);
    new Virtqueue(mem, { ...ok, desc: 0x1010n, avail: 0x2002n, used: 0x3004n }, f, NAME);
    for (
      const bad of [{ desc: 0x1008n }, { desc: 0x1001n }, { avail: 0x2001n }, { used: 0x3002n }, { used: 0x3001n }]
    ) {
      assertRule(() => new Virtqueue(mem, { ...ok, ...bad }, f, NAME), "ring-alignment");
    }
  });
});

Deno.test("queue: constructor refuses rings not wholly inside RAM", () => {
  withMem(MiB, (mem) => {
    const f = { eventIdx: true, indirect: true };
    const size = 256;
    const end = BigInt(MiB);
    const ok: QueueLayout = { size, desc: end - 16n * 256n, avail: end - 0x2000n - 528n, used: end - 0x4000n };
    new Virtqueue(mem, ok, f, NAME);
    const bad: Partial<QueueLayout>[] = [
      { desc: end - 16n * 256n + 16n },
      { desc: end },
      { desc: 1n << 63n },
      { desc: -16n },
      { avail: end - 6n - 2n * 256n + 2n },
      { used: end - 6n - 8n * 256n + 2n },
      { used: 0xffff_ffff_ffff_fff0n },
    ];
    for (const b of bad) {
      const err = assertRule(
        () => new Virtqueue(mem, { ...ok, ...b }, f, NAME),
        "ring-out-of-ram",
      );
      assert.ok(err.message.includes("0x"), err.message);
    }
  });
});

Deno.test("queue: constructor, pop and hasAvailable write nothing", () => {
  setup({}, (d, q, mem) => {
    const before = mem.bytes.slice();
    d.queue("another");
    assert.equal(q.pop(), undefined);
    q.hasAvailable();
    assert.deepEqual(mem.bytes, before);
  });
});

// ---------------------------------------------------------------- rules

Deno.test("rule avail-index: avail.idx more than a ring ahead", () => {
  setup({ size: 8, startIndex: 10 }, (d, q, mem) => {
    d.add([bytes(1)], []);
    d.setAvailIdx(10 + 9);
    const err = assertRefused(q, mem, "avail-index");
    assert.match(err.message, /avail\.idx 19 is 9 entries ahead.*\(10\).*8/);
    d.setAvailIdx(9); // behind us: 65535 ahead
    assertRefused(q, mem, "avail-index");
    d.setAvailIdx(11);
    assert.equal(popOk(q).head, 0, "fixed, the queue carries on");
  });
});

Deno.test("rule desc-index: a head past the ring", () => {
  for (const head of [8, 9, 65535]) {
    setup({}, (d, q, mem) => {
      d.publish(head);
      const err = assertRefused(q, mem, "desc-index");
      assert.ok(err.message.includes(`head ${head}`), err.message);
    });
  }
});

Deno.test("rule desc-index: a next past the ring, or past an indirect table", () => {
  setup({}, (d, q, mem) => {
    const a = d.alloc(8);
    d.writeDesc(0, { addr: a, len: 8, flags: N, next: 8 });
    d.publish(0);
    const err = assertRefused(q, mem, "desc-index");
    assert.match(err.message, /next 8, past the ring of 8/);
  });
  setup({}, (d, q, mem) => {
    const a = d.alloc(8);
    const t = d.alloc(48, 16);
    d.writeTable(t, [
      { addr: a, len: 8, flags: N, next: 2 },
      { addr: a, len: 8, flags: 0, next: 0 },
      { addr: a, len: 8, flags: N, next: 3 },
    ]);
    d.writeDesc(4, { addr: t, len: 48, flags: I, next: 0 });
    d.publish(4);
    const err = assertRefused(q, mem, "desc-index");
    assert.match(err.message, /indirect descriptor 2 .* next 3, past the indirect table of 3/);
  });
});

Deno.test("rule loop: a cycle in the ring, a self-loop, a cycle in an indirect table", () => {
  setup({}, (d, q, mem) => {
    const a = d.alloc(8);
    d.writeDesc(0, { addr: a, len: 8, flags: N, next: 1 });
    d.writeDesc(1, { addr: a, len: 8, flags: N, next: 2 });
    d.writeDesc(2, { addr: a, len: 8, flags: N, next: 0 });
    d.publish(1);
    assertRefused(q, mem, "loop");
  });
  setup({ size: 1 }, (d, q, mem) => {
    d.writeDesc(0, { addr: d.alloc(1), len: 1, flags: W | N, next: 0 });
    d.publish(0);
    assertRefused(q, mem, "loop");
  });
  setup({ size: 32768 }, (d, q, mem) => {
    // A chain through every descriptor of a big ring is fine; closing it into a ring is not.
    const a = d.alloc(1);
    for (let i = 0; i < 32768; i++) d.writeDesc(i, { addr: a, len: 1, flags: i < 32767 ? N : 0, next: i + 1 });
    d.publish(0);
    assert.equal(popOk(q).readable.length, 32768);
    d.writeDesc(32767, { addr: a, len: 1, flags: N, next: 0 });
    d.publish(0);
    assertRefused(q, mem, "loop");
  });
  setup({}, (d, q, mem) => {
    const a = d.alloc(8);
    const t = d.alloc(64, 16);
    d.writeTable(t, [
      { addr: a, len: 8, flags: N, next: 1 },
      { addr: a, len: 8, flags: N, next: 2 },
      { addr: a, len: 8, flags: N, next: 1 },
      { addr: a, len: 8, flags: 0, next: 0 },
    ]);
    d.writeDesc(3, { addr: t, len: 64, flags: I, next: 0 });
    d.publish(3);
    const err = assertRefused(q, mem, "loop");
    assert.match(err.message, /4 descriptors of its indirect table/);
  });
});

Deno.test("rule indirect-feature: INDIRECT without VIRTIO_RING_F_INDIRECT_DESC", () => {
  setup({}, (d, q, mem) => {
    d.add([bytes(1)], [1], { indirect: true });
    const err = assertRefused(q, mem, "indirect-feature");
    assert.match(err.message, /VIRTIO_RING_F_INDIRECT_DESC/);
  }, { indirect: false });
});

Deno.test("rule indirect-next: INDIRECT together with NEXT", () => {
  setup({}, (d, q, mem) => {
    const t = d.alloc(16, 16);
    d.writeTable(t, [{ addr: d.alloc(4), len: 4, flags: 0, next: 0 }]);
    d.writeDesc(0, { addr: t, len: 16, flags: I | N, next: 1 });
    d.writeDesc(1, { addr: d.alloc(4), len: 4, flags: W, next: 0 });
    d.publish(0);
    assertRefused(q, mem, "indirect-next");
  });
});

Deno.test("rule nested-indirect: an indirect descriptor inside an indirect table", () => {
  setup({}, (d, q, mem) => {
    const inner = d.alloc(16, 16);
    d.writeTable(inner, [{ addr: d.alloc(4), len: 4, flags: 0, next: 0 }]);
    const outer = d.alloc(32, 16);
    d.writeTable(outer, [
      { addr: d.alloc(4), len: 4, flags: N, next: 1 },
      { addr: inner, len: 16, flags: I, next: 0 },
    ]);
    d.writeDesc(2, { addr: outer, len: 32, flags: I, next: 0 });
    d.publish(2);
    const err = assertRefused(q, mem, "nested-indirect");
    assert.match(err.message, /indirect descriptor 1/);
  });
});

Deno.test("rule indirect-size: empty, not a multiple of 16, or more than 65536 entries", () => {
  withMem(4 * MiB, (mem) => {
    const d = new TestDriver(mem, { base: 0x1000, size: 8 });
    const q = d.queue(NAME);
    for (const len of [0, 8, 24, 17, 16 * 65537]) {
      d.writeDesc(0, { addr: 0x100000, len, flags: I, next: 0 });
      d.publish(0);
      const err = assertRefused(q, mem, "indirect-size");
      assert.ok(err.message.includes(`length ${len}`), err.message);
      d.setAvailIdx(d.availIdx - 1);
    }
    // Exactly 65536 entries is allowed (a table that big fits in 1 MiB).
    const t = 0x200000;
    for (let k = 0; k < 65536; k++) {
      mem.writeU16(t + 16 * k + 12, k < 65535 ? N : 0);
      mem.writeU16(t + 16 * k + 14, k + 1);
    }
    d.writeDesc(0, { addr: t, len: 16 * 65536, flags: I, next: 0 });
    d.publish(0);
    const c = popOk(q);
    assert.equal(c.readable.length, 0, "all zero-length");
    // And its cycle detection is bounded by its own size.
    mem.writeU16(t + 16 * 65535 + 12, N);
    mem.writeU16(t + 16 * 65535 + 14, 0);
    d.publish(0);
    assertRefused(q, mem, "loop");
  });
});

Deno.test("rule out-of-ram: an indirect table outside RAM", () => {
  setup({}, (d, q, mem) => {
    for (const addr of [MiB - 16 * 2 + 1, MiB, 2 ** 40, 0xffff_ffff_ffff_fff0n]) {
      d.writeDesc(0, { addr, len: 32, flags: I, next: 0 });
      d.publish(0);
      const err = assertRefused(q, mem, "out-of-ram");
      assert.match(err.message, /indirect table 0x[0-9a-f]+\+0x20/);
      d.setAvailIdx(d.availIdx - 1);
    }
  });
});

Deno.test("rule out-of-ram: buffers past the end, wrapping, or huge", () => {
  const cases: Array<[number | bigint, number]> = [
    [MiB, 1],
    [MiB - 1, 2],
    [0, MiB + 1],
    [0xffff_ffff_ffff_ffffn, 2],
    [0xffff_ffff_ffff_f000n, 0x2000],
    [2 ** 53, 1],
    [2 ** 53 - 1, 1],
    [1n << 63n, 16],
    [0x1_0000_0000, 16],
  ];
  for (const flags of [R, W]) {
    for (const [addr, len] of cases) {
      setup({}, (d, q, mem) => {
        d.writeDesc(0, { addr, len, flags, next: 0 });
        d.publish(0);
        const err = assertRefused(q, mem, "out-of-ram");
        assert.ok(err.message.includes(`0x${BigInt(addr).toString(16)}+0x${len.toString(16)}`), err.message);
      });
    }
  }
  setup({}, (d, q) => {
    d.writeDesc(0, { addr: MiB - 1, len: 1, flags: N, next: 1 });
    d.writeDesc(1, { addr: 0, len: MiB, flags: W, next: 0 });
    d.publish(0);
    const c = popOk(q);
    assert.deepEqual(c.readable, [{ addr: MiB - 1, len: 1 }]);
    assert.deepEqual(c.writable, [{ addr: 0, len: MiB }]);
  });
});

Deno.test("rule out-of-ram: a buffer straddling the 3 GiB device hole", () => {
  withMem(3 * GiB + 64 * KiB, (mem) => {
    const d = new TestDriver(mem, { base: 0x1000, size: 4 });
    const q = d.queue(NAME);
    d.writeDesc(0, { addr: 3 * GiB - 8, len: 16, flags: 0, next: 0 });
    d.publish(0);
    assertRule(() => q.pop(), "out-of-ram");
    d.setAvailIdx(d.availIdx - 1);
    d.writeDesc(0, { addr: 3 * GiB - 8, len: 8, flags: N, next: 1 });
    d.writeDesc(1, { addr: 4 * GiB, len: 64 * KiB, flags: W, next: 0 });
    d.publish(0);
    const c = popOk(q);
    assert.deepEqual(c.writable, [{ addr: 4 * GiB, len: 64 * KiB }]);
    for (const s of [...c.readable, ...c.writable]) assert.ok(mem.contains(s.addr, s.len));
  });
});

Deno.test("rule write-before-read: a readable buffer after a writable one", () => {
  setup({}, (d, q, mem) => {
    d.writeDesc(0, { addr: d.alloc(4), len: 4, flags: W | N, next: 1 });
    d.writeDesc(1, { addr: d.alloc(4), len: 4, flags: R, next: 0 });
    d.publish(0);
    assertRefused(q, mem, "write-before-read");
  });
  setup({}, (d, q, mem) => {
    // A zero-length writable buffer counts for the order too.
    d.writeDesc(0, { addr: 0, len: 0, flags: W | N, next: 1 });
    d.writeDesc(1, { addr: d.alloc(4), len: 4, flags: R, next: 0 });
    d.publish(0);
    assertRefused(q, mem, "write-before-read");
  });
  setup({}, (d, q, mem) => {
    // The order runs across the switch into an indirect table.
    const t = d.alloc(16, 16);
    d.writeTable(t, [{ addr: d.alloc(4), len: 4, flags: R, next: 0 }]);
    d.writeDesc(0, { addr: d.alloc(4), len: 4, flags: W | N, next: 1 });
    d.writeDesc(1, { addr: t, len: 16, flags: I, next: 0 });
    d.publish(0);
    assertRefused(q, mem, "write-before-read");
  });
});

Deno.test("rule too-long: a chain of more than 2^32 - 1 bytes", () => {
  withMem(4 * MiB, (mem) => {
    const d = new TestDriver(mem, { base: 0x1000, size: 2048 });
    const q = d.queue(NAME);
    // 1024 descriptors of 4 MiB each = 2^32 bytes: one byte too many.
    for (let i = 0; i < 1024; i++) d.writeDesc(i, { addr: 0, len: 4 * MiB, flags: i < 1023 ? N : 0, next: i + 1 });
    d.publish(0);
    const err = assertRefused(q, mem, "too-long");
    assert.match(err.message, /4294967296 bytes/);
    // One byte less is exactly 2^32 - 1: accepted.
    d.writeDesc(1023, { addr: 0, len: 4 * MiB - 1, flags: W, next: 0 });
    const c = popOk(q);
    assert.equal(c.readableBytes + c.writableBytes, 0xffffffff);
  });
});

Deno.test("rules: after a refusal, the driver can fix the chain and the same slot pops", () => {
  setup({}, (d, q, mem) => {
    const a = d.alloc(4);
    d.writeDesc(0, { addr: MiB, len: 4, flags: 0, next: 0 });
    d.publish(0);
    assertRefused(q, mem, "out-of-ram");
    d.writeDesc(0, { addr: a, len: 4, flags: 0, next: 0 });
    assert.deepEqual(popOk(q).readable, [{ addr: a, len: 4 }]);
  });
});

// ---------------------------------------------------------------- chain helpers

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
