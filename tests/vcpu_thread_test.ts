/*T:232 The vCPU thread's side of stopping, without KVM (L:415). A
 * Worker still loading its modules when halt()'s bound runs out has not
 * touched the vCPU and never will: the shared entry word is claimed for
 * "never", halt() reports the vCPU out (so the machine releases everything
 * rather than keeping it for a thread that does not exist), and `done`
 * says the vCPU stopped. A Worker that did begin claims the word first.
 * The "vCPU" here is an eventfd, on which KVM_RUN fails at once, and
 * kvm_run is a plain buffer, so stop()'s writes land somewhere real. :*/

import assert from "node:assert/strict";
import { CONTROL, ENTRY, VcpuThread } from "../lib/vcpu_thread.ts";
import type { VcpuInit } from "../lib/vcpu_protocol.ts";
import { KVM_RUN } from "../lib/kvm/structs.ts";
import { Serial8250 } from "../lib/devices/serial.ts";
import { I8042 } from "../lib/devices/i8042.ts";
import { MailboxServer } from "../lib/virtio/mmio/proxy.ts";
import { bufferAddress, close, eventfd } from "../lib/sys/calls.ts";

/** A VcpuInit whose vCPU is an eventfd and whose kvm_run is `run`. */
function fakeInit(run: Uint8Array<ArrayBuffer>, fd: number): VcpuInit {
  return {
    id: 0,
    vcpuFd: fd,
    vmFd: fd,
    runAddress: bufferAddress(run).toString(),
    runSize: run.byteLength,
    consoleFd: 2,
    serial: Serial8250.sharedState(),
    i8042: I8042.sharedState(),
    spaceFd: fd,
    control: new SharedArrayBuffer(16),
    virtio: [],
    mailbox: MailboxServer.shared(),
    mailboxFd: fd,
    verbose: false,
    acpi: false,
  };
}

// The kick's signal listener stays for the life of the process, by design (L:410).
const LISTENER = { sanitizeOps: false, sanitizeResources: false };

Deno.test({
  ...LISTENER,
  name: "vcpu thread: halt() on a Worker that has not begun: it never begins, the vCPU counts as out",
  async fn() {
    const fd = eventfd();
    const run = new Uint8Array(KVM_RUN.size);
    try {
      const init = fakeInit(run, fd);
      const thread = VcpuThread.spawn();
      const started = thread.start(init);
      assert.equal(await thread.halt(0), true, "a Worker that never began is no reason to keep anything");
      assert.deepEqual(await thread.done, { end: "stopped", clean: true, reason: "stopped", exits: 0 });
      await started;
      const control = new Int32Array(init.control);
      assert.equal(Atomics.load(control, CONTROL.ENTRY), ENTRY.NEVER);
      assert.equal(Atomics.load(control, CONTROL.STOP), 1);
      assert.equal(run[KVM_RUN.fields.immediate_exit.offset], 1, "stop() set immediate_exit");
    } finally {
      close(fd);
    }
  },
});

Deno.test({
  ...LISTENER,
  name: "vcpu thread: a Worker that began claims the entry word; halt() after it ended says out",
  async fn() {
    const fd = eventfd();
    const run = new Uint8Array(KVM_RUN.size);
    try {
      const init = fakeInit(run, fd);
      const thread = VcpuThread.spawn();
      await thread.start(init);
      const exit = await thread.done;
      assert.equal(exit.clean, false);
      assert.match(exit.reason, /^KVM_RUN failed: ENOTTY/);
      assert.equal(Atomics.load(new Int32Array(init.control), CONTROL.ENTRY), ENTRY.BEGUN);
      assert.equal(await thread.halt(0), true);
    } finally {
      close(fd);
    }
  },
});
