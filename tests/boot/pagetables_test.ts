import { equal } from "node:assert/strict";
import { PD_ADDR, PML4_ADDR } from "../../lib/boot/layout.ts";
import { buildIdentityMap, translate } from "../../lib/boot/pagetables.ts";
import { MiB, withMemory } from "./images.ts";

Deno.test("pagetables: the first 4 GiB are identity mapped", () => {
  withMemory(16 * MiB, (mem) => {
    const cr3 = buildIdentityMap(mem);
    equal(cr3, PML4_ADDR);
    for (
      const va of [
        0,
        0x1000,
        0x7000,
        0x1fffff,
        0x200000,
        0x1234567,
        0xc0000000,
        0xfee00000,
        0xfffff000,
        0xffffffff,
      ]
    ) {
      equal(translate(mem, cr3, va), BigInt(va), `0x${va.toString(16)}`);
    }
  });
});

Deno.test("pagetables: nothing at or above 4 GiB, nor non-canonical addresses", () => {
  withMemory(16 * MiB, (mem) => {
    const cr3 = buildIdentityMap(mem);
    equal(translate(mem, cr3, 0x1_0000_0000), null);
    equal(translate(mem, cr3, 0x7f_0000_0000n), null);
    equal(translate(mem, cr3, 0xffff_ffff_8100_0000n), null);
    equal(translate(mem, cr3, 0x0000_8000_0000_0000n), null);
  });
});

Deno.test("pagetables: entries use 2 MiB pages with present|rw|PS", () => {
  withMemory(16 * MiB, (mem) => {
    buildIdentityMap(mem);
    equal(mem.readU64(PD_ADDR), 0x83n);
    equal(mem.readU64(PD_ADDR + 8), 0x200083n);
    equal(mem.readU64(PD_ADDR + 3 * 4096 + 511 * 8), 0xffe00083n);
  });
});
