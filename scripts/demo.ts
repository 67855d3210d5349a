/*T:030 `deno task demo` boots the test guest, the small freestanding
 * kernel in tests/guest, with a tiny initrd, on this terminal. It needs only
 * /dev/kvm and gcc (installed if missing), so it works on any KVM host,
 * including ones whose KVM cannot run a full Linux quickly. Extra arguments
 * are passed to the launcher before the memory size (e.g. --verbose). :*/

import { buildTestGuest } from "../tests/guest/build.ts";
import { ensurePackages } from "./packages.ts";
import { main } from "../cli.ts";

await ensurePackages(["gcc"]);
const guest = await buildTestGuest();
const initrd = await Deno.makeTempFile({ prefix: "lguest-demo-initrd-" });
await Deno.writeTextFile(initrd, "Hello from the lguest demo initrd!\n".repeat(32));
try {
  const code = await main([...Deno.args, `--initrd=${initrd}`, "64", guest, "demo", "console=ttyS0"]);
  await Deno.remove(initrd);
  Deno.exit(code);
} catch (e) {
  await Deno.remove(initrd);
  throw e;
}
