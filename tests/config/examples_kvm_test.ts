// lguest-test-needs: kvm
/*T:824 examples/demo.yaml boots, as a user would boot it: `lguest
 * examples/demo.yaml`, the file in a directory with the kernel it names
 * (the built test guest, linked as guest.elf) and its committed initrd. The
 * guest must see what the file says (its cmdline, the initrd byte for byte,
 * the entropy device, no ACPI) and the launcher must exit 0. Then the
 * command line's memory size and guest words override the file's. :*/

import assert from "node:assert/strict";
import { buildTestGuest } from "../guest/build.ts";
import { fnv1a, guestReport, HAVE_KVM, runLauncher } from "../helpers/launcher.ts";

const ROOT = new URL("../..", import.meta.url).pathname;

if (!HAVE_KVM) console.log("config examples_kvm_test: /dev/kvm cannot be opened here; skipping");

Deno.test({
  name: "examples/demo.yaml boots the test guest, and the command line overrides it",
  ignore: !HAVE_KVM,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "lguest-config-example-" });
    try {
      for (const name of ["demo.yaml", "demo-initrd.txt"]) {
        await Deno.copyFile(`${ROOT}examples/${name}`, `${dir}/${name}`);
      }
      await Deno.symlink(await buildTestGuest(), `${dir}/guest.elf`);
      const initrd = await Deno.readFile(`${ROOT}examples/demo-initrd.txt`);
      const guest = `${dir}/guest.elf`;
      const runs = [
        { argv: [`${dir}/demo.yaml`], ram: "0x3f00000", words: "demo console=ttyS0" },
        {
          argv: [`--config=${dir}/demo.yaml`, "128", guest, "override", "console=ttyS0"],
          ram: "0x7f00000",
          words: "override console=ttyS0",
        },
      ];
      for (const { argv, ram, words } of runs) {
        const run = await runLauncher(["--verbose", ...argv], { timeoutMs: 120_000 });
        assert.equal(run.code, 0, `exit status (stderr: ${run.stderr})`);
        const r = guestReport(run.stdout);
        assert.ok((r.get("CMDLINE")?.[0] ?? "").startsWith(`${words} virtio_mmio.device=4K@`), r.get("CMDLINE")?.[0]);
        assert.ok(r.get("E820")?.includes(`0x100000 ${ram} 1`), `memory: ${r.get("E820")}`);
        const [, size, sum] = (r.get("INITRD")?.[0] ?? "").split(" ");
        assert.equal(Number(size), initrd.length, "the initrd named relative to the file");
        assert.equal(Number(sum), fnv1a(initrd));
        assert.deepEqual(r.get("RNG-INIT"), ["0"], "rng: true gave an entropy device");
        assert.match(run.stderr, /lguest: no ACPI tables/, "acpi: false");
        assert.ok(run.stdout.includes("DONE\n"));
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
