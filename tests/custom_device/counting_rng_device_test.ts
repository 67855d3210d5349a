// lguest-test-needs: kvm
/*T:241 The example device (examples/counting_rng_device.ts, V:510) is
 * booted the way a user would: its own script, through the Machine API,
 * with the test guest as the kernel. The guest's virtio-rng test posts two
 * 32-byte buffers and prints what came back; the device fills the Nth
 * request with the byte N and the script prints how many requests it
 * served. So the guest must have seen 0x01 * 32, then 0x02 * 32, and the
 * device's count must equal the number of buffers the guest reported. :*/

import assert from "node:assert/strict";
import { buildTestGuest } from "../guest/build.ts";
import { guestReport, HAVE_KVM } from "../helpers/launcher.ts";

const EXAMPLE = new URL("../../examples/counting_rng_device.ts", import.meta.url).pathname;

Deno.test({
  name: "custom device: the example counting entropy device serves the test guest through the Machine API",
  ignore: !HAVE_KVM,
  async fn() {
    const guest = await buildTestGuest();
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", EXAMPLE, guest],
      stdin: "null",
      signal: AbortSignal.timeout(120_000),
    }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, `${stdout}\n${stderr}`);
    const r = guestReport(stdout);
    assert.deepEqual(r.get("VIRTIO-COUNT"), ["1"], "the example device is the only one");
    assert.deepEqual(r.get("RNG-INIT"), ["0"]);
    const bufs = r.get("RNG") ?? [];
    assert.deepEqual(bufs, [`32 ${"01".repeat(32)}`, `32 ${"02".repeat(32)}`], "request N is filled with byte N");
    assert.deepEqual(r.get("DEVICE-REQUESTS"), [String(bufs.length)], "the device counted what the guest got");
    assert.ok(Number(r.get("RNG-IRQS")?.[0]) >= 1, "completions arrived as interrupts");
  },
});
