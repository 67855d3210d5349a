/** Virtqueue: which ring layouts the constructor accepts (chapter V:110). */

import assert from "node:assert/strict";
import { type QueueLayout, Virtqueue } from "../../lib/virtio/queue.ts";
import { assertRule, MiB, NAME, setup, withMem } from "./queue_rig.ts";

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
