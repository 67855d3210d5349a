/*L:923 A bzImage carries the real kernel inside it: after the setup code
 * comes the decompressor, and inside that, at payload_offset in the
 * protected-mode part, payload_length bytes of the ELF vmlinux, compressed
 * with whatever CONFIG_KERNEL_* chose (Debian's cloud kernel uses LZ4; other
 * builds xz, zstd or gzip). The kernel's build appends the uncompressed size
 * as 4 little-endian bytes to every format, which the decompressors would
 * take for a truncated next frame, so we cut them off and use them to check
 * the result. Debian ships no vmlinux for its kernels (only the -dbg package,
 * 800 MB), so this is how the launcher gets an ELF with the PVH note from the
 * same, unmodified package: the bytes the bzImage would have unpacked itself. :*/

import { getField } from "../../lib/boot/bootparam.ts";

/** The payload compressions we can undo, by their magic bytes, with the host tool that undoes each. */
const FORMATS = [
  { name: "lz4", magic: [0x02, 0x21, 0x4c, 0x18], tool: ["lz4", "-dc"] },
  { name: "xz", magic: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], tool: ["xz", "-dc", "--single-stream"] },
  { name: "zstd", magic: [0x28, 0xb5, 0x2f, 0xfd], tool: ["zstd", "-dc"] },
  { name: "gzip", magic: [0x1f, 0x8b], tool: ["gzip", "-dc"] },
] as const;

/**
 * Writes the ELF vmlinux that `bzImagePath`'s payload holds to `outPath`.
 * @param bzImagePath a bzImage file (boot protocol 2.08 or later, for payload_offset)
 * @param outPath where to write the uncompressed ELF
 * @returns the payload's compression name
 * @throws Error if the payload is missing, in an unknown format, or does not unpack to an ELF of the recorded size
 */
export async function extractVmlinux(bzImagePath: string, outPath: string): Promise<string> {
  const image = await Deno.readFile(bzImagePath);
  if (image.length < 0x268 || getField(image, "hdr.header") !== 0x53726448) {
    throw new Error(`debian: ${bzImagePath} is not a bzImage`);
  }
  const pm = ((getField(image, "hdr.setup_sects") || 4) + 1) * 512;
  const start = pm + getField(image, "hdr.payload_offset");
  const length = getField(image, "hdr.payload_length");
  if (length < 8 || start + length > image.length) {
    throw new Error(`debian: ${bzImagePath}: payload ${start}+${length} is outside the ${image.length}-byte file`);
  }
  const payload = image.subarray(start, start + length);
  const format = FORMATS.find((f) => f.magic.every((b, i) => payload[i] === b));
  if (!format) {
    const head = [...payload.subarray(0, 6)].map((b) => b.toString(16).padStart(2, "0")).join(" ");
    throw new Error(`debian: ${bzImagePath}: unknown payload compression (starts ${head})`);
  }
  const size = new DataView(payload.buffer, payload.byteOffset + length - 4, 4).getUint32(0, true);
  const child = new Deno.Command(format.tool[0], {
    args: format.tool.slice(1),
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  const fed = writer.write(payload.subarray(0, length - 4)).then(() => writer.close());
  const [out] = await Promise.all([child.output(), fed]);
  if (!out.success) {
    throw new Error(`debian: ${format.tool.join(" ")} failed: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
  const elf = out.stdout;
  if (elf.length !== size || elf[0] !== 0x7f || elf[1] !== 0x45 || elf[2] !== 0x4c || elf[3] !== 0x46) {
    throw new Error(`debian: ${format.name} payload unpacked to ${elf.length} bytes, not a ${size}-byte ELF`);
  }
  await Deno.writeFile(outPath, elf);
  return format.name;
}

/*L:924 Whether the ELF can be entered the PVH way is a property of the
 * file, and we ask binutils rather than our own ELF reader, so that the test
 * of the launcher's note parsing does not lean on the same parser:
 * `readelf -n` lists the Xen notes, and type 18 (XEN_ELFNOTE_PHYS32_ENTRY)
 * holds the 32-bit entry address. :*/

/**
 * The PVH entry point `readelf -n` finds in an ELF kernel, if any.
 * @param vmlinux path to an ELF file
 * @returns the XEN_ELFNOTE_PHYS32_ENTRY address, or undefined without that note
 */
export async function pvhEntry(vmlinux: string): Promise<number | undefined> {
  const out = await new Deno.Command("readelf", { args: ["-n", vmlinux], stdout: "piped", stderr: "piped" }).output();
  if (!out.success) throw new Error(`debian: readelf -n ${vmlinux} failed`);
  const text = new TextDecoder().decode(out.stdout);
  const m = /Xen\s+0x[0-9a-f]+\s+Unknown note type: \(0x00000012\)\s+description data: ((?:[0-9a-f]{2} ?)+)/.exec(
    text,
  );
  if (!m) return undefined;
  const bytes = m[1]!.trim().split(" ").map((b) => parseInt(b, 16));
  return bytes.slice(0, 4).reduceRight((acc, b) => acc * 256 + b, 0);
}
