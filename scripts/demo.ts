/*T:030 `deno task demo` boots the test guest, the small freestanding
 * kernel in tests/guest, with a tiny initrd, on this terminal. It needs only
 * /dev/kvm and gcc (installed if missing), so it works on any KVM host,
 * including ones whose KVM cannot run a full Linux quickly. Extra arguments
 * are passed to the launcher before the memory size (e.g. --verbose). On a
 * host without /dev/kvm it runs itself inside the test VM (scripts/vm/),
 * whose nested KVM is real but emulated, and says so. :*/

import { buildTestGuest } from "../tests/guest/build.ts";
import { ensurePackages } from "./packages.ts";
import { main } from "../cli.ts";
import { kvmFlavour } from "../lib/kvm/kvm.ts";

if (kvmFlavour() === "none") {
  console.error("demo: no /dev/kvm on this host; booting the demo inside the test VM (QEMU TCG: slow, but a real KVM)");
  const { runInVm } = await import("./vm/run.ts");
  const root = new URL("..", import.meta.url).pathname;
  const r = await runInVm([Deno.execPath(), "run", "-A", `${root}scripts/demo.ts`, ...Deno.args], {
    cwd: root,
    timeoutMs: 10 * 60_000,
    log: (l) => console.error(`demo: ${l}`),
  });
  if (r.problem) console.error(r.problem);
  Deno.exit(r.code ?? 1);
}
await ensurePackages(["gcc"]);
const guest = await buildTestGuest();
const initrd = await Deno.makeTempFile({ prefix: "lguest-demo-initrd-" });
await Deno.writeTextFile(initrd, "Hello from the lguest demo initrd!\n".repeat(32));
try {
  // The test guest has no ACPI: it finds its devices by the command line's virtio_mmio.device= words.
  const code = await main([...Deno.args, "--no-acpi", `--initrd=${initrd}`, "64", guest, "demo", "console=ttyS0"]);
  await Deno.remove(initrd);
  Deno.exit(code);
} catch (e) {
  await Deno.remove(initrd);
  throw e;
}
