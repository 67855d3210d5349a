/*T:655 When things go wrong. A guest that breaks a rule gets its device
 * marked DEVICE_NEEDS_RESET, with a configuration-change interrupt the
 * driver really receives (the irqfd is written) and one log line naming the
 * device, the queue and the rule; the registers freeze until the driver
 * resets, and a reset brings the device back with a fresh context, the old
 * one no longer able to touch it. An interrupt the host cannot raise is not
 * the guest's fault: it ends the run, through the loop, with one line. :*/

import assert from "node:assert/strict";
import { VIRTIO_STATUS } from "../../../lib/virtio/device.ts";
import { MMIO_INT, MMIO_REG } from "../../../lib/virtio/mmio/regs.ts";
import { VRING_DESC_F_WRITE } from "../../../lib/virtio/queue.ts";
import { close, O, open } from "../../../lib/sys/calls.ts";
import { SysError } from "../../../lib/sys/errno.ts";
import { TestDriver } from "../driver.ts";
import { MmioRig } from "./rig.ts";

const R = MMIO_REG;
const S = VIRTIO_STATUS;
const ALL = S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK | S.DRIVER_OK;

function driver(rig: MmioRig): TestDriver {
  return new TestDriver(rig.mem, { base: 0x1000, size: 16, eventIdx: true });
}

Deno.test("mmio: ctx.fail() sets DEVICE_NEEDS_RESET, logs device and rule, raises a config interrupt; reset recovers", async () => {
  await using rig = new MmioRig();
  const d = driver(rig);
  rig.bringUp(d);
  const ctx = rig.device.ctx!;
  rig.w(R.QUEUE_SEL, 0);
  ctx.fail("virtio-rng queue 0: made up [probe-rule]");
  assert.equal(rig.status, ALL | S.NEEDS_RESET);
  const line = rig.logs.find((l) => l.line.includes("probe-rule"));
  assert.ok(line?.always, rig.logText());
  assert.match(line.line, /^virtio-rng: .*\[probe-rule\]; device needs reset$/);
  assert.equal(rig.interrupts, 1, "the irqfd was written once");
  assert.equal(rig.r(R.INTERRUPT_STATUS), MMIO_INT.CONFIG);
  assert.equal(rig.device.resets, 1, "the device was stopped");
  ctx.fail("again [second]");
  assert.equal(rig.logs.filter((l) => l.line.includes("needs reset")).length, 1, "one failure, one message");
  assert.equal(rig.interrupts, 1, "and one interrupt");
  rig.w(R.QUEUE_SEL, 1);
  assert.equal(rig.r(R.QUEUE_NUM_MAX), 256, "registers other than Status are frozen");
  d.add([], [8]);
  await rig.kick(0);
  assert.equal(d.used().length, 0, "a failed device serves nothing");
  rig.w(R.INTERRUPT_ACK, MMIO_INT.CONFIG);
  assert.equal(rig.r(R.INTERRUPT_STATUS), 0, "InterruptACK still works");

  const d2 = driver(rig);
  const head = d2.add([], [16]);
  assert.equal(rig.bringUp(d2), ALL, "a reset brings it back");
  assert.equal(d2.used()[0]?.id, head);
  ctx.fail("stale [old-context]");
  assert.equal(rig.status, ALL, "the previous activation's context no longer fails the device");
});

Deno.test("mmio: a guest breaking a ring rule ends as DEVICE_NEEDS_RESET naming the queue and the rule", async () => {
  await using rig = new MmioRig();
  const d = driver(rig);
  rig.bringUp(d);
  d.writeDesc(0, { addr: rig.mem.size - 8, len: 16, flags: VRING_DESC_F_WRITE, next: 0 });
  d.publish(0);
  await rig.kick(0);
  assert.equal(rig.status, ALL | S.NEEDS_RESET);
  assert.match(rig.logText(), /^virtio-rng: virtio-rng queue 0: .*\[out-of-ram\]; device needs reset$/m);
  assert.equal(rig.r(R.INTERRUPT_STATUS), MMIO_INT.CONFIG, "a config interrupt, no used-buffer one");
  assert.equal(rig.interrupts, 1);
  assert.equal(d.used().length, 0);
  assert.equal(rig.device.resets, 1);
});

Deno.test("mmio: an irqfd that cannot be written ends the run with one line naming the queue or device and the errno", async (t) => {
  // A descriptor open only for reading: every write to it fails with EBADF, as a closed irqfd's would.
  const irqfd = open("/dev/null", O.RDONLY);
  const check = (e: unknown, who: string) => {
    assert.ok(e instanceof Error);
    assert.equal(e.message, `${who}: cannot raise its interrupt: write on irqfd ${irqfd} failed: EBADF`);
    assert.ok(e.cause instanceof SysError && e.cause.code === "EBADF");
  };
  try {
    await t.step("for used buffers", async () => {
      await using rig = new MmioRig({ irqfd });
      const d = driver(rig);
      rig.bringUp(d);
      d.add([], [8]);
      rig.w(R.QUEUE_NOTIFY, 0);
      check(await rig.failure(), "virtio-rng queue 0");
      assert.equal(d.used().length, 1, "the device answered");
      assert.equal(rig.r(R.INTERRUPT_STATUS), MMIO_INT.VRING, "and set the cause before it tried the irqfd");
      assert.equal(rig.status, ALL, "the host's fault is not the device's: no DEVICE_NEEDS_RESET");
      assert.doesNotMatch(rig.logText(), /needs reset/);
    });
    await t.step("for a config change", async () => {
      await using rig = new MmioRig({ irqfd });
      rig.bringUp(driver(rig));
      rig.transport.configChanged();
      check(await rig.failure(), "virtio-rng");
      assert.equal(rig.r(R.INTERRUPT_STATUS), MMIO_INT.CONFIG);
    });
  } finally {
    close(irqfd);
  }
});
