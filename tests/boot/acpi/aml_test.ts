import assert from "node:assert/strict";
import fc from "fast-check";
import {
  buffer,
  concat,
  device,
  eisaId,
  eisaIdValue,
  integer,
  name,
  namePath,
  nameSeg,
  pkg,
  PKG_LENGTH_MAX,
  pkgLength,
  readPkgLength,
  scope,
  string,
} from "../../../lib/boot/acpi/aml.ts";

const bytes = (...b: number[]) => Uint8Array.from(b);
const ascii = (s: string) => [...s].map((c) => c.charCodeAt(0));

// Expected bytes below are worked out by hand from the ACPI 6.3 grammar
// (section 20.2): PkgLength counts its own bytes; the lead byte's top two
// bits count the bytes that follow, its low nibble holds bits 0-3.
Deno.test("aml: PkgLength at every encoding boundary", () => {
  assert.deepEqual(pkgLength(0), bytes(0x01));
  assert.deepEqual(pkgLength(62), bytes(0x3f), "63 is the largest one-byte value");
  assert.deepEqual(pkgLength(63), bytes(0x41, 0x04), "63 + 2 = 0x41");
  assert.deepEqual(pkgLength(4093), bytes(0x4f, 0xff), "4093 + 2 = 0xfff");
  assert.deepEqual(pkgLength(4094), bytes(0x81, 0x00, 0x01), "4094 + 3 = 0x1001");
  assert.deepEqual(pkgLength(0xffffc), bytes(0x8f, 0xff, 0xff), "0xffffc + 3 = 0xfffff");
  assert.deepEqual(pkgLength(0xffffd), bytes(0xc1, 0x00, 0x00, 0x01), "0xffffd + 4 = 0x100001");
  assert.deepEqual(pkgLength(PKG_LENGTH_MAX - 4), bytes(0xcf, 0xff, 0xff, 0xff));
  assert.throws(() => pkgLength(PKG_LENGTH_MAX - 3), RangeError);
  assert.throws(() => pkgLength(-1), RangeError);
  assert.throws(() => pkgLength(1.5), RangeError);
});

function checkPkgLength(n: number): void {
  const enc = pkgLength(n);
  const { value, size } = readPkgLength(enc);
  assert.equal(size, enc.length);
  assert.equal(value, n + enc.length, `content ${n}`);
  // Smallest: one byte fewer could not hold the total.
  const limits = [0x3f, 0xfff, 0xfffff, 0xfffffff];
  if (enc.length > 1) assert.ok(n + enc.length - 1 > limits[enc.length - 2]!, `content ${n} fits a shorter form`);
  if (enc.length > 1) assert.equal(enc[0]! & 0x30, 0, "reserved bits clear");
}

Deno.test("aml: PkgLength round-trips and is minimal for every length below 70000", () => {
  for (let n = 0; n < 70000; n++) checkPkgLength(n);
});

Deno.test("aml: PkgLength round-trips and is minimal for any length (property)", () => {
  fc.assert(fc.property(fc.integer({ min: 0, max: PKG_LENGTH_MAX - 4 }), (n) => checkPkgLength(n)), {
    numRuns: 5000,
  });
});

Deno.test("aml: readPkgLength refuses truncated input and reserved bits", () => {
  assert.throws(() => readPkgLength(bytes(0x81, 0x00)), RangeError);
  assert.throws(() => readPkgLength(bytes(0x50, 0x00)), RangeError);
  assert.throws(() => readPkgLength(bytes()), RangeError);
});

Deno.test("aml: name segments and paths", () => {
  assert.deepEqual(nameSeg("_HID"), bytes(...ascii("_HID")));
  assert.deepEqual(nameSeg("_S5"), bytes(...ascii("_S5_")), "padded with _");
  assert.deepEqual(nameSeg("A"), bytes(...ascii("A___")));
  assert.deepEqual(namePath("COM1"), bytes(...ascii("COM1")));
  assert.deepEqual(namePath("\\_SB"), bytes(0x5c, ...ascii("_SB_")));
  assert.deepEqual(namePath("\\_SB.COM1"), bytes(0x5c, 0x2e, ...ascii("_SB_COM1")), "DualNamePrefix");
  assert.deepEqual(namePath("A.B.C"), bytes(0x2f, 3, ...ascii("A___B___C___")), "MultiNamePrefix and a count");
  assert.deepEqual(namePath("^^PCI0"), bytes(0x5e, 0x5e, ...ascii("PCI0")));
  assert.deepEqual(namePath("\\"), bytes(0x5c, 0x00), "the root is a NullName after '\\'");
  for (const bad of [".", "1ABC", "ABCDE", "abc", "A-B", "A..B", "\\^A", "A."]) {
    assert.throws(() => namePath(bad), RangeError, bad);
  }
  assert.throws(() => nameSeg(""), RangeError);
});

Deno.test("aml: integers take Zero, One or the smallest prefix", () => {
  assert.deepEqual(integer(0), bytes(0x00));
  assert.deepEqual(integer(1), bytes(0x01));
  assert.deepEqual(integer(2), bytes(0x0a, 0x02));
  assert.deepEqual(integer(0xff), bytes(0x0a, 0xff));
  assert.deepEqual(integer(0x100), bytes(0x0b, 0x00, 0x01));
  assert.deepEqual(integer(0xffff), bytes(0x0b, 0xff, 0xff));
  assert.deepEqual(integer(0x10000), bytes(0x0c, 0x00, 0x00, 0x01, 0x00));
  assert.deepEqual(integer(0xd0000000), bytes(0x0c, 0x00, 0x00, 0x00, 0xd0));
  assert.deepEqual(integer(0x1_0000_0000), bytes(0x0e, 0, 0, 0, 0, 1, 0, 0, 0));
  assert.deepEqual(integer(0xffff_ffff_ffff_ffffn), bytes(0x0e, ...Array(8).fill(0xff)));
  assert.throws(() => integer(-1), RangeError);
  assert.throws(() => integer(1n << 64n), RangeError);
  assert.throws(() => integer(2 ** 53), RangeError, "not a safe integer");
});

Deno.test("aml: integers round-trip with the smallest encoding (property)", () => {
  fc.assert(
    fc.property(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), (v) => {
      const enc = integer(v);
      if (v <= 1n) return assert.deepEqual(enc, bytes(Number(v)));
      const width = { 0x0a: 1, 0x0b: 2, 0x0c: 4, 0x0e: 8 }[enc[0]!];
      assert.ok(width !== undefined, `prefix 0x${enc[0]!.toString(16)}`);
      assert.equal(enc.length, 1 + width);
      let back = 0n;
      for (let i = width; i >= 1; i--) back = (back << 8n) | BigInt(enc[i]!);
      assert.equal(back, v);
      const smallest = [1, 2, 4, 8].find((w) => v < 1n << BigInt(8 * w));
      assert.equal(width, smallest, "the smallest prefix that holds it");
    }),
    { numRuns: 2000 },
  );
});

Deno.test("aml: strings and EISA ids", () => {
  assert.deepEqual(string("LNRO0005"), bytes(0x0d, ...ascii("LNRO0005"), 0));
  assert.deepEqual(string(""), bytes(0x0d, 0));
  assert.throws(() => string("é"), RangeError);
  assert.throws(() => string("a\0b"), RangeError);
  // Known values: iasl compiles EisaId("PNP0501") to 0x0105D041 and
  // EisaId("PNP0A03") (a PCI host bridge) to 0x030AD041.
  assert.equal(eisaIdValue("PNP0501"), 0x0105d041);
  assert.equal(eisaIdValue("PNP0A03"), 0x030ad041);
  assert.deepEqual(eisaId("PNP0501"), bytes(0x0c, 0x41, 0xd0, 0x05, 0x01));
  for (const bad of ["PNP050", "pnp0501", "PNP05G1", "PNP05011"]) assert.throws(() => eisaIdValue(bad), RangeError);
});

Deno.test("aml: Name, Package, Buffer, Device and Scope", () => {
  // Name(_S5, Package() { 5, Zero })
  assert.deepEqual(
    name("_S5", pkg(integer(5), integer(0))),
    bytes(0x08, ...ascii("_S5_"), 0x12, 0x05, 0x02, 0x0a, 0x05, 0x00),
  );
  assert.deepEqual(pkg(), bytes(0x12, 0x02, 0x00));
  assert.throws(() => pkg(...Array(256).fill(integer(0))), RangeError);
  // Buffer(){1, 2, 3}: the size is an integer term, then the bytes.
  assert.deepEqual(buffer(bytes(1, 2, 3)), bytes(0x11, 0x06, 0x0a, 0x03, 1, 2, 3));
  assert.deepEqual(buffer(bytes()), bytes(0x11, 0x02, 0x00));
  // Device(DEV0) { Name(_UID, One) }
  assert.deepEqual(
    device("DEV0", name("_UID", integer(1))),
    bytes(0x5b, 0x82, 0x0b, ...ascii("DEV0"), 0x08, ...ascii("_UID"), 0x01),
  );
  // Scope(\_SB) {}
  assert.deepEqual(scope("\\_SB"), bytes(0x10, 0x06, 0x5c, ...ascii("_SB_")));
  // 100 bytes need a two-byte PkgLength: it counts 2 + 2 (the size) + 100 =
  // 0x68, so the lead byte is 0x40 | 0x8 and the next holds 0x6.
  const big = buffer(new Uint8Array(100));
  assert.deepEqual(big.subarray(0, 5), bytes(0x11, 0x48, 0x06, 0x0a, 100));
  assert.equal(big.length, 105);
  assert.deepEqual(concat(bytes(1), bytes(), bytes(2, 3)), bytes(1, 2, 3));
});
