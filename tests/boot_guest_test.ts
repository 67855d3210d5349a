// lguest-test-needs: kvm
/*T:200 The whole launcher, end to end, on the real /dev/kvm: build the test
 * guest, boot it with an initrd and a command line, and check every fact it
 * reports back against what we gave it. The guest runs in ring 0, which this
 * host's PVM KVM emulates, so it is small; it still crosses every door: ELF
 * loading, the zero page, e820, initrd placement, long-mode entry, the UART
 * and its interrupt through the in-kernel IOAPIC, and the i8042 reset. :*/

import assert from "node:assert/strict";
import { buildTestGuest } from "./guest/build.ts";
import { fnv1a, guestReport, HAVE_KVM, runLauncher } from "./helpers/launcher.ts";

if (!HAVE_KVM) console.log("boot_guest_test: /dev/kvm cannot be opened here; skipping the boot tests");

async function tempInitrd(size: number): Promise<[string, Uint8Array]> {
  const data = new Uint8Array(size);
  crypto.getRandomValues(data);
  const path = await Deno.makeTempFile({ prefix: "lguest-initrd-" });
  await Deno.writeFile(path, data);
  return [path, data];
}

Deno.test({
  name: "test guest boots from ELF and sees what the launcher set up",
  ignore: !HAVE_KVM,
  async fn() {
    const guest = await buildTestGuest();
    const [initrd, data] = await tempInitrd(12345);
    try {
      const run = await runLauncher([
        "--no-acpi",
        `--initrd=${initrd}`,
        "64",
        guest,
        "root=/dev/null",
        "lguest.test=1",
      ]);
      assert.equal(run.code, 0, `exit status (stderr: ${run.stderr})`);
      const r = guestReport(run.stdout);
      assert.match(r.get("MODE")?.[0] ?? "", /^long /);
      assert.deepEqual(r.get("CPUID-HYPERVISOR-BIT"), ["1"]);
      assert.deepEqual(r.get("CPUID-HYPERVISOR"), ["KVMKVMKVM"], "KVM's hypervisor leaf passed through");
      assert.deepEqual(r.get("CMDLINE"), ["root=/dev/null lguest.test=1 virtio_mmio.device=4K@0xd0000000:5"]);
      assert.deepEqual(r.get("E820"), ["0x0 0x9fc00 1", "0x9fc00 0x60400 2", "0x100000 0x3f00000 1"]);
      const [addr, size, sum] = (r.get("INITRD")?.[0] ?? "").split(" ");
      assert.equal(Number(size), data.length);
      assert.equal(Number(sum), fnv1a(data), "initrd checksum seen by the guest");
      assert.equal(Number(addr) % 4096, 0, "initrd is page aligned");
      assert.ok(Number(addr) + data.length <= 64 * 1024 * 1024, "initrd inside RAM");
      assert.deepEqual(r.get("IRQ"), ["vector 0x24 iir 0x2"], "THRE interrupt delivered through the IOAPIC");
      assert.ok(run.stdout.includes("DONE\n"));
    } finally {
      await Deno.remove(initrd);
    }
  },
});

Deno.test({
  name: "a 4 GiB guest gets RAM above the 4 GiB boundary in its e820 map",
  ignore: !HAVE_KVM,
  async fn() {
    const guest = await buildTestGuest();
    const run = await runLauncher(["--no-acpi", "4096", guest]);
    assert.equal(run.code, 0, run.stderr);
    const r = guestReport(run.stdout);
    assert.deepEqual(r.get("E820"), [
      "0x0 0x9fc00 1",
      "0x9fc00 0x60400 2",
      "0x100000 0xbff00000 1",
      "0x100000000 0x40000000 1",
    ]);
    assert.deepEqual(r.get("CMDLINE"), ["virtio_mmio.device=4K@0xd0000000:5"], "only the console's declaration");
    assert.deepEqual(r.get("INITRD")?.[0]?.split(" ").slice(0, 2), ["0x0", "0"]);
  },
});

Deno.test({
  name: "--verbose reports the layout and why the guest stopped",
  ignore: !HAVE_KVM,
  async fn() {
    const guest = await buildTestGuest();
    // With ACPI (the default): the tables go to 0xe0000 and the command line stays the user's, so the
    // test guest, which reads only the command line, finds no devices and still boots to its reset.
    const run = await runLauncher(["--verbose", "32", guest]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /elf kernel, entry 0x200000/);
    assert.match(run.stderr, /^lguest: ACPI RSDP at 0xe0000$/m);
    assert.match(run.stderr, /^lguest: command line ""$/m);
    assert.match(run.stdout, /^CMDLINE: $/m);
    assert.match(run.stdout, /^VIRTIO-COUNT: 0$/m);
    assert.match(run.stderr, /reset requested by i8042/);
    const off = await runLauncher(["--verbose", "--no-acpi", "32", guest]);
    assert.equal(off.code, 0, off.stderr);
    assert.match(off.stderr, /^lguest: no ACPI tables \(--no-acpi\)$/m);
    assert.match(off.stdout, /^VIRTIO-COUNT: 1$/m);
  },
});
