import { deepEqual, equal, ok, throws } from "node:assert/strict";
import { loadElf } from "../../lib/boot/elf.ts";
import { BootError } from "../../lib/boot/errors.ts";
import { buildElf, expectBootError, MiB, patternByte, pvhNote, validElf, withMemory } from "./images.ts";

function rejects(image: Uint8Array, pattern: RegExp, size = 16 * MiB): void {
  withMemory(size, (mem) => {
    const message = expectBootError(() => loadElf(mem, image, "vmlinux"), pattern);
    ok(message.startsWith("vmlinux: "), "message names the file");
  });
}

function poke16(image: Uint8Array, at: number, value: number): Uint8Array {
  const copy = image.slice();
  new DataView(copy.buffer).setUint16(at, value, true);
  return copy;
}

Deno.test("elf: loads both segments at p_paddr and zero-fills p_memsz", () => {
  withMemory(16 * MiB, (mem) => {
    mem.fill(0x100000, 0x3000, 0xee);
    const elf = loadElf(mem, validElf());
    equal(elf.entry, 0x100000);
    deepEqual(elf.segments, [
      { paddr: 0x100000, memsz: 0x3000, filesz: 0x1000 },
      { paddr: 0x200000, memsz: 0x800, filesz: 0x800 },
    ]);
    equal(elf.lowest, 0x100000);
    equal(elf.highest, 0x200800);
    equal(elf.pvhEntry, undefined);
    for (const k of [0, 1, 0x7ff, 0xfff]) {
      equal(mem.readU8(0x100000 + k), patternByte(0, k));
    }
    equal(mem.readU8(0x200000 + 0x7ff), patternByte(1, 0x7ff));
    equal(mem.readU8(0x101000), 0);
    equal(mem.readU8(0x102fff), 0);
  });
});

Deno.test("elf: a high virtual entry is translated through its segment", () => {
  const image = buildElf({
    entry: 0xffff_ffff_8100_0040n,
    segments: [{
      paddr: 0x100_0000,
      vaddr: 0xffff_ffff_8100_0000n,
      filesz: 0x100,
      memsz: 0x1000,
    }],
  });
  withMemory(32 * MiB, (mem) => {
    equal(loadElf(mem, image).entry, 0x100_0040);
  });
});

Deno.test("elf: finds a Xen PVH entry note after another note (u32, u64)", () => {
  for (const width of [4, 8] as const) {
    const other = new Uint8Array(12 + 4 + 20);
    other.set([4, 0, 0, 0, 20, 0, 0, 0, 3, 0, 0, 0, 0x47, 0x4e, 0x55, 0]);
    const note = new Uint8Array([...other, ...pvhNote(0x1000abc, width)]);
    const image = buildElf({
      entry: 0x100000,
      segments: [
        { paddr: 0x100000, filesz: 0x100, memsz: 0x100 },
        {
          type: 4,
          paddr: 0,
          filesz: note.length,
          memsz: note.length,
          data: note,
          align: 4,
        },
      ],
    });
    withMemory(16 * MiB, (mem) => {
      equal(loadElf(mem, image).pvhEntry, 0x1000abc);
    });
  }
});

Deno.test("elf: rejects a truncated file", () => {
  rejects(validElf().subarray(0, 40), /truncated \(ELF header/);
  rejects(
    validElf().subarray(0, 64 + 56 + 10),
    /truncated \(program header 1 outside the file\)/,
  );
  rejects(validElf().subarray(0, 0x200), /truncated \(segment 0 data/);
});

Deno.test("elf: rejects wrong magic, class, byte order, machine, type", () => {
  const good = validElf();
  const badMagic = good.slice();
  badMagic[1] = 0x46;
  rejects(badMagic, /not an ELF file/);
  const elf32 = good.slice();
  elf32[4] = 1;
  rejects(elf32, /not a 64-bit ELF \(EI_CLASS 1\)/);
  const bigEndian = good.slice();
  bigEndian[5] = 2;
  rejects(bigEndian, /not a little-endian ELF/);
  rejects(poke16(good, 18, 3), /not an x86_64 ELF \(e_machine 3\)/);
  rejects(poke16(good, 16, 3), /not an executable ELF \(e_type 3/);
  rejects(poke16(good, 54, 32), /program header size 32/);
  rejects(poke16(good, 56, 0), /number of program headers \(0/);
  rejects(poke16(good, 56, 5000), /number of program headers \(5000/);
});

Deno.test("elf: rejects a program header table outside the file", () => {
  const image = validElf();
  new DataView(image.buffer).setBigUint64(32, 0xffff_ffff_0000n, true);
  rejects(image, /truncated \(program header 0 outside the file\)/);
});

Deno.test("elf: rejects segments outside RAM or in low memory", () => {
  rejects(
    buildElf({
      entry: 0x1000000,
      segments: [{ paddr: 0x1000000, filesz: 0x10, memsz: 0x2000000 }],
    }),
    /segment 0 at 0x1000000\+0x2000000 does not fit in 16 MiB of guest RAM/,
  );
  rejects(
    buildElf({
      entry: 0x100000,
      segments: [
        { paddr: 0x100000, filesz: 0x10, memsz: 0x10 },
        { paddr: 0xffff_f000, filesz: 0x10, memsz: 0x2000 },
      ],
    }),
    /segment 1 at 0xfffff000\+0x2000 does not fit/,
  );
  rejects(
    buildElf({
      entry: 0x7000,
      segments: [{ paddr: 0x7000, filesz: 0x10, memsz: 0x10 }],
    }),
    /segment 0 at 0x7000 is below 0x100000/,
  );
});

Deno.test("elf: rejects overlapping segments and p_filesz > p_memsz", () => {
  rejects(
    buildElf({
      entry: 0x100000,
      segments: [
        { paddr: 0x100000, filesz: 0x10, memsz: 0x2000 },
        { paddr: 0x101000, filesz: 0x10, memsz: 0x10 },
      ],
    }),
    /segments 0 and 1 overlap/,
  );
  rejects(
    buildElf({
      entry: 0x100000,
      segments: [{ paddr: 0x100000, filesz: 0x200, memsz: 0x100 }],
    }),
    /segment 0 has p_filesz 0x200 larger than p_memsz 0x100/,
  );
});

Deno.test("elf: rejects an entry point outside every segment, and no PT_LOAD", () => {
  rejects(
    buildElf({
      entry: 0x300000,
      segments: [{ paddr: 0x100000, filesz: 0x10, memsz: 0x10 }],
    }),
    /entry point 0x300000 is not inside any loadable segment/,
  );
  rejects(
    buildElf({
      entry: 0xffff_ffff_8100_0000n,
      segments: [{ paddr: 0x100000, filesz: 0x10, memsz: 0x10 }],
    }),
    /entry point 0xffffffff81000000 is not inside/,
  );
  rejects(
    buildElf({
      entry: 0,
      segments: [{ type: 4, paddr: 0, filesz: 0, memsz: 0 }],
    }),
    /no loadable segments/,
  );
});

Deno.test("elf: a rejected image writes nothing", () => {
  withMemory(16 * MiB, (mem) => {
    const image = buildElf({
      entry: 0x100000,
      segments: [
        { paddr: 0x100000, filesz: 0x100, memsz: 0x100 },
        { paddr: 0x2000000, filesz: 0x10, memsz: 0x10 },
      ],
    });
    throws(() => loadElf(mem, image), BootError);
    equal(mem.readU8(0x100000), 0);
  });
});
