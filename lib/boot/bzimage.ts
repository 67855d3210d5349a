/*L:140 A bzImage is not meant to be loaded so much as started: it is a
 * small real-mode setup program followed by a compressed kernel that
 * unpacks itself. Real boot loaders run the setup code in 16-bit mode; we
 * skip it, as the 64-bit boot protocol allows, and jump straight to the
 * 64-bit entry of the protected-mode part. What the setup code would have
 * told us, the setup header at offset 0x1f1 tells us instead: how many
 * setup sectors to skip, where the kernel would like to live, how much room
 * it needs to decompress itself, and the limits for the command line and the
 * initrd.
 *
 * We need boot protocol 2.12 or later, because that is when xloadflags
 * appeared, and its XLF_KERNEL_64 bit is the kernel's promise that the
 * 64-bit entry point exists at load address + 0x200. Older kernels would
 * need the real-mode dance, which is another launcher's job. :*/

import type { LoadTarget } from "../memory.ts";
import {
  BOOT_FLAG_MAGIC,
  BOOT_PARAMS,
  getField,
  HDRS_MAGIC,
  LOADED_HIGH,
  SETUP_HEADER_LIMIT,
  SETUP_HEADER_OFFSET,
  XLF_KERNEL_64,
} from "./bootparam.ts";
import { BootError, hex, sizeText, span } from "./errors.ts";
import { BZIMAGE_DEFAULT_LOAD, HIMEM_START } from "./layout.ts";

/** The oldest boot protocol we accept: 2.12, which introduced xloadflags. */
export const MIN_BOOT_PROTOCOL = 0x020c;
/** The 64-bit entry point's offset from the load address. */
export const ENTRY_64_OFFSET = 0x200;

/** The setup header fields the loader reads, decoded. */
export interface SetupHeader {
  /** Setup sectors after the boot sector (0 in the file means 4). */
  readonly setupSects: number;
  /** Protected-mode size in 16-byte paragraphs. */
  readonly syssize: number;
  /** Boot protocol version, e.g. 0x20f for 2.15. */
  readonly version: number;
  /** loadflags as found in the file. */
  readonly loadflags: number;
  /** xloadflags as found in the file. */
  readonly xloadflags: number;
  /** Alignment the kernel wants when relocated. */
  readonly kernelAlignment: number;
  /** Whether the protected-mode part may be loaded anywhere suitably aligned. */
  readonly relocatable: boolean;
  /** Minimum alignment, as a power of two. */
  readonly minAlignment: number;
  /** Highest address the initrd may occupy. */
  readonly initrdAddrMax: number;
  /** Longest command line, without its terminating NUL. */
  readonly cmdlineSize: number;
  /** Preferred load address (0 when the kernel has none). */
  readonly prefAddress: number;
  /** Bytes the kernel needs from its runtime start to decompress and boot. */
  readonly initSize: number;
  /** Offset of the compressed payload within the protected-mode part. */
  readonly payloadOffset: number;
  /** Length of the compressed payload. */
  readonly payloadLength: number;
}

/** What {@link loadBzImage} placed in guest memory. */
export interface BzImage {
  /** The 64-bit entry point: load address + 0x200. */
  readonly entry: number;
  /** Where the protected-mode part was copied. */
  readonly loadAddr: number;
  /** The decoded setup header. */
  readonly header: SetupHeader;
  /** The kernel's setup header bytes (0x1f1 up to its end), with code32_start set to loadAddr. */
  readonly setupHeaderBytes: Uint8Array;
  /** Highest address the initrd may occupy. */
  readonly initrdAddrMax: number;
  /** Longest command line, without its terminating NUL. */
  readonly cmdlineSize: number;
  /** First guest address past everything the kernel may use while it unpacks. */
  readonly kernelEnd: number;
}

function protocolText(version: number): string {
  return `${version >> 8}.${(version & 0xff).toString().padStart(2, "0")}`;
}

/*L:141 Reading the header is a sequence of "is it really a kernel?" checks,
 * each with its own message: the "HdrS" signature, the 0xAA55 boot flag,
 * the protocol version, the 64-bit entry promise. Then the extent of the
 * header itself: boot.rst says it ends at 0x202 plus the byte at 0x201 (the
 * operand of the jump over it), and that span is what we later copy into the
 * zero page, so it must cover the fields we read and stay inside the slot
 * struct boot_params gives it. :*/

function readSetupHeader(image: Uint8Array, name: string) {
  const magicEnd = 0x206;
  if (image.length < magicEnd || getField(image, "hdr.header") !== HDRS_MAGIC) {
    throw new BootError(
      `${name}: not a bzImage (no "HdrS" signature at 0x202) and not an ELF file`,
    );
  }
  const minEnd = 0x268;
  if (image.length < minEnd) {
    throw new BootError(
      `${name}: truncated (setup header needs ${hex(minEnd)} bytes, file has ${image.length})`,
    );
  }
  const bootFlag = getField(image, "hdr.boot_flag");
  if (bootFlag !== BOOT_FLAG_MAGIC) {
    throw new BootError(
      `${name}: bad boot_flag ${hex(bootFlag)} (expected 0xaa55)`,
    );
  }
  const version = getField(image, "hdr.version");
  if (version < MIN_BOOT_PROTOCOL) {
    throw new BootError(
      `${name}: boot protocol ${protocolText(version)} is too old (need 2.12+ for the 64-bit entry point)`,
    );
  }
  const xloadflags = getField(image, "hdr.xloadflags");
  if ((xloadflags & XLF_KERNEL_64) === 0) {
    throw new BootError(
      `${name}: no 64-bit entry point (XLF_KERNEL_64 clear in xloadflags ${hex(xloadflags)})`,
    );
  }
  const loadflags = getField(image, "hdr.loadflags");
  if ((loadflags & LOADED_HIGH) === 0) {
    throw new BootError(
      `${name}: a zImage (LOADED_HIGH clear); only bzImages are supported`,
    );
  }
  const headerEnd = 0x202 + (image[0x201] ?? 0);
  if (
    headerEnd < minEnd || headerEnd > SETUP_HEADER_LIMIT ||
    headerEnd > image.length
  ) {
    throw new BootError(
      `${name}: setup header end ${hex(headerEnd)} is outside ${hex(minEnd)}..${hex(SETUP_HEADER_LIMIT)}`,
    );
  }
  const prefAddress = getField(image, "hdr.pref_address");
  if (prefAddress >= 1n << 48n) {
    throw new BootError(`${name}: absurd pref_address ${hex(prefAddress)}`);
  }
  const header: SetupHeader = {
    setupSects: getField(image, "hdr.setup_sects") || 4,
    syssize: getField(image, "hdr.syssize"),
    version,
    loadflags,
    xloadflags,
    kernelAlignment: getField(image, "hdr.kernel_alignment"),
    relocatable: getField(image, "hdr.relocatable_kernel") !== 0,
    minAlignment: getField(image, "hdr.min_alignment"),
    initrdAddrMax: getField(image, "hdr.initrd_addr_max"),
    cmdlineSize: getField(image, "hdr.cmdline_size"),
    prefAddress: Number(prefAddress),
    initSize: getField(image, "hdr.init_size"),
    payloadOffset: getField(image, "hdr.payload_offset"),
    payloadLength: getField(image, "hdr.payload_length"),
  };
  return { header, headerEnd };
}

/*L:142 Where to put it. A relocatable kernel goes at its preferred address
 * rounded up to its alignment (the decompressor would move it there anyway);
 * a fixed one is loaded at 1 MiB and will move itself to pref_address to
 * run. Either way, boot.rst defines the "runtime start", and from there the
 * kernel needs init_size bytes of RAM before it can even read its memory
 * map: that, not the file size, is what must fit, and it is why the initrd
 * has to go above kernelEnd rather than just above the file's bytes. :*/

function placement(header: SetupHeader, name: string) {
  const { kernelAlignment: align, relocatable, prefAddress } = header;
  if (!relocatable) {
    return {
      loadAddr: BZIMAGE_DEFAULT_LOAD,
      runtimeStart: prefAddress || BZIMAGE_DEFAULT_LOAD,
    };
  }
  if (align < 0x1000 || align > 0x4000_0000 || (align & (align - 1)) !== 0) {
    throw new BootError(
      `${name}: kernel_alignment ${hex(align)} is not a power of two between 4 KiB and 1 GiB`,
    );
  }
  const want = prefAddress || BZIMAGE_DEFAULT_LOAD;
  const loadAddr = Math.ceil(want / align) * align;
  return { loadAddr, runtimeStart: loadAddr };
}

/**
 * Validates a bzImage and copies its protected-mode part into guest memory.
 * Nothing is written unless the image is valid and fits.
 * @param mem guest memory to load into
 * @param image the whole file
 * @param name the file's name, for error messages
 * @returns entry point, load address, the setup header to hand to the kernel, and its limits
 * @throws BootError naming the file and the problem
 */
export function loadBzImage(
  mem: LoadTarget,
  image: Uint8Array,
  name = "bzImage",
): BzImage {
  const { header, headerEnd } = readSetupHeader(image, name);
  const pmOffset = (header.setupSects + 1) * 512;
  if (pmOffset >= image.length) {
    throw new BootError(
      `${name}: truncated (protected-mode code at ${hex(pmOffset)} is past the end of the ${image.length}-byte file)`,
    );
  }
  const pmSize = image.length - pmOffset;
  if (pmSize < header.syssize * 16 - 15) {
    throw new BootError(
      `${name}: truncated (protected-mode code is ${pmSize} bytes, syssize says ${header.syssize * 16})`,
    );
  }
  const { loadAddr, runtimeStart } = placement(header, name);
  if (loadAddr < HIMEM_START || runtimeStart < HIMEM_START) {
    throw new BootError(
      `${name}: load address ${hex(Math.min(loadAddr, runtimeStart))} is below ${hex(HIMEM_START)}`,
    );
  }
  if (!mem.contains(loadAddr, pmSize)) {
    throw new BootError(
      `${name}: kernel at ${span(loadAddr, pmSize)} does not fit in ${sizeText(mem.size)} of guest RAM`,
    );
  }
  if (!mem.contains(runtimeStart, header.initSize)) {
    const size = sizeText(header.initSize);
    const ram = `${sizeText(mem.size)} of guest RAM`;
    throw new BootError(
      `${name}: kernel needs ${span(runtimeStart, header.initSize)} (init_size ${size}), which does not fit in ${ram}`,
    );
  }

  mem.write(loadAddr, image.subarray(pmOffset), `${name} protected-mode code`);
  const setupHeaderBytes = image.slice(SETUP_HEADER_OFFSET, headerEnd);
  const code32 = BOOT_PARAMS.fields["hdr.code32_start"].offset -
    SETUP_HEADER_OFFSET;
  new DataView(setupHeaderBytes.buffer).setUint32(code32, loadAddr, true);

  return {
    entry: loadAddr + ENTRY_64_OFFSET,
    loadAddr,
    header,
    setupHeaderBytes,
    initrdAddrMax: header.initrdAddrMax,
    cmdlineSize: header.cmdlineSize,
    kernelEnd: Math.max(loadAddr + pmSize, runtimeStart + header.initSize),
  };
}
