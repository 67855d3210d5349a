/*T:300 Guest memory is the one place where numbers chosen by the guest become
 * host addresses, so its bounds check has to be right at every edge: the
 * last byte of a region, a zero-length range sitting exactly at the end, the
 * device hole between 3 GiB and 4 GiB, addresses so large that a naive sum
 * would wrap, and numbers that are not integers at all. These tests map real
 * guests (a 5 GiB one costs nothing thanks to MAP_NORESERVE, and only a few
 * pages are ever touched), poke each edge by hand, and then let fast-check
 * compare `contains`/`tryOffset` with a reference model computed in BigInt
 * straight from the region table. After close() every door must be shut:
 * an access is refused with an error, never a fault. :*/

import assert from "node:assert/strict";
import fc from "fast-check";
import { GuestMemory, GuestMemoryError, HIGH_RAM_START, MMIO_HOLE_START, ramRegions } from "../lib/memory.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

/** Runs `body` with a fresh guest of `size` bytes, always unmapping it. */
function withGuest(size: number, body: (m: GuestMemory) => void): void {
  const m = GuestMemory.create(size);
  try {
    body(m);
  } finally {
    m.close();
  }
}

Deno.test("memory: ramRegions below and above the 3 GiB hole", () => {
  assert.deepEqual(ramRegions(64 * MiB), [{ gpa: 0, size: 64 * MiB, offset: 0 }]);
  assert.deepEqual(ramRegions(3 * GiB), [{ gpa: 0, size: 3 * GiB, offset: 0 }]);
  assert.deepEqual(ramRegions(3 * GiB + 4096), [
    { gpa: 0, size: 3 * GiB, offset: 0 },
    { gpa: 4 * GiB, size: 4096, offset: 3 * GiB },
  ]);
  assert.deepEqual(ramRegions(4 * GiB), [
    { gpa: 0, size: 3 * GiB, offset: 0 },
    { gpa: 4 * GiB, size: GiB, offset: 3 * GiB },
  ]);
  assert.equal(MMIO_HOLE_START, 3 * GiB);
  assert.equal(HIGH_RAM_START, 4 * GiB);
});

Deno.test("memory: sizes that are not positive multiples of 4 KiB are refused", () => {
  for (const size of [0, -4096, 4095, 4097, 1.5 * 4096, NaN, Infinity, 2 ** 53 + 4096]) {
    assert.throws(() => ramRegions(size), RangeError, `ramRegions(${size})`);
    assert.throws(() => GuestMemory.create(size), RangeError, `create(${size})`);
  }
});

Deno.test("memory: create maps zeroed, page-aligned RAM; hugePages aligns to 2 MiB", () => {
  withGuest(1 * MiB, (m) => {
    assert.equal(m.size, 1 * MiB);
    assert.equal(m.bytes.length, 1 * MiB);
    assert.equal(m.view.byteLength, 1 * MiB);
    assert.equal(m.hostAddress % 4096n, 0n);
    assert.equal(m.readU64(0), 0n);
    assert.equal(m.readU64(MiB - 8), 0n);
  });
  const h = GuestMemory.create(4 * MiB, { hugePages: true });
  try {
    assert.equal(h.hostAddress % (2n * BigInt(MiB)), 0n);
    h.writeU32(4 * MiB - 4, 0x01020304);
    assert.equal(h.readU32(4 * MiB - 4), 0x01020304);
  } finally {
    h.close();
  }
});

Deno.test("memory: offsets at the end of a small guest, number and BigInt", () => {
  const size = 64 * KiB;
  withGuest(size, (m) => {
    for (const big of [false, true]) {
      const g = (x: number) => big ? BigInt(x) : x;
      assert.equal(m.tryOffset(g(0), g(size)), 0, "whole guest");
      assert.equal(m.tryOffset(g(size - 4), g(4)), size - 4, "last word");
      assert.equal(m.tryOffset(g(size - 3), g(4)), -1, "one byte past the end");
      assert.equal(m.tryOffset(g(0), g(size + 1)), -1, "one byte too long");
      assert.equal(m.tryOffset(g(size), g(0)), size, "zero length exactly at the end");
      assert.equal(m.tryOffset(g(size + 1), g(0)), -1, "zero length past the end");
      assert.equal(m.tryOffset(g(size), g(1)), -1, "first byte past the end");
      assert.equal(m.tryOffset(g(-1), g(1)), -1, "negative address");
      assert.equal(m.tryOffset(g(0), g(-1)), -1, "negative length");
      assert.equal(m.contains(g(123), g(456)), true);
      assert.equal(m.contains(g(size - 1), g(2)), false);
    }
  });
});

Deno.test("memory: non-integer, non-finite and unsafe numbers are refused", () => {
  withGuest(64 * KiB, (m) => {
    const bad = [NaN, Infinity, -Infinity, 1.5, 0.1, 2 ** 53, Number.MAX_SAFE_INTEGER + 2, -(2 ** 60)];
    for (const x of bad) {
      assert.equal(m.tryOffset(x, 4), -1, `gpa ${x}`);
      assert.equal(m.tryOffset(0, x), -1, `length ${x}`);
      assert.equal(m.contains(x, 0), false, `gpa ${x}`);
      if (Number.isInteger(x)) assert.throws(() => m.offset(x, 4, "probe"), GuestMemoryError, `offset(${x})`);
    }
    assert.equal(m.tryOffset(Number.MAX_SAFE_INTEGER, 1), -1);
    assert.equal(m.tryOffset(1, Number.MAX_SAFE_INTEGER), -1);
  });
});

Deno.test("memory: huge BigInts never wrap around", () => {
  withGuest(64 * KiB, (m) => {
    const top = 2n ** 64n - 1n;
    assert.equal(m.tryOffset(top, 1n), -1, "2^64-1 + 1 must not wrap to 0");
    assert.equal(m.tryOffset(top, 2n), -1);
    assert.equal(m.tryOffset(2n ** 64n, 0n), -1);
    assert.equal(m.tryOffset(2n ** 64n - 16n, 32n), -1, "sum wraps to 16 in 64 bits");
    assert.equal(m.tryOffset(1n, top), -1, "length 2^64-1");
    assert.equal(m.tryOffset(0n, 2n ** 64n), -1);
    assert.equal(m.tryOffset(0n, 2n ** 128n), -1);
    assert.equal(m.tryOffset(2n ** 53n, 4n), -1);
    assert.equal(m.tryOffset(-1n, 1n), -1);
    assert.equal(m.tryOffset(0n, -1n), -1);
    // Mixed kinds go down the BigInt path and must agree with the pure ones.
    assert.equal(m.tryOffset(16n, 4), 16);
    assert.equal(m.tryOffset(16, 4n), 16);
    assert.equal(m.tryOffset(top, 1), -1);
  });
});

Deno.test("memory: a 4 GiB guest is split around the device hole", () => {
  withGuest(4 * GiB, (m) => {
    assert.equal(m.size, 4 * GiB);
    assert.deepEqual(m.regions, ramRegions(4 * GiB));
    for (const big of [false, true]) {
      const g = (x: number) => big ? BigInt(x) : x;
      assert.equal(m.tryOffset(g(3 * GiB - 4), g(4)), 3 * GiB - 4, "last word below the hole");
      assert.equal(m.tryOffset(g(3 * GiB - 2), g(4)), -1, "runs into the hole");
      assert.equal(m.tryOffset(g(3 * GiB), g(0)), 3 * GiB, "zero length at the end of low RAM");
      for (const hole of [3 * GiB, 3 * GiB + 4096, 3.5 * GiB, 4 * GiB - 1]) {
        assert.equal(m.tryOffset(g(hole), g(1)), -1, `hole address 0x${hole.toString(16)}`);
      }
      assert.equal(m.tryOffset(g(4 * GiB - 8), g(16)), -1, "straddles the start of high RAM");
      assert.equal(m.tryOffset(g(2 * GiB), g(3 * GiB)), -1, "spans the hole");
      assert.equal(m.tryOffset(g(4 * GiB), g(4)), 3 * GiB, "high RAM starts at offset 3 GiB");
      assert.equal(m.tryOffset(g(4 * GiB + 12345), g(1)), 3 * GiB + 12345);
      assert.equal(m.tryOffset(g(5 * GiB - 4), g(4)), 4 * GiB - 4, "last word of the guest");
      assert.equal(m.tryOffset(g(5 * GiB - 3), g(4)), -1, "one byte past the guest");
      assert.equal(m.tryOffset(g(5 * GiB), g(0)), 4 * GiB, "zero length at the very end");
      assert.equal(m.tryOffset(g(5 * GiB), g(1)), -1);
      assert.equal(m.tryOffset(g(4 * GiB), g(GiB)), 3 * GiB, "all of high RAM");
      assert.equal(m.tryOffset(g(4 * GiB), g(GiB + 1)), -1);
    }
    // The translation is real: a write above 4 GiB lands 1 GiB lower in the mapping.
    m.writeU32(4 * GiB + 8, 0xdeadbeef);
    assert.equal(m.view.getUint32(3 * GiB + 8, true), 0xdeadbeef);
    assert.equal(m.readU32(4n * BigInt(GiB) + 8n), 0xdeadbeef);
    assert.equal(m.hostAddr(4 * GiB + 8, 4), m.hostAddress + BigInt(3 * GiB + 8));
    m.writeU8(3 * GiB - 1, 0x5a);
    assert.equal(m.bytes[3 * GiB - 1], 0x5a);
    assert.throws(() => m.readU8(3 * GiB), GuestMemoryError);
    assert.throws(() => m.writeU32(4 * GiB - 2, 1), GuestMemoryError);
  });
});

Deno.test("memory: typed reads and writes round-trip little-endian", () => {
  withGuest(64 * KiB, (m) => {
    m.writeU8(0x10, 0xab);
    m.writeU16(0x20, 0xbeef);
    m.writeU32(0x30, 0xfeedface);
    m.writeU64(0x40, 0x0123456789abcdefn);
    m.writeU64(0x48, 2n ** 64n - 1n);
    assert.equal(m.readU8(0x10), 0xab);
    assert.equal(m.readU16(0x20), 0xbeef);
    assert.equal(m.readU32(0x30), 0xfeedface);
    assert.equal(m.readU64(0x40), 0x0123456789abcdefn);
    assert.equal(m.readU64(0x48n), 2n ** 64n - 1n);
    assert.deepEqual([...m.bytes.subarray(0x20, 0x22)], [0xef, 0xbe]);
    assert.deepEqual([...m.bytes.subarray(0x30, 0x34)], [0xce, 0xfa, 0xed, 0xfe]);
    assert.deepEqual([...m.bytes.subarray(0x40, 0x48)], [0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01]);
    // The last word of the guest is reachable, one byte further is not.
    m.writeU64(64 * KiB - 8, 7n);
    assert.equal(m.readU64(64 * KiB - 8), 7n);
    assert.throws(() => m.readU64(64 * KiB - 7), GuestMemoryError);
    assert.throws(() => m.writeU16(64 * KiB - 1, 0), GuestMemoryError);
  });
});

Deno.test("memory: slice is a zero-copy window onto guest RAM", () => {
  withGuest(64 * KiB, (m) => {
    const s = m.slice(0x1000, 16);
    assert.equal(s.length, 16);
    assert.equal(s.buffer, m.bytes.buffer, "same backing store");
    s.set([1, 2, 3, 4]);
    assert.equal(m.readU32(0x1000), 0x04030201, "write through the slice is visible to readU32");
    m.writeU32(0x1004, 0xa0b0c0d0);
    assert.deepEqual([...s.subarray(4, 8)], [0xd0, 0xc0, 0xb0, 0xa0], "write to memory is visible in the slice");
    assert.equal(m.slice(64 * KiB, 0).length, 0, "empty slice at the end");
    assert.equal(m.slice(64n * 1024n - 2n, 2).length, 2);
    assert.throws(() => m.slice(64 * KiB - 2, 3, "ring"), GuestMemoryError);
  });
});

Deno.test("memory: write and fill are bounds-checked before touching anything", () => {
  withGuest(64 * KiB, (m) => {
    m.write(0x2000, new Uint8Array([9, 8, 7, 6, 5]));
    assert.deepEqual([...m.bytes.subarray(0x2000, 0x2005)], [9, 8, 7, 6, 5]);
    m.fill(0x2001, 3, 0xaa);
    assert.deepEqual([...m.bytes.subarray(0x2000, 0x2005)], [9, 0xaa, 0xaa, 0xaa, 5]);
    m.fill(0x2001, 2);
    assert.deepEqual([...m.bytes.subarray(0x2000, 0x2005)], [9, 0, 0, 0xaa, 5], "fill defaults to zero");
    const end = 64 * KiB;
    m.write(end - 4, new Uint8Array([1, 2, 3, 4]));
    assert.deepEqual([...m.bytes.subarray(end - 4)], [1, 2, 3, 4]);
    assert.throws(() => m.write(end - 3, new Uint8Array([5, 5, 5, 5]), "too far"), GuestMemoryError);
    assert.throws(() => m.fill(end - 3, 4, 0xee), GuestMemoryError);
    assert.deepEqual([...m.bytes.subarray(end - 4)], [1, 2, 3, 4], "refused write changed nothing");
    m.write(end, new Uint8Array(0));
    m.fill(end, 0, 1);
  });
});

Deno.test("memory: GuestMemoryError names the address in hex, the length and the label", () => {
  withGuest(64 * KiB, (m) => {
    assert.throws(() => m.offset(0x123456789, 4, "virtqueue 0 descriptor"), (e: unknown) => {
      assert.ok(e instanceof GuestMemoryError);
      assert.ok(e instanceof RangeError);
      assert.equal(e.name, "GuestMemoryError");
      assert.equal(e.gpa, 0x123456789n);
      assert.equal(e.length, 4n);
      assert.match(e.message, /0x123456789/);
      assert.match(e.message, /virtqueue 0 descriptor/);
      return true;
    });
    assert.throws(() => m.offset(2n ** 64n - 1n, 16n), (e: unknown) => {
      assert.ok(e instanceof GuestMemoryError);
      assert.equal(e.message, "guest range 0xffffffffffffffff+0x10 is outside guest RAM");
      return true;
    });
    assert.throws(() => m.readU32(0xabcdef0), /0xabcdef0/);
    assert.throws(() => m.hostAddr(64 * KiB, 1, "dma"), /dma: guest range 0x10000\+0x1/);
  });
});

Deno.test("memory: after close() every access is refused, not a crash", () => {
  const m = GuestMemory.create(64 * KiB);
  m.writeU32(0, 42);
  m.close();
  assert.equal(m.contains(0, 1), false);
  assert.equal(m.tryOffset(0n, 0n), -1);
  assert.throws(() => m.offset(0, 1), GuestMemoryError);
  assert.throws(() => m.readU8(0), GuestMemoryError);
  assert.throws(() => m.readU32(0), GuestMemoryError);
  assert.throws(() => m.readU64(0n), GuestMemoryError);
  assert.throws(() => m.writeU16(0, 1), GuestMemoryError);
  assert.throws(() => m.writeU64(0, 1n), GuestMemoryError);
  assert.throws(() => m.slice(0, 1), GuestMemoryError);
  assert.throws(() => m.write(0, new Uint8Array(1)), GuestMemoryError);
  assert.throws(() => m.fill(0, 1), GuestMemoryError);
  assert.throws(() => m.hostAddr(0, 1), GuestMemoryError);
  m.close(); // safe twice
});

Deno.test("memory: attach shares the mapping and its close() does not unmap", () => {
  withGuest(64 * KiB, (owner) => {
    const view = GuestMemory.attach(owner.hostAddress, owner.size);
    owner.writeU32(0x100, 0x11223344);
    assert.equal(view.readU32(0x100), 0x11223344);
    view.writeU16(0x200, 0x7788);
    assert.equal(owner.readU16(0x200), 0x7788);
    view.close();
    assert.throws(() => view.readU32(0x100), GuestMemoryError);
    // Still mapped: the owner reads on (an unmapped page would fault the process).
    assert.equal(owner.readU32(0x100), 0x11223344);
  });
});

/*T:301 The reference model: a range is inside guest RAM exactly when both
 * ends, computed without any wrap-around, fall in one region. Numbers that
 * are not safe integers are never valid input. :*/
function modelOffset(regions: readonly { gpa: number; size: number; offset: number }[], gpa: unknown, len: unknown) {
  const big = (x: unknown): bigint | undefined =>
    typeof x === "bigint" ? x : typeof x === "number" && Number.isSafeInteger(x) ? BigInt(x) : undefined;
  const g = big(gpa);
  const n = big(len);
  if (g === undefined || n === undefined || g < 0n || n < 0n) return -1;
  for (const r of regions) {
    const start = BigInt(r.gpa);
    const end = start + BigInt(r.size);
    if (g >= start && g + n <= end) return r.offset + Number(g - start);
  }
  return -1;
}

const SIZE = 4 * GiB;
const PIVOTS = [0n, BigInt(SIZE), 3n * BigInt(GiB), 4n * BigInt(GiB), 5n * BigInt(GiB), 2n ** 53n, 2n ** 64n];
const nearPivot = fc.tuple(fc.constantFrom(...PIVOTS), fc.integer({ min: -9, max: 9 })).map(([p, d]) => p + BigInt(d));
const bigAddr = fc.oneof(
  { weight: 4, arbitrary: nearPivot },
  { weight: 2, arbitrary: fc.bigInt({ min: 0n, max: 6n * BigInt(GiB) }) },
  { weight: 1, arbitrary: fc.bigInt({ min: -(2n ** 65n), max: 2n ** 65n }) },
);
const bigLen = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(0n, 1n, 2n, 4n, 8n, 4096n, BigInt(GiB), 2n ** 32n, 2n ** 64n - 1n) },
  { weight: 2, arbitrary: nearPivot },
  { weight: 2, arbitrary: fc.bigInt({ min: 0n, max: 2n * BigInt(GiB) }) },
  { weight: 1, arbitrary: fc.bigInt({ min: -(2n ** 65n), max: 2n ** 65n }) },
);
const oddNumber = fc.constantFrom(NaN, Infinity, -Infinity, 0.5, 3 * GiB + 0.5, -0, 2 ** 53 + 2);
const numAddr = fc.oneof({ weight: 8, arbitrary: bigAddr.map(Number) }, { weight: 1, arbitrary: oddNumber });
const numLen = fc.oneof({ weight: 8, arbitrary: bigLen.map(Number) }, { weight: 1, arbitrary: oddNumber });

Deno.test("memory: property: contains/tryOffset agree with a BigInt reference model (4 GiB guest)", () => {
  withGuest(SIZE, (m) => {
    const check = (gpa: number | bigint, len: number | bigint) => {
      const want = modelOffset(m.regions, gpa, len);
      assert.equal(m.tryOffset(gpa, len), want, `tryOffset(${gpa}, ${len})`);
      assert.equal(m.contains(gpa, len), want >= 0, `contains(${gpa}, ${len})`);
    };
    fc.assert(fc.property(bigAddr, bigLen, check), { numRuns: 3000 });
    fc.assert(fc.property(numAddr, numLen, check), { numRuns: 3000 });
    // Mixed kinds, with safe-integer numbers (non-integers: see the regression test below).
    fc.assert(fc.property(bigAddr, bigLen.map(Number).filter(Number.isSafeInteger), check), { numRuns: 2000 });
    fc.assert(fc.property(bigAddr.map(Number).filter(Number.isSafeInteger), bigLen, check), { numRuns: 2000 });
  });
});

/*T:302 Regression: tryOffset promises "-1 instead of throwing", and once a
 * BigInt paired with a non-integer number (NaN, 1.5) reached BigInt(x),
 * which threw a RangeError; offset() then threw a bare RangeError with no
 * label instead of a GuestMemoryError. :*/

Deno.test("memory: tryOffset/contains with a BigInt and a non-integer number refuse instead of throwing", () => {
  withGuest(64 * KiB, (m) => {
    assert.equal(m.tryOffset(16n, 1.5), -1);
    assert.equal(m.tryOffset(NaN, 4n), -1);
    assert.equal(m.contains(Infinity, 0n), false);
  });
});

Deno.test("memory: offset() of a non-integer number throws GuestMemoryError with the label", () => {
  withGuest(64 * KiB, (m) => {
    for (const [gpa, len] of [[NaN, 4], [1.5, 4], [0, 0.5], [16n, NaN]] as const) {
      assert.throws(() => m.offset(gpa, len, "used ring"), (e: unknown) => {
        assert.ok(e instanceof GuestMemoryError, `offset(${gpa}, ${len}) threw ${e}`);
        assert.match(e.message, /used ring/);
        return true;
      });
    }
  });
});

Deno.test("memory: a view kept past close() reads as empty; a use after close is an error, never a fault", () => {
  const mem = GuestMemory.create(1 << 20);
  const kept = mem.slice(0x1000, 16);
  kept.fill(7);
  const whole = mem.bytes;
  mem.close();
  // Without the detach in close(), reading `kept` here reads unmapped memory and the process dies of SIGSEGV.
  assert.equal(kept.length, 0);
  assert.equal(kept[0], undefined);
  assert.equal(whole.length, 0);
  assert.throws(() => mem.view.getUint8(0), TypeError);
  assert.notDeepEqual(kept, new Uint8Array(16).fill(7), "a comparison after close fails instead");
  mem.close();
});
