/*T:320 The bus is what makes "who owns port 0x3fd?" a question with one
 * answer. Its half-open ranges are easy to get wrong by one at either end,
 * and an overlap that slipped through would let two devices both believe
 * they own a register. So: the first and last address of a range are found
 * and the address just past it is not; ranges that touch are fine, ranges
 * that share even one byte are refused with a message naming both devices;
 * and a random sequence of registrations is compared with a byte-by-byte
 * ownership map. :*/

import assert from "node:assert/strict";
import fc from "fast-check";
import { Bus, type BusDevice } from "../lib/bus.ts";

function dev(name: string): BusDevice {
  return { name, read: () => 0, write: () => {} };
}

Deno.test("bus: find returns the owner from base to base+length-1, and nothing at base+length", () => {
  const bus = new Bus("pio");
  const serial = dev("serial");
  bus.add(0x3f8, 8, serial);
  assert.equal(bus.find(0x3f8)?.device, serial);
  assert.equal(bus.find(0x3ff)?.device, serial);
  assert.equal(bus.find(0x3f7), undefined);
  assert.equal(bus.find(0x400), undefined);
  assert.deepEqual(bus.find(0x3fd), { base: 0x3f8, length: 8, device: serial });
  assert.equal(new Bus("mmio").find(0), undefined, "an empty bus owns nothing");
});

Deno.test("bus: adjacent ranges are allowed and kept in address order", () => {
  const bus = new Bus("pio");
  const a = dev("a");
  const b = dev("b");
  const c = dev("c");
  bus.add(0x70, 0x10, c);
  bus.add(0x60, 0x10, b);
  bus.add(0x50, 0x10, a);
  assert.deepEqual(bus.ranges.map((r) => r.device.name), ["a", "b", "c"]);
  assert.equal(bus.find(0x5f)?.device, a);
  assert.equal(bus.find(0x60)?.device, b);
  assert.equal(bus.find(0x6f)?.device, b);
  assert.equal(bus.find(0x70)?.device, c);
  assert.equal(bus.find(0x80), undefined);
});

Deno.test("bus: an overlap is refused with a message naming both devices", () => {
  const bus = new Bus("pio");
  bus.add(0x3f8, 8, dev("serial"));
  const cases: [number, number][] = [
    [0x3f8, 8], // identical
    [0x3ff, 1], // last byte only
    [0x3f0, 9], // reaches the first byte
    [0x3fa, 2], // inside
    [0x300, 0x200], // around
  ];
  for (const [base, length] of cases) {
    assert.throws(
      () => bus.add(base, length, dev("intruder")),
      (e: unknown) => {
        assert.ok(e instanceof RangeError);
        assert.match(e.message, /^pio: /);
        assert.match(e.message, /intruder/);
        assert.match(e.message, /serial at 0x3f8\+8/);
        assert.match(e.message, new RegExp(`0x${base.toString(16)}\\+${length}`));
        return true;
      },
      `0x${base.toString(16)}+${length}`,
    );
  }
  assert.equal(bus.ranges.length, 1, "refused ranges were not added");
  assert.equal(bus.find(0x3f0), undefined);
});

Deno.test("bus: empty and negative ranges are refused", () => {
  const bus = new Bus("mmio");
  assert.throws(() => bus.add(0x1000, 0, dev("zero")), /mmio: zero has an empty range/);
  assert.throws(() => bus.add(0x1000, -4, dev("neg")), RangeError);
  assert.equal(bus.ranges.length, 0);
  assert.equal(bus.find(0x1000), undefined);
});

Deno.test("bus: property: random registrations agree with a byte ownership map", () => {
  const SPACE = 64;
  const op = fc.record({ base: fc.integer({ min: 0, max: SPACE - 1 }), length: fc.integer({ min: -1, max: 12 }) });
  fc.assert(
    fc.property(fc.array(op, { maxLength: 20 }), (ops) => {
      const bus = new Bus("pio");
      const owner: (string | undefined)[] = new Array(SPACE + 12).fill(undefined);
      ops.forEach(({ base, length }, i) => {
        const name = `d${i}`;
        const free = length > 0 && owner.slice(base, base + length).every((o) => o === undefined);
        if (free) {
          bus.add(base, length, dev(name));
          owner.fill(name, base, base + length);
        } else {
          assert.throws(() => bus.add(base, length, dev(name)), RangeError);
        }
      });
      for (let addr = 0; addr < owner.length; addr++) {
        assert.equal(bus.find(addr)?.device.name, owner[addr], `address ${addr}`);
      }
      const bases = bus.ranges.map((r) => r.base);
      assert.deepEqual(bases, [...bases].sort((a, b) => a - b));
    }),
    { numRuns: 1000 },
  );
});
