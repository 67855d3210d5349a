/*T:402 The virtqueue against random drivers. First a polite one: random
 * chains (readable bytes, writable sizes, direct or indirect, indices near
 * the wrap) posted with TestDriver must come back exactly as posted, same
 * head, same buffers, same bytes, and the device's replies must reach the
 * driver intact.
 *
 * Then a hostile one: every descriptor, indirect table, avail ring slot and
 * index is random, with addresses and lengths biased towards the edges
 * (the last byte of RAM, 2^32, 2^53, 2^64 - 1) and a guest of only 1 MiB.
 * Whatever the queue returns must lie inside RAM, and whatever it refuses
 * must be refused with a VirtqueueError, never anything else. A small
 * reference model, written the slow and obvious way in BigInt, says which:
 * the queue must agree with it on every chain and every rule. And after
 * each run, guest memory must be exactly what the driver wrote, except the
 * used ring: the queue writes nowhere else (queue_fuzz_hostile_test.ts, with
 * the model in queue_model.ts). Last, the constructor against random
 * layouts. :*/

import assert from "node:assert/strict";
import fc from "fast-check";
import type { GuestMemory } from "../../lib/memory.ts";
import { readableData } from "../../lib/virtio/chain.ts";
import { type Chain, Virtqueue, VirtqueueError } from "../../lib/virtio/queue.ts";
import { TestDriver } from "./driver.ts";
import { BASE, RAM, startIndex, withMem } from "./queue_fuzz_rig.ts";

interface Request {
  readable: Uint8Array[];
  writable: number[];
  indirect: boolean;
}

const request: fc.Arbitrary<Request> = fc.record({
  readable: fc.array(fc.uint8Array({ minLength: 0, maxLength: 64 }), { maxLength: 5 }),
  writable: fc.array(fc.nat({ max: 64 }), { maxLength: 4 }),
  indirect: fc.boolean(),
}).filter((r) => r.readable.length + r.writable.length > 0);

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

Deno.test("fuzz: valid chains posted by TestDriver pop back exactly", () => {
  withMem((mem) => {
    fc.assert(
      fc.property(
        fc.constantFrom(1, 2, 4, 8, 16, 64, 256),
        startIndex,
        fc.boolean(),
        fc.array(request, { minLength: 1, maxLength: 12 }),
        fc.integer({ min: 0, max: 255 }),
        (size, start, eventIdx, requests, fillByte) => {
          mem.bytes.fill(0);
          const d = new TestDriver(mem, { base: BASE, size, startIndex: start, eventIdx });
          const q = d.queue("fuzz queue");
          const pending: Array<{ head: number; r: Request }> = [];
          const replies = new Map<number, Uint8Array>();
          let returned = 0;
          const drain = () => {
            for (const { head, r } of pending) {
              const c = q.pop();
              assert.ok(c !== undefined);
              checkPolite(mem, d, c, head, r);
              const reply = new Uint8Array(c.writableBytes).fill(fillByte);
              let at = 0;
              for (const s of c.writable) {
                mem.write(s.addr, reply.subarray(at, at + s.len));
                at += s.len;
              }
              q.pushUsed(c.head, reply.length);
              returned++;
              replies.set(c.head, reply);
            }
            assert.equal(q.pop(), undefined);
            const used = d.used();
            assert.deepEqual(used.map((u) => u.id), pending.map((p) => p.head));
            for (const u of used) assert.deepEqual(d.writableData(u.id), replies.get(u.id));
            pending.length = 0;
          };
          for (const r of requests) {
            const need = r.indirect ? 1 : r.readable.length + r.writable.length;
            if (need > size) continue;
            if (need > d.freeCount) drain();
            pending.push({ head: d.add(r.readable, r.writable, { indirect: r.indirect }), r });
          }
          drain();
          assert.equal(q.lastAvailIdx, d.availIdx);
          assert.equal(d.usedIdx(), (start + returned) & 0xffff, "every chain came back once");
        },
      ),
      { numRuns: 1000 },
    );
  });
});

function checkPolite(mem: GuestMemory, d: TestDriver, c: Chain, head: number, r: Request): void {
  const posted = d.posted(head)!;
  assert.equal(c.head, head);
  assert.deepEqual(c.readable, posted.readable);
  assert.deepEqual(c.writable, posted.writable);
  assert.equal(c.readableBytes, r.readable.reduce((n, b) => n + b.length, 0));
  assert.equal(c.writableBytes, r.writable.reduce((n, l) => n + l, 0));
  assert.deepEqual(readableData(mem, c), concat(r.readable));
}

Deno.test("fuzz: the constructor accepts exactly the aligned, in-RAM layouts of a valid size", () => {
  withMem((mem) => {
    const addr = fc.oneof(
      { arbitrary: fc.nat({ max: RAM / 16 }).map((n) => BigInt(16 * n)), weight: 4 },
      { arbitrary: fc.bigInt({ min: 0n, max: BigInt(RAM) }), weight: 2 },
      { arbitrary: fc.bigInt({ min: -(1n << 64n), max: 1n << 65n }), weight: 1 },
      { arbitrary: fc.constantFrom(0n, BigInt(RAM) - 16n, (1n << 64n) - 16n), weight: 1 },
    );
    const size = fc.oneof(
      { arbitrary: fc.constantFrom(1, 2, 4, 256, 4096, 32768), weight: 4 },
      { arbitrary: fc.integer({ min: -2, max: 70000 }), weight: 1 },
    );
    fc.assert(
      fc.property(size, addr, addr, addr, (size, desc, avail, used) => {
        const layout = { size, desc, avail, used };
        const ok = size >= 1 && size <= 32768 && (size & (size - 1)) === 0 &&
          desc % 16n === 0n && avail % 2n === 0n && used % 4n === 0n &&
          mem.contains(desc, 16 * size) && mem.contains(avail, 6 + 2 * size) && mem.contains(used, 6 + 8 * size);
        try {
          const q = new Virtqueue(mem, layout, { eventIdx: true, indirect: true }, "ctor");
          assert.ok(ok, `accepted ${JSON.stringify(layout, (_, v) => typeof v === "bigint" ? v.toString() : v)}`);
          assert.equal(q.size, size);
        } catch (e) {
          if (!(e instanceof VirtqueueError)) throw e;
          assert.ok(!ok, e.message);
          assert.ok(["queue-size", "ring-alignment", "ring-out-of-ram"].includes(e.rule), e.rule);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
