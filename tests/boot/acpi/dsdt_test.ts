import assert from "node:assert/strict";
import { dsdtAml, virtioDeviceName } from "../../../lib/boot/acpi/dsdt.ts";

const ascii = (s: string) => [...s].map((c) => c.charCodeAt(0));

// The whole DSDT body for COM1 and one virtio-mmio device, byte by byte,
// worked out by hand from the ACPI 6.3 grammar. The lengths in the
// comments are what each PkgLength counts (its own bytes included).
// deno-fmt-ignore
const COM1 = [
  0x5b, 0x82, 0x31, ...ascii("COM1"), // Device, PkgLength 49
  0x08, ...ascii("_HID"), 0x0c, 0x41, 0xd0, 0x05, 0x01, // EisaId("PNP0501")
  0x08, ...ascii("_UID"), 0x01, // One
  0x08, ...ascii("_CRS"), 0x11, 0x16, 0x0a, 0x13, // Buffer, PkgLength 22, 19 bytes
  0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08, // IO(Decode16, 0x3f8, 0x3f8, 1, 8)
  0x89, 0x06, 0x00, 0x03, 0x01, 0x04, 0x00, 0x00, 0x00, // Interrupt(Consumer, Edge, ActiveHigh) {4}
  0x79, 0xa9, // End Tag
];
// deno-fmt-ignore
const VR00 = [
  0x5b, 0x82, 0x41, 0x04, ...ascii("VR00"), // Device, PkgLength 65 (two bytes: 0x40 | 1, 4)
  0x08, ...ascii("_HID"), 0x0d, ...ascii("LNRO0005"), 0x00,
  0x08, ...ascii("_UID"), 0x00, // Zero
  0x08, ...ascii("_CCA"), 0x01, // One
  0x08, ...ascii("_CRS"), 0x11, 0x1a, 0x0a, 0x17, // Buffer, PkgLength 26, 23 bytes
  0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xd0, 0x00, 0x10, 0x00, 0x00, // Memory32Fixed(RW, 0xd0000000, 0x1000)
  0x89, 0x06, 0x00, 0x03, 0x01, 0x05, 0x00, 0x00, 0x00, // Interrupt(Consumer, Edge, ActiveHigh) {5}
  0x79, 0x7f, // End Tag
];
// deno-fmt-ignore
const EXPECTED = [
  0x10, 0x4d, 0x07, 0x5c, ...ascii("_SB_"), // Scope(\_SB), PkgLength 125 = 0x7d
  ...COM1,
  ...VR00,
  0x08, ...ascii("_S5_"), 0x12, 0x05, 0x02, 0x0a, 0x05, 0x00, // Name(_S5_, Package() {5, Zero})
];

Deno.test("dsdt: COM1 and one virtio-mmio device, byte for byte", () => {
  const aml = dsdtAml({
    serial: { port: 0x3f8, irq: 4 },
    virtioMmio: [{ base: 0xd000_0000, size: 0x1000, irq: 5 }],
  });
  assert.equal(COM1.length, 51);
  assert.equal(VR00.length, 67);
  assert.deepEqual(aml, Uint8Array.from(EXPECTED));
});

Deno.test("dsdt: no UART, and device names count in hex", () => {
  const windows = Array.from({ length: 17 }, (_, i) => ({ base: 0xd000_0000 + i * 0x1000, size: 0x1000, irq: 5 + i }));
  const aml = dsdtAml({ virtioMmio: windows });
  const text = String.fromCharCode(...aml);
  assert.ok(!text.includes("COM1"));
  assert.equal(text.split("LNRO0005").length - 1, 17);
  for (const n of ["VR00", "VR09", "VR0A", "VR10"]) assert.ok(text.includes(n), n);
  assert.equal(virtioDeviceName(255), "VRFF");
  assert.throws(() => virtioDeviceName(256), RangeError);
});
