/*T:120 The loaders against the real thing: the vmlinux and bzImage that
 * scripts/linux.ts builds from Debian's kernel source. No KVM is needed:
 * each image is loaded into a plain GuestMemory and what landed where is
 * compared with what readelf and the raw file say. :*/

import assert from "node:assert/strict";
import { ensureLinux } from "../../scripts/linux.ts";
import { GuestMemory } from "../../lib/memory.ts";
import { loadKernel } from "../../lib/boot/kernel.ts";
import { loadBzImage } from "../../lib/boot/bzimage.ts";
import { XLF_KERNEL_64 } from "../../lib/boot/bootparam.ts";

const MIB = 1024 * 1024;

interface Phdr {
  type: string;
  offset: number;
  vaddr: number;
  paddr: number;
  filesz: number;
  memsz: number;
}

/** PT_LOAD headers and the entry point as readelf reports them. */
async function readelf(path: string): Promise<{ entry: number; loads: Phdr[] }> {
  const out = await new Deno.Command("readelf", { args: ["-lhW", path], stdout: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout);
  const entry = Number(/Entry point address:\s+(0x[0-9a-f]+)/.exec(text)![1]);
  const loads: Phdr[] = [];
  for (const m of text.matchAll(/^\s+LOAD\s+(0x\S+)\s+(0x\S+)\s+(0x\S+)\s+(0x\S+)\s+(0x\S+)/gm)) {
    const [offset, vaddr, paddr, filesz, memsz] = m.slice(1, 6).map((s) => Number(BigInt(s!) & 0x1f_ffff_ffff_ffffn));
    loads.push({ type: "LOAD", offset: offset!, vaddr: vaddr!, paddr: paddr!, filesz: filesz!, memsz: memsz! });
  }
  return { entry, loads };
}

Deno.test({
  name: "loaders: the real vmlinux lands at its physical addresses, entry translated",
  sanitizeResources: false,
  async fn() {
    const linux = await ensureLinux({ log: (s) => console.log(`linux: ${s}`) });
    const file = await Deno.readFile(linux.vmlinux);
    const { entry, loads } = await readelf(linux.vmlinux);
    assert.ok(loads.length > 0, "readelf found PT_LOAD segments");
    const mem = GuestMemory.create(128 * MIB);
    try {
      const k = loadKernel(mem, linux.vmlinux);
      assert.equal(k.kind, "elf");
      const entrySeg = loads.find((p) => entry >= p.vaddr && entry < p.vaddr + p.memsz) ??
        loads.find((p) => entry >= p.paddr && entry < p.paddr + p.memsz)!;
      const expectedEntry = entry >= entrySeg.vaddr && entry < entrySeg.vaddr + entrySeg.memsz
        ? entry - entrySeg.vaddr + entrySeg.paddr
        : entry;
      assert.equal(k.entry, expectedEntry, "64-bit entry at the physical address of startup_64");
      for (const p of loads) {
        const landed = mem.slice(p.paddr, p.filesz);
        assert.deepEqual(landed, file.subarray(p.offset, p.offset + p.filesz), `segment at 0x${p.paddr.toString(16)}`);
        if (p.memsz > p.filesz) {
          assert.ok(mem.slice(p.paddr + p.filesz, p.memsz - p.filesz).every((b) => b === 0), "bss is zeroed");
        }
      }
      assert.equal(k.kernelEnd, Math.max(...loads.map((p) => p.paddr + p.memsz)));
    } finally {
      mem.close();
    }
  },
});

Deno.test({
  name: "loaders: the real bzImage's setup header parses and its payload lands whole",
  sanitizeResources: false,
  async fn() {
    const linux = await ensureLinux();
    const file = await Deno.readFile(linux.bzImage);
    const mem = GuestMemory.create(128 * MIB);
    try {
      const bz = loadBzImage(mem, file, linux.bzImage);
      assert.ok(bz.header.version >= 0x20c, `protocol ${bz.header.version.toString(16)}`);
      assert.ok(bz.header.xloadflags & XLF_KERNEL_64, "XLF_KERNEL_64");
      const setupSects = file[0x1f1] === 0 ? 4 : file[0x1f1]!;
      assert.equal(bz.header.setupSects, setupSects);
      const start = (setupSects + 1) * 512;
      assert.deepEqual(mem.slice(bz.loadAddr, file.length - start), file.subarray(start), "protected-mode code");
      assert.equal(bz.entry, bz.loadAddr + 0x200, "64-bit entry is startup_64 at +0x200");
      assert.deepEqual(bz.setupHeaderBytes.subarray(0, 0x11), file.subarray(0x1f1, 0x202), "header copied as is");
      const runsAt = Math.max(bz.loadAddr, bz.header.prefAddress);
      assert.ok(bz.kernelEnd >= runsAt + bz.header.initSize, "kernelEnd covers init_size from where it runs");
    } finally {
      mem.close();
    }
  },
});

Deno.test({
  name: "loaders: the real images refuse a guest too small to hold them",
  sanitizeResources: false,
  async fn() {
    const linux = await ensureLinux();
    for (const path of [linux.vmlinux, linux.bzImage]) {
      const mem = GuestMemory.create(8 * MIB);
      try {
        assert.throws(() => loadKernel(mem, path), (e: Error) => e.name === "BootError" && /RAM|fit/.test(e.message));
      } finally {
        mem.close();
      }
    }
  },
});
