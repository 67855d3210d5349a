import fc from "fast-check";
import { ok } from "node:assert/strict";
import { BootError } from "../../lib/boot/errors.ts";
import { loadKernelImage } from "../../lib/boot/kernel.ts";
import { GuestMemory, GuestMemoryError } from "../../lib/memory.ts";
import { buildBzImage, MiB, validElf } from "./images.ts";

const RUNS = 300;

/** Byte edits, biased towards the headers where the interesting numbers live. */
function mutations(hot: number, size: number) {
  const index = fc.oneof(
    { weight: 4, arbitrary: fc.nat({ max: hot - 1 }) },
    { weight: 1, arbitrary: fc.nat({ max: size - 1 }) },
  );
  return fc.record({
    edits: fc.array(fc.tuple(index, fc.nat({ max: 255 })), { minLength: 1, maxLength: 12 }),
    cut: fc.option(fc.nat({ max: size }), { freq: 4 }),
  });
}

function mutate(base: Uint8Array, m: { edits: [number, number][]; cut: number | null }) {
  const image = base.slice();
  for (const [at, value] of m.edits) image[at] = value;
  return m.cut === null ? image : image.subarray(0, m.cut);
}

function checkLoader(base: Uint8Array, hot: number) {
  const mem = GuestMemory.create(32 * MiB);
  try {
    fc.assert(
      fc.property(mutations(hot, base.length), (m) => {
        try {
          const k = loadKernelImage(mem, mutate(base, m), "fuzzed");
          ok(mem.contains(k.entry, 1), "entry lies in guest RAM");
          ok(k.kernelEnd <= mem.size, "kernel ends inside guest RAM");
        } catch (e) {
          if (!(e instanceof BootError) && !(e instanceof GuestMemoryError)) throw e;
        }
        ok(mem.slice(0, 0x100000).every((b) => b === 0), "low 1 MiB untouched");
      }),
      { numRuns: RUNS },
    );
  } finally {
    mem.close();
  }
}

Deno.test("fuzz: mutated ELF images fail only with BootError", () => {
  checkLoader(validElf(), 64 + 2 * 56);
});

Deno.test("fuzz: mutated bzImages fail only with BootError", () => {
  checkLoader(buildBzImage({ initSize: 0x400000 }), 0x270);
});
