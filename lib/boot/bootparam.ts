/*L:190 The zero page is Linux's "struct boot_params": one 4 KiB page of
 * fields that a boot loader fills in and the kernel reads on entry, with the
 * kernel's own "setup header" embedded at offset 0x1f1. The same header sits
 * at the same offset inside a bzImage file, which is how a loader learns what
 * the kernel wants before it loads a byte of it.
 *
 * We describe the layout exactly once, as data: a table from the C member
 * path (as you would write it in offsetof(struct boot_params, ...)) to its
 * offset and size. Everything else reads and writes through that table, so a
 * wrong offset is wrong in one place and a test can hold the whole table up
 * against the C headers. The offsets come from Linux's boot protocol
 * (Documentation/x86/boot.rst) and asm/bootparam.h. :*/

/** Layout of struct boot_params: total size and every field we use, keyed by C member path. */
export const BOOT_PARAMS = {
  size: 4096,
  fields: {
    "acpi_rsdp_addr": { offset: 0x070, size: 8 },
    "ext_ramdisk_image": { offset: 0x0c0, size: 4 },
    "ext_ramdisk_size": { offset: 0x0c4, size: 4 },
    "ext_cmd_line_ptr": { offset: 0x0c8, size: 4 },
    "e820_entries": { offset: 0x1e8, size: 1 },
    "sentinel": { offset: 0x1ef, size: 1 },
    "hdr": { offset: 0x1f1, size: 0x7b },
    "hdr.setup_sects": { offset: 0x1f1, size: 1 },
    "hdr.root_flags": { offset: 0x1f2, size: 2 },
    "hdr.syssize": { offset: 0x1f4, size: 4 },
    "hdr.ram_size": { offset: 0x1f8, size: 2 },
    "hdr.vid_mode": { offset: 0x1fa, size: 2 },
    "hdr.root_dev": { offset: 0x1fc, size: 2 },
    "hdr.boot_flag": { offset: 0x1fe, size: 2 },
    "hdr.jump": { offset: 0x200, size: 2 },
    "hdr.header": { offset: 0x202, size: 4 },
    "hdr.version": { offset: 0x206, size: 2 },
    "hdr.realmode_swtch": { offset: 0x208, size: 4 },
    "hdr.start_sys_seg": { offset: 0x20c, size: 2 },
    "hdr.kernel_version": { offset: 0x20e, size: 2 },
    "hdr.type_of_loader": { offset: 0x210, size: 1 },
    "hdr.loadflags": { offset: 0x211, size: 1 },
    "hdr.setup_move_size": { offset: 0x212, size: 2 },
    "hdr.code32_start": { offset: 0x214, size: 4 },
    "hdr.ramdisk_image": { offset: 0x218, size: 4 },
    "hdr.ramdisk_size": { offset: 0x21c, size: 4 },
    "hdr.bootsect_kludge": { offset: 0x220, size: 4 },
    "hdr.heap_end_ptr": { offset: 0x224, size: 2 },
    "hdr.ext_loader_ver": { offset: 0x226, size: 1 },
    "hdr.ext_loader_type": { offset: 0x227, size: 1 },
    "hdr.cmd_line_ptr": { offset: 0x228, size: 4 },
    "hdr.initrd_addr_max": { offset: 0x22c, size: 4 },
    "hdr.kernel_alignment": { offset: 0x230, size: 4 },
    "hdr.relocatable_kernel": { offset: 0x234, size: 1 },
    "hdr.min_alignment": { offset: 0x235, size: 1 },
    "hdr.xloadflags": { offset: 0x236, size: 2 },
    "hdr.cmdline_size": { offset: 0x238, size: 4 },
    "hdr.hardware_subarch": { offset: 0x23c, size: 4 },
    "hdr.hardware_subarch_data": { offset: 0x240, size: 8 },
    "hdr.payload_offset": { offset: 0x248, size: 4 },
    "hdr.payload_length": { offset: 0x24c, size: 4 },
    "hdr.setup_data": { offset: 0x250, size: 8 },
    "hdr.pref_address": { offset: 0x258, size: 8 },
    "hdr.init_size": { offset: 0x260, size: 4 },
    "hdr.handover_offset": { offset: 0x264, size: 4 },
    "hdr.kernel_info_offset": { offset: 0x268, size: 4 },
    "e820_table": { offset: 0x2d0, size: 128 * 20 },
  },
} as const satisfies {
  size: number;
  fields: Record<string, { offset: number; size: number }>;
};

/** The type of the {@link BOOT_PARAMS} field table. */
export type BootParamsFields = typeof BOOT_PARAMS.fields;

/** Any field of {@link BOOT_PARAMS}, by C member path. */
export type BootParamsField = keyof BootParamsFields;

/** The fields that hold a single little-endian integer (1, 2, 4 or 8 bytes). */
export type ScalarField = {
  [K in BootParamsField]: BootParamsFields[K]["size"] extends 1 | 2 | 4 | 8 ? K
    : never;
}[BootParamsField];

/** The JavaScript type of a scalar field: bigint for u64, number otherwise. */
export type FieldValue<K extends ScalarField> = BootParamsFields[K]["size"] extends 8 ? bigint
  : number;

/** Where the setup header starts, in both the zero page and a bzImage file. */
export const SETUP_HEADER_OFFSET: number = BOOT_PARAMS.fields.hdr.offset;
/** The setup header may extend at most this far (the next field's offset). */
export const SETUP_HEADER_LIMIT = 0x290;
/** Bytes in one e820 entry: u64 addr, u64 size, u32 type. */
export const E820_ENTRY_SIZE = 20;
/** How many e820 entries fit in the zero page. */
export const E820_MAX_ENTRIES = 128;

/** "HdrS", read as a little-endian u32: the setup header signature. */
export const HDRS_MAGIC = 0x5372_6448;
/** The boot sector signature at hdr.boot_flag. */
export const BOOT_FLAG_MAGIC = 0xaa55;
/** loadflags: protected-mode code is loaded at 1 MiB or above. */
export const LOADED_HIGH = 1 << 0;
/** loadflags: heap_end_ptr is valid. */
export const CAN_USE_HEAP = 1 << 7;
/** xloadflags: the kernel has the 64-bit entry point at load address + 0x200. */
export const XLF_KERNEL_64 = 1 << 0;
/** xloadflags: kernel, zero page, command line and initrd may live above 4 GiB. */
export const XLF_CAN_BE_LOADED_ABOVE_4G = 1 << 1;
/** type_of_loader value for a boot loader with no assigned id. */
export const LOADER_TYPE_UNDEFINED = 0xff;

function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function placeOf(bytes: Uint8Array, name: BootParamsField) {
  const field = BOOT_PARAMS.fields[name];
  if (field.offset + field.size > bytes.length) {
    throw new RangeError(
      `boot_params field ${name} at 0x${field.offset.toString(16)} is past the end of a ${bytes.length}-byte buffer`,
    );
  }
  return field;
}

/**
 * Reads a scalar field from a zero page, or from a bzImage's first sectors.
 * @param bytes the buffer, whose byte 0 is the start of struct boot_params
 * @param name the C member path, e.g. "hdr.version"
 * @returns the little-endian value (bigint for 8-byte fields)
 */
export function getField<K extends ScalarField>(
  bytes: Uint8Array,
  name: K,
): FieldValue<K> {
  const { offset, size } = placeOf(bytes, name);
  const view = viewOf(bytes);
  switch (size) {
    case 1:
      return view.getUint8(offset) as FieldValue<K>;
    case 2:
      return view.getUint16(offset, true) as FieldValue<K>;
    case 4:
      return view.getUint32(offset, true) as FieldValue<K>;
    default:
      return view.getBigUint64(offset, true) as FieldValue<K>;
  }
}

/**
 * Writes a scalar field, little-endian.
 * @param bytes the buffer, whose byte 0 is the start of struct boot_params
 * @param name the C member path, e.g. "hdr.cmd_line_ptr"
 * @param value the value (bigint for 8-byte fields); truncated to the field's width
 */
export function setField<K extends ScalarField>(
  bytes: Uint8Array,
  name: K,
  value: FieldValue<K>,
): void {
  const { offset, size } = placeOf(bytes, name);
  const view = viewOf(bytes);
  switch (size) {
    case 1:
      view.setUint8(offset, Number(value));
      break;
    case 2:
      view.setUint16(offset, Number(value), true);
      break;
    case 4:
      view.setUint32(offset, Number(value) >>> 0, true);
      break;
    default:
      view.setBigUint64(offset, BigInt(value), true);
  }
}

/** A zero-copy view of any field's bytes (e.g. "hdr" or "e820_table"). */
export function fieldBytes(
  bytes: Uint8Array,
  name: BootParamsField,
): Uint8Array {
  const { offset, size } = placeOf(bytes, name);
  return bytes.subarray(offset, offset + size);
}
