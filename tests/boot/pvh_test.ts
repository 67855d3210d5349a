/*T:746 The PVH start info as a kernel reads it. The writer puts it into
 * real guest memory (GuestMemory, no KVM), and the test reads it back at
 * offsets spelled here by hand from Xen's start_info.h, not from the
 * tables in lib/boot/pvh.ts, so one wrong offset cannot agree with itself:
 * every field of hvm_start_info, the module that is the initrd, the command
 * line it points at, and a memory map equal to the e820 map. Inputs a kernel
 * could not use are refused with one line, before anything is written. :*/

import { deepEqual, equal, ok } from "node:assert/strict";
import {
  HVM_MEMMAP_TABLE_ENTRY,
  HVM_MODLIST_ENTRY,
  HVM_START_INFO,
  PVH_LAYOUTS,
  PVH_MEMMAP_MAX_ENTRIES,
  type PvhBootData,
  writePvhStartInfo,
} from "../../lib/boot/pvh.ts";
import { type E820Entry, e820ForMemory } from "../../lib/boot/e820.ts";
import {
  CMDLINE_ADDR,
  GDT_ADDR,
  IDT_ADDR,
  PVH_AREA_END,
  PVH_MEMMAP_ADDR,
  PVH_MODLIST_ADDR,
  PVH_START_INFO_ADDR,
  ZERO_PAGE_ADDR,
} from "../../lib/boot/layout.ts";
import { BOOT_GDT } from "../../lib/boot/gdt.ts";
import type { GuestMemory } from "../../lib/memory.ts";
import { expectBootError, MiB, withMemory } from "./images.ts";

function readCString(mem: GuestMemory, addr: number): string {
  let end = addr;
  while (mem.readU8(end) !== 0) end++;
  return new TextDecoder().decode(mem.slice(addr, end - addr));
}

function data(mem: GuestMemory, extra: Partial<PvhBootData> = {}): PvhBootData {
  return {
    cmdline: "console=ttyS0 pvh.test=1",
    cmdlineSize: 2047,
    initrd: { addr: 0x300_0000, size: 12345 },
    e820: e820ForMemory(mem),
    rsdp: 0xe0000,
    ...extra,
  };
}

Deno.test("pvh: every hvm_start_info field, the module and the command line", () => {
  withMemory(64 * MiB, (mem) => {
    const d = data(mem);
    equal(writePvhStartInfo(mem, d), PVH_START_INFO_ADDR);
    const at = PVH_START_INFO_ADDR;
    equal(mem.readU32(at + 0), 0x336ec578, "magic");
    equal(mem.readU32(at + 4), 1, "version");
    equal(mem.readU32(at + 8), 0, "flags");
    equal(mem.readU32(at + 12), 1, "nr_modules");
    equal(mem.readU64(at + 16), BigInt(PVH_MODLIST_ADDR), "modlist_paddr");
    equal(mem.readU64(at + 24), BigInt(CMDLINE_ADDR), "cmdline_paddr");
    equal(mem.readU64(at + 32), 0xe0000n, "rsdp_paddr");
    equal(mem.readU64(at + 40), BigInt(PVH_MEMMAP_ADDR), "memmap_paddr");
    equal(mem.readU32(at + 48), d.e820.length, "memmap_entries");
    equal(mem.readU32(at + 52), 0, "reserved");
    equal(readCString(mem, Number(mem.readU64(at + 24))), "console=ttyS0 pvh.test=1");
    const mod = Number(mem.readU64(at + 16));
    equal(mem.readU64(mod + 0), 0x300_0000n, "module 0 paddr = the initrd");
    equal(mem.readU64(mod + 8), 12345n, "module 0 size");
    equal(mem.readU64(mod + 16), 0n, "module 0 has no command line");
    equal(mem.readU64(mod + 24), 0n, "module 0 reserved");
  });
});

Deno.test("pvh: the memory map is the e820 map, entry for entry", () => {
  for (const size of [2 * MiB + 4096, 64 * MiB, 4096 * MiB]) {
    withMemory(size, (mem) => {
      const d = data(mem, { initrd: undefined });
      writePvhStartInfo(mem, d);
      const map = Number(mem.readU64(PVH_START_INFO_ADDR + 40));
      const n = mem.readU32(PVH_START_INFO_ADDR + 48);
      const seen: E820Entry[] = [];
      for (let i = 0; i < n; i++) {
        const e = map + i * 24;
        seen.push({ addr: Number(mem.readU64(e)), size: Number(mem.readU64(e + 8)), type: mem.readU32(e + 16) });
        equal(mem.readU32(e + 20), 0, `entry ${i} reserved`);
      }
      deepEqual(seen, [...d.e820], `${size} bytes of RAM`);
      ok(n >= 3);
    });
  }
});

Deno.test("pvh: no initrd means no modules; no ACPI means rsdp_paddr 0", () => {
  withMemory(64 * MiB, (mem) => {
    mem.fill(PVH_MODLIST_ADDR, 32, 0xaa);
    writePvhStartInfo(mem, data(mem, { initrd: undefined, rsdp: undefined }));
    equal(mem.readU32(PVH_START_INFO_ADDR + 12), 0, "nr_modules");
    equal(mem.readU64(PVH_START_INFO_ADDR + 16), 0n, "modlist_paddr");
    equal(mem.readU64(PVH_START_INFO_ADDR + 32), 0n, "rsdp_paddr");
  });
});

Deno.test("pvh: inputs a kernel cannot use are refused, and nothing is written", () => {
  withMemory(64 * MiB, (mem) => {
    const e820 = e820ForMemory(mem);
    const ram = e820.find((e) => e.type === 1)!;
    const cases: [Partial<PvhBootData>, RegExp][] = [
      [{ e820: [] }, /memory map is empty/],
      [
        { e820: Array.from({ length: PVH_MEMMAP_MAX_ENTRIES + 1 }, () => ram) },
        /129 memory map entries, more than the 128/,
      ],
      [{ e820: [{ ...ram, type: 9 }] }, /memory map entry 0 .*type 9.* invalid/],
      [{ e820: [{ ...ram, size: 0 }] }, /memory map entry 0 .* invalid/],
      [{ e820: [{ ...ram, addr: -4096 }] }, /memory map entry 0 .* invalid/],
      [{ initrd: { addr: 0xffff_f000, size: 0x2000 } }, /initrd at 0xfffff000\+0x2000 must lie below 4 GiB/],
      [{ initrd: { addr: 60 * MiB, size: 8 * MiB } }, /initrd at 0x3c00000\+0x800000 is outside RAM/],
      [{ rsdp: 0x1_0000_0000 }, /ACPI RSDP .* below 4 GiB/],
      [{ rsdp: 100 * MiB }, /ACPI RSDP at 0x6400000 is outside RAM/],
      [{ cmdline: "x".repeat(2048) }, /command line is 2048 bytes; the kernel accepts at most 2047/],
      [{ cmdline: "a\0b" }, /NUL/],
    ];
    for (const [bad, pattern] of cases) {
      const message = expectBootError(() => writePvhStartInfo(mem, data(mem, bad)), pattern);
      ok(!message.includes("\n"), message);
      equal(mem.readU32(PVH_START_INFO_ADDR), 0, `nothing written for ${pattern}`);
      equal(mem.readU8(CMDLINE_ADDR), 0, `no command line written for ${pattern}`);
    }
  });
});

Deno.test("pvh: the start info, module list and a full memory map fit between the IDT and the zero page", () => {
  const regions: [string, number, number][] = [
    ["GDT", GDT_ADDR, BOOT_GDT.length * 8],
    ["IDT", IDT_ADDR, 1],
    ["start info", PVH_START_INFO_ADDR, HVM_START_INFO.size],
    ["module list", PVH_MODLIST_ADDR, HVM_MODLIST_ENTRY.size],
    ["memory map", PVH_MEMMAP_ADDR, PVH_MEMMAP_MAX_ENTRIES * HVM_MEMMAP_TABLE_ENTRY.size],
    ["zero page", ZERO_PAGE_ADDR, 4096],
  ];
  for (let i = 1; i < regions.length; i++) {
    const [prev, at, size] = regions[i - 1]!;
    const [next, nextAt] = regions[i]!;
    ok(at + size <= nextAt, `${prev} ends at 0x${(at + size).toString(16)}, after ${next} starts`);
  }
  ok(PVH_MEMMAP_ADDR + PVH_MEMMAP_MAX_ENTRIES * HVM_MEMMAP_TABLE_ENTRY.size <= PVH_AREA_END);
  equal(PVH_AREA_END, ZERO_PAGE_ADDR);
  for (const [what, at] of regions.slice(2, 5)) equal(at % 8, 0, `${what} is 8-byte aligned`);
});

Deno.test("pvh: each layout's members are in bounds, in order and cover the struct", () => {
  for (const layout of PVH_LAYOUTS) {
    let end = 0;
    for (const [name, f] of Object.entries(layout.fields)) {
      equal(f.offset, end, `${layout.c}.${name} follows the member before it`);
      end = f.offset + f.size;
    }
    equal(end, layout.size, `${layout.c}: members fill sizeof`);
  }
});
