import { deepEqual, equal, ok } from "node:assert/strict";
import { ensureLinux } from "../scripts/linux.ts";

/** File names in a newc cpio archive, up to the trailer. */
function cpioNames(archive: Uint8Array): string[] {
  const text = new TextDecoder();
  const names: string[] = [];
  const align = (n: number) => (n + 3) & ~3;
  let off = 0;
  while (off + 110 <= archive.length) {
    const head = text.decode(archive.subarray(off, off + 110));
    equal(head.slice(0, 6), "070701", `newc magic at ${off}`);
    const field = (i: number) => parseInt(head.slice(6 + 8 * i, 14 + 8 * i), 16);
    const fileSize = field(6);
    const nameSize = field(11);
    const name = text.decode(
      archive.subarray(off + 110, off + 110 + nameSize - 1),
    );
    if (name === "TRAILER!!!") return names;
    names.push(name);
    off = align(align(off + 110 + nameSize) + fileSize);
  }
  throw new Error("cpio archive has no trailer");
}

async function gunzip(data: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([data as Uint8Array<ArrayBuffer>]).stream()
    .pipeThrough(new DecompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

// The first run on a machine builds the kernel (a few minutes); later runs
// hit the cache.
Deno.test("ensureLinux builds a bootable kernel and initramfs", async () => {
  const a = await ensureLinux();

  const bz = await Deno.readFile(a.bzImage);
  // "MZ" at 0 only appears with CONFIG_EFI_STUB, which on x86 needs ACPI;
  // our kernel has neither, so check the boot sector signature instead.
  deepEqual([bz[0x1fe], bz[0x1ff]], [0x55, 0xaa], "boot_flag 0xAA55");
  equal(new TextDecoder().decode(bz.subarray(0x202, 0x206)), "HdrS");

  const elf = await Deno.readFile(a.vmlinux);
  deepEqual([...elf.subarray(0, 4)], [0x7f, 0x45, 0x4c, 0x46]); // \x7fELF
  equal(elf[4], 2, "ELFCLASS64");
  equal(new DataView(elf.buffer).getUint16(18, true), 62, "EM_X86_64");

  const gz = await Deno.readFile(a.initramfs);
  deepEqual([gz[0], gz[1]], [0x1f, 0x8b], "gzip magic");
  const names = cpioNames(await gunzip(gz));
  ok(names.includes("init"), `no init in ${names.join(" ")}`);
  ok(names.includes("bin/busybox"), `no bin/busybox in ${names.join(" ")}`);
  ok(names.includes("dev/console"), `no dev/console in ${names.join(" ")}`);

  ok(/^\d+\.\d+/.test(a.version), `odd kernel version ${a.version}`);
  ok(a.bzImage.startsWith(`${a.cacheDir}/`));

  // Second call: a cache hit returning the same artifacts.
  deepEqual(await ensureLinux(), a);
});
