// lguest-test-needs: guest-kernel
/*T:826 examples/linux.yaml boots as its comment tells a user to boot it:
 * the project's Linux build linked next to the file, then `lguest
 * examples/linux.yaml`. The file asks for 128 MiB, the kernel's serial
 * console, no ACPI, an entropy device and a reboot at the end, so the
 * guest's /init must say it started, that the entropy device gave it
 * bytes, and that it was done, and the launcher must exit 0 (a reboot is a
 * clean end). In the test VM, a boot that ends in the emulator's known
 * stall (T:236) is booted again, a bounded number of times. :*/

import assert from "node:assert/strict";
import { ensureLinux } from "../../scripts/linux.ts";
import { linuxUnreachable, pastEmulatorStalls, TEST_VM_GUEST_ARGS } from "../helpers/emulator_stall.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
const WHY_NOT = linuxUnreachable();
if (WHY_NOT) console.log(`examples_linux_test: skipping: ${WHY_NOT}`);

Deno.test({
  name: "examples/linux.yaml boots the project's Linux to its /init's last line, with entropy, and exits 0",
  ignore: WHY_NOT !== undefined,
  async fn() {
    const linux = await ensureLinux({ log: (s) => console.log(`linux: ${s}`) });
    const dir = await Deno.makeTempDir({ prefix: "lguest-linux-yaml-" });
    try {
      // The file as committed, plus the test VM's extra kernel words (T:237) at the end of its cmdline list.
      const yaml = await Deno.readTextFile(`${ROOT}examples/linux.yaml`);
      const extra = TEST_VM_GUEST_ARGS.map((w) => `\n  - ${w}`).join("");
      await Deno.writeTextFile(`${dir}/linux.yaml`, yaml.replace("\n  - reboot=k", `\n  - reboot=k${extra}`));
      await Deno.symlink(linux.bzImage, `${dir}/bzImage`);
      await Deno.symlink(linux.initramfs, `${dir}/initramfs.cpio.gz`);
      const r = await pastEmulatorStalls("linux.yaml", linux.vmlinux, async () => {
        const child = new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", `${ROOT}cli.ts`, "--verbose", `${dir}/linux.yaml`],
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        let timedOut = false;
        const timer = setTimeout(() => {
          timedOut = true;
          child.kill("SIGTERM");
        }, 180_000);
        const out = await child.output();
        clearTimeout(timer);
        const dec = new TextDecoder();
        return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr), timedOut };
      }, (r) => ({ ...r, console: r.stdout }));
      const context = `exit ${r.code}\n--- console (tail) ---\n${r.stdout.slice(-3000)}\n--- stderr (tail) ---\n${
        r.stderr.slice(-2000)
      }`;
      assert.match(r.stdout, new RegExp(`LGUEST-INIT-OK ${linux.version.replaceAll(".", "\\.")}`), context);
      assert.match(r.stdout, /LGUEST-RNG-OK /, context);
      assert.match(r.stdout, /LGUEST-DONE/, context);
      assert.match(r.stderr, /reset requested|guest reset|triple fault/, context);
      assert.equal(r.code, 0, context);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
