import { deepEqual, equal } from "node:assert/strict";
import { loadBzImage } from "../../lib/boot/bzimage.ts";
import { buildE820, readE820 } from "../../lib/boot/e820.ts";
import { ZERO_PAGE_ADDR } from "../../lib/boot/layout.ts";
import { buildZeroPage } from "../../lib/boot/zeropage.ts";
import { buildBzImage, BZ_HEADER_END, expectBootError, MiB, withMemory } from "./images.ts";

Deno.test("zeropage: bzImage header copied, loader fields filled in", () => {
  withMemory(64 * MiB, (mem) => {
    const image = buildBzImage();
    const bz = loadBzImage(mem, image);
    mem.fill(ZERO_PAGE_ADDR, 4096, 0xcc);
    const e820 = buildE820(mem.regions);
    const at = buildZeroPage(mem, {
      setupHeader: bz.setupHeaderBytes,
      cmdline: { addr: 0x20000, length: 11 },
      initrd: { addr: 0x3c00000, size: 0x123456 },
      e820,
    });
    equal(at, ZERO_PAGE_ADDR);
    const zp = (off: number) => ZERO_PAGE_ADDR + off;
    equal(mem.readU8(zp(0)), 0, "zeroed first");
    equal(mem.readU8(zp(0x1ef)), 0, "sentinel clear");
    equal(mem.readU8(zp(0x1f1)), 1, "setup_sects copied");
    equal(mem.readU32(zp(0x202)), 0x53726448, "HdrS copied");
    equal(mem.readU16(zp(0x206)), 0x20f, "version copied");
    equal(mem.readU32(zp(0x214)), bz.loadAddr, "code32_start = load address");
    equal(mem.readU32(zp(0x268)), 0x12345, "kernel_info_offset copied");
    equal(mem.readU8(zp(BZ_HEADER_END)), 0, "nothing past the header");
    equal(mem.readU8(zp(0x210)), 0xff, "type_of_loader");
    equal(mem.readU8(zp(0x211)), 0x81, "LOADED_HIGH kept, CAN_USE_HEAP set");
    equal(mem.readU16(zp(0x224)), 0xfe00, "heap_end_ptr");
    equal(mem.readU32(zp(0x228)), 0x20000, "cmd_line_ptr");
    equal(mem.readU32(zp(0xc8)), 0, "ext_cmd_line_ptr");
    equal(mem.readU32(zp(0x218)), 0x3c00000, "ramdisk_image");
    equal(mem.readU32(zp(0x21c)), 0x123456, "ramdisk_size");
    equal(mem.readU32(zp(0xc0)), 0, "ext_ramdisk_image");
    equal(mem.readU32(zp(0xc4)), 0, "ext_ramdisk_size");
    equal(mem.readU8(zp(0x1e8)), e820.length);
    deepEqual(readE820(mem.slice(ZERO_PAGE_ADDR, 4096)), e820);
  });
});

Deno.test("zeropage: ELF kernels get a minimal header of our own", () => {
  withMemory(16 * MiB, (mem) => {
    buildZeroPage(mem, {
      cmdline: { addr: 0x20000, length: 0 },
      e820: buildE820(mem.regions),
    });
    const zp = (off: number) => ZERO_PAGE_ADDR + off;
    equal(mem.readU16(zp(0x1fe)), 0xaa55);
    equal(mem.readU32(zp(0x202)), 0x53726448);
    equal(mem.readU16(zp(0x206)), 0x20f);
    equal(mem.readU32(zp(0x230)), 0x1000000);
    equal(mem.readU8(zp(0x211)), 0x81);
    equal(mem.readU8(zp(0x210)), 0xff);
    equal(mem.readU32(zp(0x218)), 0, "no initrd");
    equal(mem.readU32(zp(0x21c)), 0);
  });
});

Deno.test("zeropage: addresses above 4 GiB spill into the ext_ fields", () => {
  withMemory(4 * 1024 * MiB + 64 * MiB, (mem) => {
    buildZeroPage(mem, {
      cmdline: { addr: 0x1_0000_2000, length: 3 },
      initrd: { addr: 0x1_0010_0000, size: 0x1000 },
      e820: buildE820(mem.regions),
    });
    const zp = (off: number) => ZERO_PAGE_ADDR + off;
    equal(mem.readU32(zp(0x228)), 0x2000);
    equal(mem.readU32(zp(0xc8)), 1);
    equal(mem.readU32(zp(0x218)), 0x100000);
    equal(mem.readU32(zp(0xc0)), 1);
    equal(mem.readU8(zp(0x1e8)), 4);
  });
});

Deno.test("zeropage: refuses pointers outside RAM", () => {
  withMemory(16 * MiB, (mem) => {
    const e820 = buildE820(mem.regions);
    expectBootError(
      () => buildZeroPage(mem, { cmdline: { addr: 0x2000000, length: 1 }, e820 }),
      /command line at 0x2000000\+0x2 is outside guest RAM/,
    );
    expectBootError(
      () =>
        buildZeroPage(mem, {
          cmdline: { addr: 0x20000, length: 1 },
          initrd: { addr: 0xf00000, size: 0x200000 },
          e820,
        }),
      /initrd at 0xf00000\+0x200000 is outside guest RAM/,
    );
  });
});
