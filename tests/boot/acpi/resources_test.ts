import assert from "node:assert/strict";
import fc from "fast-check";
import { readPkgLength } from "../../../lib/boot/acpi/aml.ts";
import { interrupt, ioPorts, memory32Fixed, resourceTemplate } from "../../../lib/boot/acpi/resources.ts";

const bytes = (...b: number[]) => Uint8Array.from(b);
const EDGE_HIGH = { edge: true, activeLow: false } as const;

// Expected bytes are worked out by hand from ACPI 6.3 section 6.4: a small
// tag is type << 3 | length, a large tag is 0x80 | type and a 16-bit length.
Deno.test("resources: IO(Decode16, 0x3f8, 0x3f8, 1, 8)", () => {
  assert.deepEqual(ioPorts(0x3f8, 0x3f8, 1, 8), bytes(0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08));
  assert.throws(() => ioPorts(0x10000, 0x10000, 1, 8), RangeError);
  assert.throws(() => ioPorts(0x3f8, 0x3f8, 1, 256), RangeError);
});

Deno.test("resources: Memory32Fixed(ReadWrite, 0xd0000000, 0x1000)", () => {
  assert.deepEqual(
    memory32Fixed(0xd000_0000, 0x1000),
    bytes(0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xd0, 0x00, 0x10, 0x00, 0x00),
  );
  assert.equal(memory32Fixed(0, 1, false)[3], 0, "read-only");
  assert.throws(() => memory32Fixed(0x1_0000_0000, 0x1000), RangeError);
});

Deno.test("resources: Interrupt(ResourceConsumer, ...) flags and GSIs", () => {
  assert.deepEqual(interrupt([5], EDGE_HIGH), bytes(0x89, 0x06, 0x00, 0x03, 0x01, 0x05, 0x00, 0x00, 0x00));
  assert.deepEqual(
    interrupt([23, 0x12345678], { edge: false, activeLow: true, shared: true }),
    bytes(0x89, 0x0a, 0x00, 0x0d, 0x02, 23, 0, 0, 0, 0x78, 0x56, 0x34, 0x12),
  );
  assert.throws(() => interrupt([], EDGE_HIGH), RangeError);
  assert.throws(() => interrupt([-1], EDGE_HIGH), RangeError);
});

Deno.test("resources: ResourceTemplate ends with an End Tag whose checksum zeroes the sum", () => {
  // COM1's template: IO + Interrupt(4) + End Tag. The descriptors sum to
  // 0x2de, plus the tag 0x79 is 0x357, so the checksum is 0x100 - 0x57.
  const t = resourceTemplate(ioPorts(0x3f8, 0x3f8, 1, 8), interrupt([4], EDGE_HIGH));
  // deno-fmt-ignore
  const expected = [
    0x11, 0x16, 0x0a, 0x13, // Buffer, PkgLength 22, size 19
    0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08, // IO
    0x89, 0x06, 0x00, 0x03, 0x01, 0x04, 0x00, 0x00, 0x00, // Interrupt {4}
    0x79, 0xa9, // End Tag
  ];
  assert.deepEqual(t, Uint8Array.from(expected));
  assert.deepEqual(resourceTemplate(), bytes(0x11, 0x05, 0x0a, 0x02, 0x79, 0x87));
});

Deno.test("resources: any template's descriptors and End Tag sum to 0 mod 256 (property)", () => {
  const descriptor = fc.oneof(
    fc.tuple(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xff })).map(([p, n]) =>
      ioPorts(p, p, 1, n)
    ),
    fc.tuple(fc.nat({ max: 0xffff_ffff }), fc.nat({ max: 0xffff_ffff })).map(([b, l]) => memory32Fixed(b, l)),
    fc.tuple(fc.array(fc.nat({ max: 0xffff_ffff }), { minLength: 1, maxLength: 8 }), fc.boolean(), fc.boolean())
      .map(([g, edge, activeLow]) => interrupt(g, { edge, activeLow })),
  );
  fc.assert(
    fc.property(fc.array(descriptor, { maxLength: 40 }), (ds) => {
      const t = resourceTemplate(...ds);
      const { size } = readPkgLength(t, 1);
      const sizeTerm = t[1 + size] === 0x0a ? 2 : 3;
      const body = t.subarray(1 + size + sizeTerm);
      assert.equal(body.length, ds.reduce((n, d) => n + d.length, 2));
      assert.equal(body[body.length - 2], 0x79);
      assert.equal(body.reduce((a, b) => a + b, 0) & 0xff, 0);
    }),
    { numRuns: 500 },
  );
});
