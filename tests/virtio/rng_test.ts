/*T:670 The entropy device without KVM, through the real transport: a
 * TestDriver posts chains, the driver's register writes bring the device
 * up, and what comes back is read from the used ring. Each writable buffer
 * must be filled with bytes from getrandom (not zeros, not the same twice),
 * the used length must be exactly what was filled, and a request must stop
 * at RNG_MAX_PER_REQUEST bytes with the rest of its buffers untouched. The
 * device's rule for readable buffers (the spec has the driver post none) is
 * to neither read nor write them and to count them for nothing. :*/

import assert from "node:assert/strict";
import fc from "fast-check";
import { GuestMemory } from "../../lib/memory.ts";
import { EventLoop } from "../../lib/eventloop.ts";
import { bit, VIRTIO_F, VIRTIO_STATUS } from "../../lib/virtio/device.ts";
import { MMIO_REG } from "../../lib/virtio/mmio_regs.ts";
import { type Segment, VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE } from "../../lib/virtio/queue.ts";
import { RNG_MAX_PER_REQUEST } from "../../lib/virtio/rng.ts";
import { type RawDesc, TestDriver } from "./driver.ts";
import { MmioRig } from "./mmio_rig.ts";

const S = VIRTIO_STATUS;

function withRig(body: (rig: MmioRig, d: TestDriver) => void): () => void {
  return () => {
    const rig = new MmioRig({ ram: 1024 * 1024 });
    try {
      body(rig, new TestDriver(rig.mem, { base: 0x1000, size: 16, eventIdx: true }));
    } finally {
      rig.close();
    }
  };
}

function allZero(bytes: Uint8Array): boolean {
  return bytes.every((b) => b === 0);
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test(
  "rng: posted writable chains come back filled with random bytes, each different, used with their length",
  withRig((rig, d) => {
    const heads = [d.add([], [64]), d.add([], [16, 48]), d.add([], [32, 32], { indirect: true })];
    assert.equal(rig.bringUp(d), S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK | S.DRIVER_OK);
    assert.deepEqual(d.used().map((u) => [u.id, u.len]), heads.map((h) => [h, 64]));
    assert.equal(rig.interrupts, 1, "one interrupt for the batch");
    const seen = new Set<string>();
    for (const h of heads) {
      for (const s of d.posted(h)!.writable) {
        assert.ok(!allZero(rig.mem.slice(s.addr, s.len)), `buffer at 0x${s.addr.toString(16)} was filled`);
      }
      seen.add(hex(d.writableData(h)));
    }
    assert.equal(seen.size, 3, "three requests, three different answers");

    const later = d.add([], [32]);
    rig.w(MMIO_REG.QUEUE_NOTIFY, 0);
    assert.deepEqual(d.used().map((u) => [u.id, u.len]), [[later, 32]], "a doorbell serves a new request");
    assert.ok(!seen.has(hex(d.writableData(later))));
    assert.ok(!allZero(d.writableData(later)));
  }),
);

Deno.test(
  "rng: a request is capped at RNG_MAX_PER_REQUEST bytes and the rest of its buffers stay untouched",
  withRig((rig, d) => {
    assert.equal(RNG_MAX_PER_REQUEST, 65536);
    const one = d.add([], [100_000]);
    const two = d.add([], [40_000, 40_000]);
    rig.bringUp(d);
    assert.deepEqual(d.used().map((u) => [u.id, u.len]), [[one, RNG_MAX_PER_REQUEST], [two, RNG_MAX_PER_REQUEST]]);
    const big = d.posted(one)!.writable[0]!;
    const filled = rig.mem.slice(big.addr, big.len);
    assert.ok(!allZero(filled.subarray(RNG_MAX_PER_REQUEST - 32, RNG_MAX_PER_REQUEST)), "filled up to the cap");
    assert.ok(allZero(filled.subarray(RNG_MAX_PER_REQUEST)), "and not a byte past it");
    const [a, b] = d.posted(two)!.writable;
    const second = rig.mem.slice(b!.addr, b!.len);
    const rest = RNG_MAX_PER_REQUEST - a!.len;
    assert.ok(!allZero(rig.mem.slice(a!.addr + a!.len - 32, 32)), "the first buffer is full");
    assert.ok(!allZero(second.subarray(rest - 32, rest)), "the second up to the cap");
    assert.ok(allZero(second.subarray(rest)));
  }),
);

Deno.test(
  "rng: readable buffers are neither read nor written and count for nothing in the used length",
  withRig((rig, d) => {
    const request = Uint8Array.from({ length: 32 }, (_, i) => i + 1);
    const mixed = d.add([request], [16]);
    const readOnly = d.add([request], []);
    const empty = d.add([], [0]);
    rig.bringUp(d);
    assert.deepEqual(d.used().map((u) => [u.id, u.len]), [[mixed, 16], [readOnly, 0], [empty, 0]]);
    for (const h of [mixed, readOnly]) {
      const r = d.posted(h)!.readable[0]!;
      assert.deepEqual(rig.mem.slice(r.addr, r.len), request, "the readable buffer is as the driver left it");
    }
    assert.ok(!allZero(d.writableData(mixed)));
    assert.equal(rig.status & S.NEEDS_RESET, 0);
  }),
);

Deno.test(
  "rng: a buffer outside RAM fails the device after the requests before it were served",
  withRig((rig, d) => {
    const good = d.add([], [16]);
    rig.bringUp(d);
    d.used();
    const next = d.add([], [16]);
    d.writeDesc(3, { addr: rig.mem.size - 4, len: 8, flags: VRING_DESC_F_WRITE, next: 0 });
    d.publish(3);
    rig.w(MMIO_REG.QUEUE_NOTIFY, 0);
    assert.deepEqual(d.used().map((u) => u.id), [next], "the good request was served");
    assert.notEqual(good, 3);
    assert.equal(rig.status & S.NEEDS_RESET, S.NEEDS_RESET);
    assert.match(rig.logText(), /^virtio-rng: virtio-rng queue 0: .*\[out-of-ram\]; device needs reset$/m);
    assert.ok(allZero(rig.mem.slice(rig.mem.size - 4, 4)), "the last bytes of RAM were not written");
  }),
);

/*T:671 The entropy device against a hostile driver: every descriptor,
 * indirect table, avail slot and index is random, with addresses and
 * lengths near the edges of a 192 KiB guest, and the features may or may
 * not include indirect tables. Whatever the device pops, it must fill
 * exactly the first min(writable bytes, cap) bytes of the chain's writable
 * buffers and report that many; guest memory may change nowhere else but
 * the used ring; and a broken rule must end as DEVICE_NEEDS_RESET, never
 * as an exception. :*/

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
    kicks: fc.nat(3),
  })
);

Deno.test("rng fuzz: hostile chains never throw and get random bytes only where the driver asked", () => {
  const mem = GuestMemory.create(RAM);
  const loop = new EventLoop();
  try {
    fc.assert(
      fc.property(scenario, (sc) => {
        mem.bytes.fill(0);
        const d = new TestDriver(mem, { base: BASE, size: sc.size, eventIdx: sc.eventIdx });
        sc.ring.forEach((x, i) => d.writeDesc(i, x));
        sc.tables.forEach((t, k) => d.writeTable(TABLES[k]!, t.slice(0, (RAM - TABLES[k]!) / 16)));
        sc.heads.forEach((h) => d.publish(h));
        if (sc.extra) d.setAvailIdx(d.availIdx + sc.extra);
        const before = mem.bytes.slice();
        const popped: Popped[] = [];
        const rig = new MmioRig({
          shared: { mem, loop },
          recorder: { onPop: (_q, c) => popped.push({ head: c.head, writable: c.writable, bytes: c.writableBytes }) },
        });
        try {
          const features = bit(VIRTIO_F.VERSION_1) | (sc.indirect ? bit(VIRTIO_F.INDIRECT_DESC) : 0n) |
            (sc.eventIdx ? bit(VIRTIO_F.EVENT_IDX) : 0n);
          rig.bringUp(d, features);
          for (let k = 0; k < sc.kicks; k++) rig.w(MMIO_REG.QUEUE_NOTIFY, 0);
          const clobbered = check(mem, d, before, popped);
          if (rig.status & S.NEEDS_RESET) {
            assert.match(rig.logText(), /^virtio-rng: virtio-rng queue 0: .* \[[a-z-]+\]; device needs reset$/m);
          } else if (!clobbered) {
            assert.equal(popped.length, (sc.heads.length + sc.extra) & 0xffff, "every posted chain was served");
          }
        } finally {
          rig.close();
        }
      }),
      { numRuns: 10_000 },
    );
  } finally {
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
