import { deepEqual, equal, ok } from "node:assert/strict";
import { loadBzImage } from "../../lib/boot/bzimage.ts";
import { buildBzImage, BZ_HEADER_END, type BzSpec, expectBootError, MiB, patternByte, withMemory } from "./images.ts";

function rejects(spec: BzSpec | Uint8Array, pattern: RegExp, size = 64 * MiB) {
  const image = spec instanceof Uint8Array ? spec : buildBzImage(spec);
  withMemory(size, (mem) => {
    const message = expectBootError(() => loadBzImage(mem, image, "bzImage"), pattern);
    ok(message.startsWith("bzImage: "), "message names the file");
  });
}

Deno.test("bzimage: loads the protected-mode part at aligned pref_address", () => {
  withMemory(64 * MiB, (mem) => {
    const image = buildBzImage({ setupSects: 3, prefAddress: 0x1100000n });
    const bz = loadBzImage(mem, image);
    equal(bz.loadAddr, 0x1200000);
    equal(bz.entry, 0x1200200);
    equal(bz.kernelEnd, 0x1200000 + 0x800000);
    equal(bz.initrdAddrMax, 0x7fffffff);
    equal(bz.cmdlineSize, 2047);
    equal(bz.header.setupSects, 3);
    equal(bz.header.version, 0x20f);
    equal(bz.header.initSize, 0x800000);
    equal(bz.header.relocatable, true);
    const pm = 4 * 512;
    for (const k of [0, 1, 4095, 8191]) {
      equal(mem.readU8(0x1200000 + k), image[pm + k]);
      equal(mem.readU8(0x1200000 + k), patternByte(9, k));
    }
    equal(mem.readU8(0x1200000 + 8192), 0);
  });
});

Deno.test("bzimage: hands back the kernel's own setup header, code32_start set", () => {
  withMemory(64 * MiB, (mem) => {
    const image = buildBzImage();
    const bz = loadBzImage(mem, image);
    equal(bz.setupHeaderBytes.length, BZ_HEADER_END - 0x1f1);
    const expected = image.slice(0x1f1, BZ_HEADER_END);
    new DataView(expected.buffer).setUint32(0x214 - 0x1f1, bz.loadAddr, true);
    deepEqual(bz.setupHeaderBytes, expected);
  });
});

Deno.test("bzimage: setup_sects 0 means 4", () => {
  withMemory(64 * MiB, (mem) => {
    const image = buildBzImage({ setupSects: 0 });
    const bz = loadBzImage(mem, image);
    equal(bz.header.setupSects, 4);
    equal(mem.readU8(bz.loadAddr + 5), image[5 * 512 + 5]);
  });
});

Deno.test("bzimage: a fixed kernel loads at 1 MiB and reserves room at pref_address", () => {
  withMemory(64 * MiB, (mem) => {
    const bz = loadBzImage(mem, buildBzImage({ relocatable: 0 }));
    equal(bz.loadAddr, 0x100000);
    equal(bz.entry, 0x100200);
    equal(bz.kernelEnd, 0x1000000 + 0x800000);
  });
});

Deno.test("bzimage: rejects images that are not bzImages", () => {
  const wrongMagic = buildBzImage();
  wrongMagic[0x203] = 0x21;
  rejects(wrongMagic, /not a bzImage \(no "HdrS" signature at 0x202\)/);
  rejects(new Uint8Array(100), /not a bzImage/);
  const noFlag = buildBzImage();
  noFlag[0x1fe] = 0;
  rejects(noFlag, /bad boot_flag 0xaa00/);
  rejects({ loadflags: 0 }, /zImage/);
});

Deno.test("bzimage: rejects old protocols and kernels without a 64-bit entry", () => {
  rejects({ version: 0x20a }, /boot protocol 2\.10 is too old \(need 2\.12\+/);
  rejects({ xloadflags: 0x2 }, /no 64-bit entry point \(XLF_KERNEL_64 clear/);
});

Deno.test("bzimage: rejects truncated files", () => {
  const image = buildBzImage();
  rejects(image.subarray(0, 0x240), /truncated \(setup header needs 0x268 bytes/);
  rejects(image.subarray(0, 1024), /truncated \(protected-mode code at 0x400/);
  rejects(image.subarray(0, 1024 + 4000), /truncated \(protected-mode code is 4000 bytes, syssize says 8192\)/);
});

Deno.test("bzimage: rejects kernels that do not fit in RAM", () => {
  rejects(
    { initSize: 0x4000000 },
    /kernel needs 0x1000000\+0x4000000 \(init_size 64 MiB\), which does not fit in 64 MiB of guest RAM/,
  );
  rejects({ prefAddress: 0x8000000n }, /kernel at 0x8000000\+0x2000 does not fit in 64 MiB/);
  rejects({}, /does not fit in 16 MiB/, 16 * MiB);
});

Deno.test("bzimage: rejects nonsense placement fields", () => {
  rejects({ kernelAlignment: 0x3000 }, /kernel_alignment 0x3000 is not a power of two/);
  rejects({ kernelAlignment: 0 }, /kernel_alignment 0x0/);
  rejects({ prefAddress: 1n << 60n }, /absurd pref_address/);
  rejects({ relocatable: 0, prefAddress: 0x1000n }, /below 0x100000/);
  const badEnd = buildBzImage();
  badEnd[0x201] = 0xff;
  rejects(badEnd, /setup header end 0x301 is outside 0x268\.\.0x290/);
});
