/*T:251 What scripts/debian/ hands the launcher for Debian's kernel, checked on the host without
 * KVM: the package scripts/debian/kernel.ts fetched is Debian's cloud
 * kernel; the vmlinux taken out of its bzImage is an x86-64 ELF that
 * readelf finds the PVH note in; a bzImage whose payload is visibly
 * damaged is refused rather than turned into a broken ELF; and the initramfs holds
 * every module /init loads, each after the modules it depends on. :*/

import assert from "node:assert/strict";
import { ensureDebianGuest } from "../scripts/debian/guest.ts";
import { extractVmlinux } from "../scripts/debian/vmlinux.ts";
import { getField } from "../lib/boot/bootparam.ts";

const guest = await ensureDebianGuest({ log: (s) => console.log(`debian: ${s}`) });

Deno.test("debian: the package is the cloud kernel, with its config and modules", async () => {
  assert.match(guest.package, /^linux-image-6\.\d+\.\d+-\d+-cloud-amd64$/);
  assert.equal(guest.release, guest.package.slice("linux-image-".length));
  const config = await Deno.readTextFile(`${guest.root}/boot/config-${guest.release}`);
  for (const line of ["CONFIG_ACPI=y", "CONFIG_PVH=y", "CONFIG_VIRTIO_MMIO=m"]) {
    assert.ok(config.split("\n").includes(line), line);
  }
  assert.ok((await Deno.stat(`${guest.modulesDir}/modules.dep`)).size > 0, "depmod wrote modules.dep");
});

Deno.test("debian: the vmlinux from the bzImage's payload is an x86-64 ELF with the PVH note", async () => {
  const head = new Uint8Array(64);
  const f = await Deno.open(guest.vmlinux);
  await f.read(head);
  f.close();
  const v = new DataView(head.buffer);
  assert.equal(v.getUint32(0), 0x7f454c46, "ELF magic");
  assert.equal(head[4], 2, "ELFCLASS64");
  assert.equal(v.getUint16(18, true), 62, "EM_X86_64");
  assert.ok(guest.pvhEntry !== undefined && guest.pvhEntry >= 0x100000, `PVH entry ${guest.pvhEntry}`);
});

/*T:252 LZ4's legacy frames, which Debian's cloud kernel uses, carry no
 * checksum, so a flipped bit inside the compressed data goes unnoticed by
 * the decompressor (and by the kernel's own). What can be checked is
 * checked: the format's magic, and the uncompressed size the build appended,
 * which a truncated or shifted payload gets wrong. :*/
for (
  const [what, damage] of [
    ["magic", (at: number, _len: number) => at],
    ["size trailer", (at: number, len: number) => at + len - 2],
  ] as const
) {
  Deno.test(`debian: a payload whose ${what} is damaged is refused`, async () => {
    const image = await Deno.readFile(guest.bzImage);
    const pm = ((getField(image, "hdr.setup_sects") || 4) + 1) * 512;
    const start = pm + getField(image, "hdr.payload_offset");
    image[damage(start, getField(image, "hdr.payload_length"))]! ^= 0x10;
    const dir = await Deno.makeTempDir();
    try {
      await Deno.writeFile(`${dir}/bzImage`, image);
      await assert.rejects(extractVmlinux(`${dir}/bzImage`, `${dir}/vmlinux`));
      await assert.rejects(Deno.stat(`${dir}/vmlinux`), "no output file");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("debian: the initramfs loads each module after what modules.dep says it needs", async () => {
  const listing = new TextDecoder().decode(
    (await new Deno.Command("sh", { args: ["-c", `zcat '${guest.initramfs}' | cpio -t --quiet`], stdout: "piped" })
      .output()).stdout,
  ).split("\n");
  for (const m of guest.modules) assert.ok(listing.includes(`modules/${m}`), `modules/${m} in the archive`);
  for (const want of ["virtio_mmio.ko", "virtio_blk.ko", "virtio_net.ko", "virtio_console.ko", "virtio-rng.ko"]) {
    assert.ok(guest.modules.includes(want), want);
  }
  const deps = new Map<string, string[]>();
  for (const line of (await Deno.readTextFile(`${guest.modulesDir}/modules.dep`)).split("\n")) {
    const [path, rest] = line.split(":");
    if (!path || rest === undefined) continue;
    const base = (p: string) => p.slice(p.lastIndexOf("/") + 1).replace(/\.(xz|zst|gz)$/, "");
    deps.set(base(path), rest.trim().split(/\s+/).filter(Boolean).map(base));
  }
  guest.modules.forEach((m, i) => {
    for (const d of deps.get(m) ?? []) {
      const at = guest.modules.indexOf(d);
      assert.ok(at >= 0 && at < i, `${d} loads before ${m}`);
    }
  });
});
