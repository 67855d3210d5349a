// lguest-test-needs: kvm
/*T:749 The PVH entry end to end, on real KVM. The test guest carries the
 * PVH note and a PVH entry of its own (tests/guest/start.S, pvh.c, T:745)
 * that climbs to long mode by itself and copies what the hvm_start_info
 * says into the zero-page fields the rest of it reads. So booted by
 * default, it reports the command line, the memory map and the initrd it
 * found through the start info alone; and its CR0 tells the two entries
 * apart: the launcher's long-mode entry sets WP, NE and MP (0x80010033),
 * while the guest's own climb from the PVH entry sets only PG on top of
 * PE and ET (0x80000011). --entry=linux64 must give the old entry back. :*/

import assert from "node:assert/strict";
import { buildTestGuest } from "./guest/build.ts";
import { fnv1a, guestReport, HAVE_KVM, runLauncher } from "./helpers/launcher.ts";

if (!HAVE_KVM) console.log("pvh_boot_test: /dev/kvm cannot be opened here; skipping");

const E820_64M = ["0x0 0x9fc00 1", "0x9fc00 0x60400 2", "0x100000 0x3f00000 1"];

Deno.test({
  name: "pvh: the test guest boots through its PVH note and sees the command line, memory map and initrd",
  ignore: !HAVE_KVM,
  async fn() {
    const guest = await buildTestGuest();
    const data = crypto.getRandomValues(new Uint8Array(23456));
    const initrd = await Deno.makeTempFile({ prefix: "lguest-pvh-initrd-" });
    await Deno.writeFile(initrd, data);
    try {
      const run = await runLauncher(["--verbose", "--no-acpi", `--initrd=${initrd}`, "64", guest, "pvh.test=1"]);
      assert.equal(run.code, 0, `exit status (stderr: ${run.stderr})`);
      assert.match(run.stderr, /lguest: PVH entry 0x[0-9a-f]+ \(ELF note XEN_ELFNOTE_PHYS32_ENTRY\)/);
      const r = guestReport(run.stdout);
      assert.deepEqual(r.get("MODE"), ["long cr0=0x80000011 cr4=0x20 efer=0x500"], "the guest climbed from PVH itself");
      assert.deepEqual(r.get("CMDLINE"), ["pvh.test=1 virtio_mmio.device=4K@0xd0000000:5"]);
      assert.deepEqual(r.get("E820"), E820_64M, "the memmap is the launcher's e820 map");
      const [addr, size, sum] = (r.get("INITRD")?.[0] ?? "").split(" ");
      assert.equal(Number(size), data.length, "module 0 size");
      assert.equal(Number(sum), fnv1a(data), "module 0 is the initrd, byte for byte");
      assert.equal(Number(addr) % 4096, 0);
      assert.ok(run.stdout.includes("DONE\n"));
    } finally {
      await Deno.remove(initrd);
    }
  },
});

Deno.test({
  name: "pvh: --entry=linux64 boots the same ELF by the 64-bit boot protocol",
  ignore: !HAVE_KVM,
  async fn() {
    const guest = await buildTestGuest();
    const run = await runLauncher(["--verbose", "--no-acpi", "--entry=linux64", "64", guest, "lm.test=1"]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /64-bit boot protocol entry 0x200000 \(ELF with the PVH note, entry linux64 asked for\)/);
    const r = guestReport(run.stdout);
    assert.deepEqual(r.get("MODE"), ["long cr0=0x80010033 cr4=0x20 efer=0x500"]);
    assert.deepEqual(r.get("CMDLINE"), ["lm.test=1 virtio_mmio.device=4K@0xd0000000:5"]);
    assert.deepEqual(r.get("E820"), E820_64M);
  },
});

Deno.test({
  name: "pvh: a 4 GiB guest's PVH memory map reaches above 4 GiB",
  ignore: !HAVE_KVM,
  async fn() {
    const guest = await buildTestGuest();
    const run = await runLauncher(["--no-acpi", "4096", guest]);
    assert.equal(run.code, 0, run.stderr);
    const r = guestReport(run.stdout);
    assert.match(r.get("MODE")?.[0] ?? "", /cr0=0x80000011 /);
    assert.deepEqual(r.get("E820"), [
      "0x0 0x9fc00 1",
      "0x9fc00 0x60400 2",
      "0x100000 0xbff00000 1",
      "0x100000000 0x40000000 1",
    ]);
  },
});
