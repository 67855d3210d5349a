// lguest-test-needs: guest-kernel
/*T:253 Debian's own cloud kernel, unmodified, on two vCPUs. The kernel has
 * virtio only as modules and no `virtio_mmio.device=` parsing, so it finds
 * the launcher's devices the way it finds a cloud's: the ACPI tables (L:181)
 * describe each virtio-mmio window in the DSDT, /init (scripts/debian/init)
 * loads virtio_mmio and the device drivers from the initramfs, and the
 * drivers bind. From the guest's own console the test then wants: both
 * CPUs online, our disk's first bytes read from /dev/vda, a ping to the
 * host's end of a tap answered, the entropy device read, a line through
 * hvc0, and a power-off through the ACPI sleep register that ends the
 * launcher with status 0. Booted twice: as Debian ships it (the bzImage,
 * entered by the 64-bit boot protocol) and as the ELF inside it, entered
 * through its PVH note, and --verbose must say which entry it took. :*/

import assert from "node:assert/strict";
import { ensureDebianGuest } from "../scripts/debian/guest.ts";
import { NetNs, netnsProblem } from "./virtio/net/netns.ts";
import { linuxUnreachable, pastEmulatorStalls, TEST_VM_GUEST_ARGS } from "./helpers/emulator_stall.ts";
import { bootLinux, explained } from "./helpers/linux_boot.ts";

const MEMORY_MIB = 256;
const CPUS = 2;
const WHY_NOT = linuxUnreachable() ?? await netnsProblem();
if (WHY_NOT) console.log(`debian_boot_test: skipping: ${WHY_NOT}`);

const hex = (bytes: Uint8Array) => [...bytes].map((x) => x.toString(16).padStart(2, "0")).join("");

for (const kind of ["bzImage", "vmlinux"] as const) {
  Deno.test({
    name: `debian: the stock ${kind} finds every device through ACPI, runs on ${CPUS} vCPUs and powers off`,
    ignore: WHY_NOT !== undefined,
    sanitizeResources: false,
    async fn() {
      const guest = await ensureDebianGuest({ log: (s) => console.log(`debian: ${s}`) });
      const kernel = kind === "vmlinux" ? guest.vmlinux : guest.bzImage;
      const head = new TextEncoder().encode("LGUEST-DEBIAN-16");
      const disk = await Deno.makeTempFile({ suffix: ".img" });
      const ns = await NetNs.create();
      try {
        const image = new Uint8Array(1024 * 1024);
        image.set(head);
        await Deno.writeFile(disk, image);
        const b = await pastEmulatorStalls(
          "debian",
          `${guest.root}/boot/System.map-${guest.release}`,
          () =>
            bootLinux({
              kernel,
              initrd: guest.initramfs,
              memoryMib: MEMORY_MIB,
              options: [`--cpus=${CPUS}`, `--block=${disk}`, "--rng", "--tunnet=10.7.8.1"],
              cmdline: [
                "console=ttyS0",
                "nokaslr",
                "lguest.ip=10.7.8.2/24",
                "lguest.peer=10.7.8.1",
                ...TEST_VM_GUEST_ARGS,
              ],
              netns: ns,
              timeoutMs: 240_000,
            }),
          (b) => b,
        );
        // hvc0 and ttyS0 share the launcher's stdout, so the one hvc0 line may
        // land inside a serial line: check it, then read the serial lines without it.
        const serial = b.console.replace("LGUEST-HVC-OK", "");
        explained(b, () => {
          assert.match(
            b.stderr,
            kind === "vmlinux" ? /^lguest: PVH entry 0x[0-9a-f]+ \(ELF note/m : /^lguest: 64-bit boot protocol entry/m,
            "the entry taken",
          );
          assert.ok(serial.includes(`LGUEST-INIT-OK ${guest.release}`), "Debian's kernel ran our /init");
          assert.doesNotMatch(serial, /LGUEST-INSMOD-FAIL/, "every module loaded");
          assert.ok(serial.includes(`LGUEST-MODULES-OK ${guest.modules.length}`), "module count");
          assert.match(serial, /LGUEST-CPUS 0-1\r?\n/, "both CPUs online");
          assert.ok(serial.includes(`LGUEST-BLK-READ ${hex(head)}`), "the guest read our disk's first bytes");
          assert.match(serial, /LGUEST-NET-OK 10\.7\.8\.2\/24 10\.7\.8\.1/, "the guest pinged the host's tap");
          assert.match(serial, /LGUEST-RNG-OK virtio_rng\.\d+ 16/, "16 bytes from the entropy device");
          assert.match(b.console, /LGUEST-HVC-OK/, "a line through hvc0");
          assert.match(serial, /LGUEST-DONE/, "/init reached its end");
          assert.equal(b.code, 0, "a clean power-off");
        });
      } finally {
        await ns.delete();
        await Deno.remove(disk);
      }
    },
  });
}
