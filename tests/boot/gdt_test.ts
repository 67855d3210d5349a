import { deepEqual, equal } from "node:assert/strict";
import { BOOT_CS, BOOT_CS32, BOOT_DS, BOOT_GDT, decodeSegment, gdtEntry, writeGdt } from "../../lib/boot/gdt.ts";
import { GDT_ADDR, IDT_ADDR } from "../../lib/boot/layout.ts";
import { MiB, withMemory } from "./images.ts";

Deno.test("gdt: the boot descriptors have the canonical encodings", () => {
  equal(BOOT_GDT[BOOT_CS / 8], 0x00af_9b00_0000_ffffn);
  equal(BOOT_GDT[BOOT_DS / 8], 0x00cf_9300_0000_ffffn);
  equal(BOOT_GDT[BOOT_CS32 / 8], 0x00cf_9b00_0000_ffffn);
  equal(BOOT_GDT[0], 0n);
  equal(BOOT_GDT[1], 0n);
});

Deno.test("gdt: the code segment is 64-bit, ring 0, present, flat", () => {
  deepEqual(decodeSegment(BOOT_GDT[BOOT_CS / 8]!), {
    base: 0,
    limit: 0xfffff,
    type: 0xb,
    s: 1,
    dpl: 0,
    present: 1,
    avl: 0,
    l: 1,
    db: 0,
    g: 1,
  });
  const ds = decodeSegment(BOOT_GDT[BOOT_DS / 8]!);
  equal(ds.type, 0x3);
  equal(ds.db, 1);
  equal(ds.l, 0);
});

Deno.test("gdt: the PVH code segment is 32-bit, ring 0, present, flat", () => {
  deepEqual(decodeSegment(BOOT_GDT[BOOT_CS32 / 8]!), {
    base: 0,
    limit: 0xfffff,
    type: 0xb,
    s: 1,
    dpl: 0,
    present: 1,
    avl: 0,
    l: 0,
    db: 1,
    g: 1,
  });
});

Deno.test("gdt: encode/decode round trip", () => {
  for (
    const [base, limit, access, flags] of [
      [0, 0, 0, 0],
      [0xfedcba98, 0x12345, 0xf2, 0x5],
      [0xffffffff, 0xfffff, 0xff, 0xf],
      [0x00123456, 0xabcde, 0x89, 0x8],
    ] as const
  ) {
    const d = decodeSegment(gdtEntry(base, limit, access, flags));
    equal(d.base, base);
    equal(d.limit, limit);
    equal(d.type | (d.s << 4) | (d.dpl << 5) | (d.present << 7), access);
    equal(d.avl | (d.l << 1) | (d.db << 2) | (d.g << 3), flags);
  }
});

Deno.test("gdt: writeGdt puts the table at GDT_ADDR", () => {
  withMemory(4 * MiB, (mem) => {
    deepEqual(writeGdt(mem), { base: GDT_ADDR, limit: 39 });
    equal(mem.readU64(GDT_ADDR + BOOT_CS), BOOT_GDT[2]);
    equal(mem.readU64(GDT_ADDR + BOOT_DS), BOOT_GDT[3]);
    equal(mem.readU64(GDT_ADDR + BOOT_CS32), BOOT_GDT[4]);
    equal(GDT_ADDR + BOOT_GDT.length * 8 <= IDT_ADDR, true, "the GDT ends before the IDT");
  });
});
