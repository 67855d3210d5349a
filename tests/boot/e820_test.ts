import { deepEqual, equal } from "node:assert/strict";
import { BOOT_PARAMS } from "../../lib/boot/bootparam.ts";
import { buildE820, E820_RAM, E820_RESERVED, readE820, validateMemorySize, writeE820 } from "../../lib/boot/e820.ts";
import { KVM_IDENTITY_MAP_ADDR } from "../../lib/boot/layout.ts";
import { ramRegions } from "../../lib/memory.ts";
import { expectBootError, MiB } from "./images.ts";

const GiB = 1024 * MiB;
const low = (end: number) => [
  { addr: 0, size: 0x9fc00, type: E820_RAM },
  { addr: 0x9fc00, size: 0x100000 - 0x9fc00, type: E820_RESERVED },
  { addr: 0x100000, size: end - 0x100000, type: E820_RAM },
];

Deno.test("e820: 64 MiB guest", () => {
  deepEqual(buildE820(ramRegions(64 * MiB)), low(64 * MiB));
});

Deno.test("e820: 3 GiB guest has no high region", () => {
  deepEqual(buildE820(ramRegions(3 * GiB)), low(3 * GiB));
});

Deno.test("e820: 4 GiB guest puts the last GiB above 4 GiB", () => {
  const map = buildE820(ramRegions(4 * GiB));
  deepEqual(map, [...low(3 * GiB), { addr: 4 * GiB, size: GiB, type: E820_RAM }]);
});

Deno.test("e820: extra reserved ranges, outside and inside RAM", () => {
  const tss = { addr: KVM_IDENTITY_MAP_ADDR, size: 0x4000 };
  const map = buildE820(ramRegions(64 * MiB), [tss, { addr: 0x2000000, size: 0x1000 }]);
  deepEqual(map, [
    ...low(0x2000000),
    { addr: 0x2000000, size: 0x1000, type: E820_RESERVED },
    { addr: 0x2001000, size: 64 * MiB - 0x2001000, type: E820_RAM },
    { addr: KVM_IDENTITY_MAP_ADDR, size: 0x4000, type: E820_RESERVED },
  ]);
});

Deno.test("e820: written into and read back from a zero page", () => {
  const page = new Uint8Array(BOOT_PARAMS.size);
  const map = buildE820(ramRegions(4 * GiB));
  writeE820(page, map);
  equal(page[0x1e8], 4);
  const v = new DataView(page.buffer);
  equal(v.getBigUint64(0x2d0 + 3 * 20, true), 0x1_0000_0000n);
  equal(v.getUint32(0x2d0 + 1 * 20 + 16, true), E820_RESERVED);
  deepEqual(readE820(page), map);
});

Deno.test("e820: tiny guests are refused", () => {
  expectBootError(() => validateMemorySize(1 * MiB), /1 MiB is too small \(need at least 2 MiB\)/);
  validateMemorySize(2 * MiB);
  expectBootError(() => buildE820(ramRegions(1 * MiB)), /too small/);
});
