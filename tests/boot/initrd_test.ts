import { deepEqual, equal, ok } from "node:assert/strict";
import { loadInitrd, placeInitrd } from "../../lib/boot/initrd.ts";
import { expectBootError, MiB, withMemory } from "./images.ts";

const bytes = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 13 + 5) & 0xff);

Deno.test("initrd: placed page-aligned at the top of RAM", () => {
  withMemory(64 * MiB, (mem) => {
    const data = bytes(12345);
    const at = placeInitrd(mem, data, { kernelEnd: 0x1800000, addrMax: 0x7fffffff });
    equal(at.size, 12345);
    equal(at.addr % 4096, 0);
    equal(at.addr, Math.floor((64 * MiB - 12345) / 4096) * 4096);
    ok(at.addr + at.size <= 64 * MiB);
    deepEqual(mem.slice(at.addr, at.size), data);
  });
});

Deno.test("initrd: respects initrd_addr_max (inclusive)", () => {
  withMemory(64 * MiB, (mem) => {
    const at = placeInitrd(mem, bytes(0x2000), { kernelEnd: 0x100000, addrMax: 0x1ffffff });
    equal(at.addr, 0x2000000 - 0x2000);
  });
});

Deno.test("initrd: stays below the device hole in a big guest", () => {
  withMemory(4 * 1024 * MiB, (mem) => {
    const at = placeInitrd(mem, bytes(4096), { kernelEnd: 0x100000, addrMax: 0xffffffff });
    equal(at.addr, 0xc0000000 - 4096);
  });
});

Deno.test("initrd: too big to fit above the kernel fails clearly", () => {
  withMemory(16 * MiB, (mem) => {
    expectBootError(
      () => placeInitrd(mem, bytes(12 * MiB), { kernelEnd: 0x800000, addrMax: 0x7fffffff }, "foo.cpio"),
      /^initrd foo\.cpio \(12 MiB\) does not fit below 0x7fffffff and above the kernel \(0x800000\) in 16 MiB of RAM$/,
    );
    expectBootError(
      () => placeInitrd(mem, new Uint8Array(), { kernelEnd: 0, addrMax: 0x7fffffff }, "e"),
      /initrd e: file is empty/,
    );
  });
});

Deno.test("initrd: loads from a file, or names it when it cannot", () => {
  const dir = Deno.makeTempDirSync();
  try {
    Deno.writeFileSync(`${dir}/initrd.img`, bytes(5000));
    withMemory(16 * MiB, (mem) => {
      const at = loadInitrd(mem, `${dir}/initrd.img`, { kernelEnd: 0x200000, addrMax: 0x7fffffff });
      equal(at.size, 5000);
      equal(mem.readU8(at.addr + 4999), bytes(5000)[4999]);
      expectBootError(
        () => loadInitrd(mem, `${dir}/nope`, { kernelEnd: 0, addrMax: 0x7fffffff }),
        /^initrd .*\/nope: no such file$/,
      );
    });
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
