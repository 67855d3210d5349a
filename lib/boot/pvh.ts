/*L:192 The PVH start info. A kernel entered through its PVH note (L:134,
 * L:205) gets no zero page: it gets one pointer, in ebx, to a struct
 * hvm_start_info, the boot block Xen defined for its HVM guests and that
 * QEMU and Firecracker reuse without Xen. It is small: a magic number and a
 * version, then physical addresses and counts for the command line, a list
 * of modules (Linux takes the first as its initrd), the ACPI RSDP, and, since
 * version 1, a memory map whose entries are e820 entries widened to 24 bytes.
 * The kernel builds its own zero page from it.
 *
 * The three structs are declared here once, as data, exactly as the zero
 * page is (L:190) and KVM's structs are (K:110): C name, size, and every
 * member's offset and width, which tests/boot/pvh_layout_test.ts holds
 * against Xen's public header start_info.h (the copy Linux carries, in
 * include/xen/interface/hvm/) with gcc. :*/

import { type Field, type Layout, setField } from "../kvm/structs.ts";
import type { GuestMemory } from "../memory.ts";
import type { E820Entry } from "./e820.ts";
import type { InitrdPlacement } from "./initrd.ts";
import { writeCmdline } from "./cmdline.ts";
import { BootError, hex, span } from "./errors.ts";
import { PVH_AREA_END, PVH_MEMMAP_ADDR, PVH_MODLIST_ADDR, PVH_START_INFO_ADDR } from "./layout.ts";

function f(offset: number, size: number): Field {
  return { offset, size };
}

/** struct hvm_start_info, version 1. */
export const HVM_START_INFO = {
  c: "struct hvm_start_info",
  size: 56,
  fields: {
    magic: f(0, 4),
    version: f(4, 4),
    flags: f(8, 4),
    nr_modules: f(12, 4),
    modlist_paddr: f(16, 8),
    cmdline_paddr: f(24, 8),
    rsdp_paddr: f(32, 8),
    memmap_paddr: f(40, 8),
    memmap_entries: f(48, 4),
    reserved: f(52, 4),
  },
} as const satisfies Layout;

/** struct hvm_modlist_entry: one module (for Linux, the first is the initrd). */
export const HVM_MODLIST_ENTRY = {
  c: "struct hvm_modlist_entry",
  size: 32,
  fields: { paddr: f(0, 8), size: f(8, 8), cmdline_paddr: f(16, 8), reserved: f(24, 8) },
} as const satisfies Layout;

/** struct hvm_memmap_table_entry: one memory map entry (an e820 entry, padded). */
export const HVM_MEMMAP_TABLE_ENTRY = {
  c: "struct hvm_memmap_table_entry",
  size: 24,
  fields: { addr: f(0, 8), size: f(8, 8), type: f(16, 4), reserved: f(20, 4) },
} as const satisfies Layout;

/** Every PVH layout, for the layout test. */
export const PVH_LAYOUTS: readonly Layout[] = [HVM_START_INFO, HVM_MODLIST_ENTRY, HVM_MEMMAP_TABLE_ENTRY];

/** hvm_start_info.magic: "xEn3" with the 0x80 bit of the "E" set (XEN_HVM_START_MAGIC_VALUE). */
export const HVM_START_MAGIC = 0x336e_c578;
/** The version we write: 1, the first with the memory map. */
export const HVM_START_INFO_VERSION = 1;
/** The memory map types (XEN_HVM_MEMMAP_TYPE_*): the same numbers as e820's. */
export const XEN_HVM_MEMMAP_TYPE = { RAM: 1, RESERVED: 2, ACPI: 3, NVS: 4, UNUSABLE: 5, DISABLED: 6, PMEM: 7 } as const;

/*L:193 Where each piece goes, and what we refuse. The start info, the one
 * module entry and the memory map share the page below the zero page
 * (lib/boot/layout.ts); the command line is the one the zero page points at.
 * Linux 6.1 copies the memory map into its zero page's 128-entry e820 table
 * without checking the count, so we never hand it more than 128 entries,
 * which also keeps the map inside its page. And Linux reads the module's
 * address and size, the command line's and the RSDP's into 32-bit fields of
 * that zero page, so everything we point at must lie below 4 GiB: a number
 * the kernel would silently truncate is refused here, before the guest is
 * written, with the reason. :*/

/** The most memory map entries we write (Linux copies them into a 128-entry table). */
export const PVH_MEMMAP_MAX_ENTRIES = 128;

const FOUR_GIB = 0x1_0000_0000;

/** What goes into the start info. */
export interface PvhBootData {
  /** The kernel command line (written at CMDLINE_ADDR, as for the zero page). */
  readonly cmdline: string;
  /** The kernel's command line limit in bytes, without the NUL. */
  readonly cmdlineSize: number;
  /** The initrd, already in guest RAM: module 0. */
  readonly initrd: InitrdPlacement | undefined;
  /** The memory map, as for the zero page's e820 table. */
  readonly e820: readonly E820Entry[];
  /** The ACPI RSDP's address, or undefined for a machine without ACPI tables. */
  readonly rsdp: number | undefined;
}

type Struct = { readonly size: number; readonly fields: Readonly<Record<string, Field>> };

/** Encodes one struct from `values`, keyed by member; members not named stay zero. */
function encode<L extends Struct>(layout: L, values: Partial<Record<keyof L["fields"], number>>): Uint8Array {
  const bytes = new Uint8Array(layout.size);
  const view = new DataView(bytes.buffer);
  for (const [name, value] of Object.entries(values) as [string, number][]) {
    setField(view, 0, layout.fields[name]!, value);
  }
  return bytes;
}

function below4G(what: string, addr: number, size: number): void {
  if (!Number.isSafeInteger(addr) || !Number.isSafeInteger(size) || addr < 0 || size < 0 || addr + size > FOUR_GIB) {
    throw new BootError(`PVH start info: ${what} at ${span(addr, size)} must lie below 4 GiB (Linux reads 32 bits)`);
  }
}

function checkMemmap(e820: readonly E820Entry[]): void {
  if (e820.length === 0) throw new BootError(`PVH start info: the memory map is empty`);
  if (e820.length > PVH_MEMMAP_MAX_ENTRIES) {
    throw new BootError(
      `PVH start info: ${e820.length} memory map entries, more than the ${PVH_MEMMAP_MAX_ENTRIES} a kernel takes`,
    );
  }
  for (const [i, e] of e820.entries()) {
    const ok = Number.isSafeInteger(e.addr) && Number.isSafeInteger(e.size) && e.addr >= 0 && e.size > 0 &&
      Number.isInteger(e.type) && e.type >= XEN_HVM_MEMMAP_TYPE.RAM && e.type <= XEN_HVM_MEMMAP_TYPE.PMEM;
    if (!ok) {
      throw new BootError(
        `PVH start info: memory map entry ${i} (${hex(e.addr)}+${e.size}, type ${e.type}) is invalid`,
      );
    }
  }
}

/**
 * Writes the command line, the memory map, the module list (the initrd as module 0) and the
 * hvm_start_info that points at them into guest RAM, at the fixed PVH addresses of lib/boot/layout.ts.
 * Everything is checked before the first byte is written.
 * @param mem guest memory
 * @param data what the kernel is to be told
 * @returns the guest address of the hvm_start_info (for ebx)
 * @throws BootError for a command line, memory map, initrd or RSDP the kernel could not use
 */
export function writePvhStartInfo(mem: GuestMemory, data: PvhBootData): number {
  checkMemmap(data.e820);
  if (data.initrd !== undefined) {
    below4G("the initrd", data.initrd.addr, data.initrd.size);
    if (!mem.contains(data.initrd.addr, data.initrd.size)) {
      throw new BootError(`PVH start info: the initrd at ${span(data.initrd.addr, data.initrd.size)} is outside RAM`);
    }
  }
  if (data.rsdp !== undefined) {
    below4G("the ACPI RSDP", data.rsdp, 1);
    if (!mem.contains(data.rsdp, 1)) {
      throw new BootError(`PVH start info: the ACPI RSDP at ${hex(data.rsdp)} is outside RAM`);
    }
  }
  const mapEnd = PVH_MEMMAP_ADDR + data.e820.length * HVM_MEMMAP_TABLE_ENTRY.size;
  if (mapEnd > PVH_AREA_END) throw new BootError(`PVH start info: the memory map would run past ${hex(PVH_AREA_END)}`);

  const cmdline = writeCmdline(mem, data.cmdline, data.cmdlineSize);
  const map = new Uint8Array(mapEnd - PVH_MEMMAP_ADDR);
  data.e820.forEach((e, i) => {
    map.set(
      encode(HVM_MEMMAP_TABLE_ENTRY, { addr: e.addr, size: e.size, type: e.type }),
      i * HVM_MEMMAP_TABLE_ENTRY.size,
    );
  });
  mem.write(PVH_MEMMAP_ADDR, map, "PVH memory map");
  const modules = data.initrd === undefined ? 0 : 1;
  if (data.initrd !== undefined) {
    mem.write(
      PVH_MODLIST_ADDR,
      encode(HVM_MODLIST_ENTRY, { paddr: data.initrd.addr, size: data.initrd.size }),
      "PVH module list",
    );
  }
  const info = encode(HVM_START_INFO, {
    magic: HVM_START_MAGIC,
    version: HVM_START_INFO_VERSION,
    nr_modules: modules,
    modlist_paddr: modules === 0 ? 0 : PVH_MODLIST_ADDR,
    cmdline_paddr: cmdline.addr,
    rsdp_paddr: data.rsdp ?? 0,
    memmap_paddr: PVH_MEMMAP_ADDR,
    memmap_entries: data.e820.length,
  });
  mem.write(PVH_START_INFO_ADDR, info, "PVH start info");
  return PVH_START_INFO_ADDR;
}
