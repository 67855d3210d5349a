// lguest-test-needs: kvm
/*T:233 The README's library example also boots, as written (T:231 has
 * it fail). Its `bzImage` is a link to the test guest, an ELF vmlinux,
 * which the loader takes whatever its name; without lguest.echo the guest
 * drives the disk, the entropy device and hvc0, prints DONE and resets.
 * The example must then say the guest stopped and exit 0 by itself, within
 * 2 s of its last line: `await using` closed the machine, its Worker and
 * the devices' threads. :*/

import assert from "node:assert/strict";
import { buildTestGuest } from "./guest/build.ts";
import { HAVE_KVM } from "./helpers/launcher.ts";
import { exampleDir, runExample } from "./helpers/readme_example.ts";

if (!HAVE_KVM) console.log("readme_example_kvm_test: /dev/kvm cannot be opened here; skipping");

const EXIT_WITHIN_MS = 2000;

Deno.test({
  name: "README: the library example boots the test guest and exits by itself",
  ignore: !HAVE_KVM,
  async fn() {
    const dir = await exampleDir();
    try {
      await Deno.symlink(await buildTestGuest(), `${dir}/bzImage`);
      const { code, stdout, stderr, context, lingerMs: linger } = await runExample(
        dir,
        { stream: "stdout", text: "guest stopped: " },
        180_000,
      );
      assert.equal(code, 0, context);
      assert.match(stdout, /^HVC-OUT: hello from hvc0$/m, context);
      assert.match(stdout, /^DONE$/m, context);
      assert.match(stdout, /\nguest stopped: [^\n]+\n$/, context);
      assert.equal(stderr, "", context);
      assert.ok(linger < EXIT_WITHIN_MS, `the example lived ${linger} ms after its last line\n${context}`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
