// lguest-test-needs: kvm
/*T:240 virtio-rng end to end on the real /dev/kvm: the test guest finds
 * the device on its command line, brings it up in spec order, posts two
 * buffers, and sleeps in hlt until the irqfd interrupt says they came back.
 * The doorbell is an ioeventfd, the interrupt an irqfd: no exit carries
 * either. :*/

import assert from "node:assert/strict";
import { buildTestGuest } from "./guest/build.ts";
import { guestReport, HAVE_KVM, runLauncher } from "./helpers/launcher.ts";

Deno.test({
  name: "virtio-rng: the guest driver gets random bytes through a virtqueue and an interrupt",
  ignore: !HAVE_KVM,
  async fn() {
    const guest = await buildTestGuest();
    const run = await runLauncher(["--no-acpi", "--rng", "64", guest]);
    assert.equal(run.code, 0, run.stderr);
    const r = guestReport(run.stdout);
    assert.deepEqual(r.get("CMDLINE"), [
      "virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6",
    ], "the rng, then the console the launcher always adds");
    assert.deepEqual(r.get("VIRTIO-COUNT"), ["2"]);
    assert.deepEqual(r.get("RNG-INIT"), ["0"]);
    const bufs = (r.get("RNG") ?? []).map((l) => l.split(" "));
    assert.equal(bufs.length, 2);
    for (const [len, hex] of bufs) {
      assert.equal(len, "32");
      assert.match(hex!, /^[0-9a-f]{64}$/);
      assert.notEqual(hex, "0".repeat(64));
    }
    assert.notEqual(bufs[0]![1], bufs[1]![1], "two requests, two different answers");
    assert.ok(Number(r.get("RNG-IRQS")?.[0]) >= 1, "completions arrived as interrupts");
  },
});
