/** The random drivers of the virtqueue fuzz tests: the guest, the indices and the hostile rings. */

import fc from "fast-check";
import { GuestMemory } from "../../lib/memory.ts";
import { VRING_DESC_F_INDIRECT } from "../../lib/virtio/queue.ts";
import type { RawDesc } from "./driver.ts";

/** The fuzzed guest: 1 MiB, so the edges of RAM are easy to hit. */
export const RAM = 1024 * 1024;
/** Where the driver lays out its rings. */
export const BASE = 0x1000;
/** Where the hostile runs put their indirect tables. */
export const TABLES = [0xc0000, 0xc8000, 0xd0000, RAM - 64];

/** Runs `body` with one guest for the whole test, cleared between runs by the caller. */
export function withMem(body: (mem: GuestMemory) => void): void {
  const mem = GuestMemory.create(RAM);
  try {
    body(mem);
  } finally {
    mem.close();
  }
}

/** Any 16-bit value. */
export const u16 = fc.integer({ min: 0, max: 0xffff });
const nearWrap = fc.integer({ min: 0xfff0, max: 0xffff });
/** A ring index to start at, most often just before the 16-bit wrap. */
export const startIndex = fc.oneof({ arbitrary: nearWrap, weight: 2 }, { arbitrary: u16, weight: 1 });

/** Descriptors biased towards the interesting: tables, edges of RAM, edges of number types. */
export function rawDesc(size: number): fc.Arbitrary<RawDesc> {
  const addr = fc.oneof(
    { arbitrary: fc.integer({ min: 0x80000, max: RAM - 1 }), weight: 6 },
    { arbitrary: fc.constantFrom(...TABLES), weight: 3 },
    {
      arbitrary: fc.constantFrom<number | bigint>(
        0,
        RAM - 1,
        RAM,
        RAM + 1,
        2 ** 32 - 1,
        2 ** 32,
        2 ** 53 - 1,
        2 ** 53,
        1n << 63n,
        (1n << 64n) - 1n,
        (1n << 64n) - 16n,
      ),
      weight: 1,
    },
    { arbitrary: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), weight: 1 },
  );
  const len = fc.oneof(
    { arbitrary: fc.nat({ max: 4096 }), weight: 4 },
    { arbitrary: fc.constantFrom(0, 16, 32, 48, 64, 16 * 65537, RAM, RAM + 1, 2 ** 31, 2 ** 32 - 1), weight: 2 },
    { arbitrary: fc.integer({ min: 0, max: 0xffffffff }), weight: 1 },
  );
  const flags = fc.oneof(
    { arbitrary: fc.nat({ max: 3 }), weight: 8 },
    { arbitrary: fc.nat({ max: 7 }), weight: 4 },
    { arbitrary: u16, weight: 1 },
  );
  const next = fc.oneof({ arbitrary: fc.nat({ max: size + 1 }), weight: 6 }, { arbitrary: u16, weight: 1 });
  const plain = fc.record({ addr, len, flags, next });
  // A well-formed pointer to one of the tables, so that walks get inside them often.
  const toTable = fc.record({
    addr: fc.constantFrom(...TABLES),
    len: fc.integer({ min: 1, max: 12 }).map((n) => 16 * n),
    flags: fc.constant(VRING_DESC_F_INDIRECT),
    next: u16,
  });
  return fc.oneof({ arbitrary: plain, weight: 6 }, { arbitrary: toTable, weight: 1 });
}

/** A whole hostile ring: layout, indices, descriptors, tables and what the device will do. */
export const hostile = fc.constantFrom(1, 2, 4, 8, 16, 32, 256).chain((size) =>
  fc.record({
    size: fc.constant(size),
    eventIdx: fc.boolean(),
    indirect: fc.boolean(),
    start: startIndex,
    availDelta: fc.oneof(
      { arbitrary: fc.integer({ min: 0, max: size }), weight: 12 },
      { arbitrary: fc.integer({ min: size + 1, max: size + 2 }), weight: 1 },
      { arbitrary: u16, weight: 1 },
    ),
    availRing: fc.array(
      fc.oneof({ arbitrary: fc.nat({ max: size - 1 }), weight: 8 }, { arbitrary: u16, weight: 1 }),
      { minLength: size, maxLength: size },
    ),
    availFlags: u16,
    usedEvent: u16,
    descs: fc.array(rawDesc(size), { minLength: size, maxLength: size }),
    tables: fc.array(fc.array(rawDesc(8), { minLength: 1, maxLength: 12 }), { maxLength: TABLES.length - 1 }),
    tailTable: fc.array(rawDesc(4), { maxLength: 4 }),
    written: fc.nat(),
    enable: fc.boolean(),
  })
);
