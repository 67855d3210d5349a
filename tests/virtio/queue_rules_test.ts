/** Virtqueue against a hostile driver: one test per rule of chapter V:105. */

import assert from "node:assert/strict";
import { TestDriver } from "./driver.ts";
import {
  assertRefused,
  assertRule,
  bytes,
  GiB,
  I,
  KiB,
  MiB,
  N,
  NAME,
  popOk,
  R,
  setup,
  W,
  withMem,
} from "./queue_rig.ts";

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
