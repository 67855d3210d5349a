/*T:671 The entropy device against a hostile driver: every descriptor,
 * indirect table, avail slot and index is random, with addresses and
 * lengths near the edges of a 192 KiB guest, and the features may or may
 * not include indirect tables. Whatever the device pops, it must fill
 * exactly the first min(writable bytes, cap) bytes of the chain's writable
 * buffers and report that many; guest memory may change nowhere else but
 * the used ring; and a broken rule must reach the device's context as one
 * failure naming the queue and the rule (which the transport turns into
 * DEVICE_NEEDS_RESET), never as an exception. The device is activated
 * straight from a session here, without a transport, so that ten thousand
 * scenarios take seconds. :*/

import assert from "node:assert/strict";
import fc from "fast-check";
import { GuestMemory } from "../../../lib/memory.ts";
import { EventLoop } from "../../../lib/eventloop.ts";
import { close, eventfd } from "../../../lib/sys/calls.ts";
import type { DeviceContext } from "../../../lib/virtio/device.ts";
import {
  type Segment,
  VRING_DESC_F_INDIRECT,
  VRING_DESC_F_NEXT,
  VRING_DESC_F_WRITE,
} from "../../../lib/virtio/queue.ts";
import { RNG_MAX_PER_REQUEST, RngDevice } from "../../../lib/virtio/rng.ts";
import { type RawDesc, TestDriver } from "../driver.ts";
import { hookPops } from "../pop_hook.ts";

const RAM = 192 * 1024;
const BASE = 0x1000;
const TABLES = [0x8000, 0x9000, RAM - 32];

const address = fc.oneof(
  { weight: 24, arbitrary: fc.integer({ min: 0x10000, max: RAM - 1 }) },
  { weight: 2, arbitrary: fc.constantFrom(0, 0x10000, RAM - 1, RAM - 16, RAM, 2 ** 32, 2 ** 53) },
  { weight: 1, arbitrary: fc.constantFrom(...TABLES) },
  { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }) },
);
const length = fc.oneof(
  { weight: 24, arbitrary: fc.nat(300) },
  { weight: 3, arbitrary: fc.constantFrom(0, 16, 32, 48, 4096, 0x8000, 0x10001, RAM) },
  { weight: 1, arbitrary: fc.nat(0xffffffff) },
);
const flags = fc.oneof(
  { weight: 16, arbitrary: fc.constantFrom(VRING_DESC_F_WRITE, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 0) },
  { weight: 2, arbitrary: fc.constantFrom(VRING_DESC_F_NEXT, VRING_DESC_F_INDIRECT) },
  { weight: 1, arbitrary: fc.nat(0xffff) },
);
const desc = (entries: number): fc.Arbitrary<RawDesc> =>
  fc.record({
    addr: address,
    len: length,
    flags,
    next: fc.oneof({ weight: 19, arbitrary: fc.nat(entries - 1) }, { weight: 1, arbitrary: fc.nat(0xffff) }),
  });

const scenario = fc.constantFrom(1, 2, 4, 8, 16).chain((size) =>
  fc.record({
    size: fc.constant(size),
    ring: fc.array(desc(size), { minLength: size, maxLength: size }),
    tables: fc.array(fc.array(desc(4), { minLength: 1, maxLength: 4 }), { minLength: 3, maxLength: 3 }),
    heads: fc.array(fc.oneof({ weight: 20, arbitrary: fc.nat(size - 1) }, { weight: 1, arbitrary: fc.nat(0xffff) }), {
      minLength: 1,
      maxLength: size,
    }),
    extra: fc.oneof({ weight: 19, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.nat(0xffff) }),
    indirect: fc.boolean(),
    eventIdx: fc.boolean(),
  })
);

Deno.test("rng fuzz: hostile chains never throw and get random bytes only where the driver asked", () => {
  const mem = GuestMemory.create(RAM);
  const loop = new EventLoop();
  const doorbell = eventfd();
  const irqfd = eventfd();
  const interrupt = { irqfd, status: new SharedArrayBuffer(4), word: 0 };
  const popped: Popped[] = [];
  const restore = hookPops((_vq, c) => {
    if (c !== undefined) popped.push({ head: c.head, writable: c.writable, bytes: c.writableBytes });
  });
  try {
    fc.assert(
      fc.property(scenario, (sc) => {
        mem.bytes.fill(0);
        popped.length = 0;
        const d = new TestDriver(mem, { base: BASE, size: sc.size, eventIdx: sc.eventIdx });
        sc.ring.forEach((x, i) => d.writeDesc(i, x));
        sc.tables.forEach((t, k) => d.writeTable(TABLES[k]!, t.slice(0, (RAM - TABLES[k]!) / 16)));
        sc.heads.forEach((h) => d.publish(h));
        if (sc.extra) d.setAvailIdx(d.availIdx + sc.extra);
        const before = mem.bytes.slice();
        const failures: string[] = [];
        const ctx: DeviceContext = {
          memory: mem,
          loop,
          features: 0n,
          fail: (reason) => failures.push(reason),
          configChanged: () => {},
          log: () => {},
        };
        const rng = new RngDevice();
        try {
          rng.activate(ctx, [{
            index: 0,
            name: "virtio-rng queue 0",
            layout: d.layout,
            features: { eventIdx: sc.eventIdx, indirect: sc.indirect },
            start: { lastAvailIdx: 0, usedIdx: 0 },
            doorbell,
            interrupt,
          }]);
          const clobbered = check(mem, d, before, popped);
          if (failures.length > 0) {
            assert.equal(failures.length, 1, "one failure ends the device's turn");
            assert.match(failures[0]!, /^virtio-rng queue 0: .* \[[a-z-]+\]$/);
          } else if (!clobbered) {
            assert.equal(popped.length, (sc.heads.length + sc.extra) & 0xffff, "every posted chain was served");
          }
        } finally {
          rng.close();
        }
      }),
      { numRuns: 10_000 },
    );
  } finally {
    restore();
    for (const fd of [doorbell, irqfd]) close(fd);
    loop.close();
    mem.close();
  }
});

type Popped = { head: number; writable: Segment[]; bytes: number };

/**
 * Used ring = popped chains in order, each filled by exactly its capped length; nothing else changed.
 * @returns whether a chain's buffers covered the rings (its random bytes then rewrote them, so the
 * used ring's old entries and the avail ring are no longer what the driver wrote)
 */
function check(mem: GuestMemory, d: TestDriver, before: Uint8Array, popped: Popped[]): boolean {
  const ringEnd = Number(d.layout.used) + 6 + 8 * d.size;
  const clobbered = popped.some((p) => p.writable.some((s) => s.addr < ringEnd && s.addr + s.len > BASE));
  if (!clobbered) {
    assert.deepEqual(
      d.used().map((u) => [u.id, u.len]),
      popped.map((p) => [p.head, Math.min(p.bytes, RNG_MAX_PER_REQUEST)]),
    );
  }
  const allowed: Segment[] = [{ addr: Number(d.layout.used), len: 6 + 8 * d.size }];
  for (const p of popped) {
    let left = RNG_MAX_PER_REQUEST;
    for (const s of p.writable) {
      if (left <= 0) break;
      allowed.push({ addr: s.addr, len: Math.min(s.len, left) });
      left -= s.len;
    }
  }
  const now = mem.bytes;
  const nowWords = new BigUint64Array(now.buffer, now.byteOffset, now.length / 8);
  const beforeWords = new BigUint64Array(before.buffer, before.byteOffset, before.length / 8);
  for (let i = 0; i < nowWords.length; i++) {
    if (nowWords[i] === beforeWords[i]) continue;
    for (let b = 8 * i; b < 8 * i + 8; b++) {
      if (now[b] === before[b]) continue;
      assert.ok(allowed.some((s) => b >= s.addr && b < s.addr + s.len), `byte 0x${b.toString(16)} written`);
    }
  }
  return clobbered;
}
