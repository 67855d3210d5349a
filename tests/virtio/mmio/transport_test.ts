/*T:651 The virtio-mmio transport, register by register, as the spec's
 * "MMIO Device Register Layout" (version 2) describes it: what the identity
 * registers read, how features are negotiated in 32-bit pages, which status
 * transitions are granted, what a reset takes back, how queues are set up
 * and refused, and where a QueueNotify write goes. Every check reads the
 * registers back as a driver would, and what the device did is read where
 * the guest would see it: in the used ring and on the irqfd.
 *
 * A queue the driver gets wrong (size 0, above QueueNumMax or not a power
 * of two; a ring misaligned or not inside RAM) is refused both ways: it
 * never reads back ready, and the device is failed with DEVICE_NEEDS_RESET
 * and a message naming the queue and the rule, so a driver that does not
 * read back cannot go on with it either. :*/

import assert from "node:assert/strict";
import { bit, VIRTIO_F, VIRTIO_ID, VIRTIO_STATUS } from "../../../lib/virtio/device.ts";
import { MMIO_INT, MMIO_MAGIC, MMIO_REG, MMIO_VENDOR } from "../../../lib/virtio/mmio/regs.ts";
import { MailboxClient, MailboxServer, MmioProxy } from "../../../lib/virtio/mmio/proxy.ts";
import { bufferAddress, POLL, pollOne, readAt } from "../../../lib/sys/calls.ts";
import { TestDriver } from "../driver.ts";
import { DRIVER_FEATURES, MmioRig, type MmioRigOptions } from "./rig.ts";

const R = MMIO_REG;
const S = VIRTIO_STATUS;
const ALL = S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK | S.DRIVER_OK;

function withRig(body: (rig: MmioRig) => void | Promise<void>, options: MmioRigOptions = {}): () => Promise<void> {
  return async () => {
    await using rig = new MmioRig(options);
    await body(rig);
  };
}

function driver(rig: MmioRig, size = 16): TestDriver {
  return new TestDriver(rig.mem, { base: 0x1000, size, eventIdx: true });
}

/** The doorbell's eventfd counter, read (and so cleared) without blocking. */
function rings(fd: number): number {
  const counter = new BigUint64Array(1);
  return readAt(fd, bufferAddress(counter), 8) === 8 ? Number(counter[0]) : 0;
}

Deno.test(
  "mmio: identity registers read magic, version 2, the device id and our vendor id; only aligned dwords answer",
  withRig((rig) => {
    assert.equal(rig.r(R.MAGIC), 0x74726976);
    assert.equal(rig.r(R.MAGIC), MMIO_MAGIC);
    assert.equal(rig.r(R.VERSION), 2);
    assert.equal(rig.r(R.DEVICE_ID), VIRTIO_ID.RNG);
    assert.equal(rig.r(R.VENDOR_ID), MMIO_VENDOR);
    assert.equal(rig.transport.read(R.MAGIC, 1), 0, "a byte read of a control register reads 0");
    assert.equal(rig.transport.read(R.MAGIC + 1, 4), 0, "an unaligned read reads 0");
    assert.equal(rig.transport.read(0xffe, 4), 0, "a read past the window reads 0");
    const proxy = new MmioProxy("rng", 0, rig.image, new MailboxClient(MailboxServer.shared(), -1));
    for (let offset = 0; offset < 0x110; offset++) {
      for (const size of [1, 2, 4, 8]) {
        assert.equal(proxy.read(offset, size), rig.transport.read(offset, size), `0x${offset.toString(16)}/${size}`);
      }
    }
  }),
);

Deno.test(
  "mmio: device features come in 32-bit pages with VERSION_1, EVENT_IDX and INDIRECT_DESC added",
  withRig((rig) => {
    const page = (sel: number) => {
      rig.w(R.DEVICE_FEATURES_SEL, sel);
      return rig.r(R.DEVICE_FEATURES);
    };
    assert.equal(page(0), (1 << VIRTIO_F.INDIRECT_DESC) | (1 << VIRTIO_F.EVENT_IDX), "rng offers no bits of its own");
    assert.equal(page(1), 1 << (VIRTIO_F.VERSION_1 - 32));
    assert.equal(page(2), 0, "pages past the second are empty");
    assert.equal(page(0xffffffff), 0);
    assert.equal(rig.negotiate(), S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK);
    assert.equal(rig.transport.features, DRIVER_FEATURES);
    assert.deepEqual(rig.device.asked, [DRIVER_FEATURES], "the device was asked about exactly what was written");
    rig.writeFeatures(bit(VIRTIO_F.VERSION_1));
    assert.equal(rig.transport.features, DRIVER_FEATURES, "DriverFeatures is frozen once FEATURES_OK is set");
  }),
);

Deno.test(
  "mmio: FEATURES_OK is refused without VERSION_1, with bits not offered, or when the device says no",
  async (t) => {
    const cases: [string, bigint, MmioRigOptions, RegExp | undefined][] = [
      ["no VERSION_1", bit(VIRTIO_F.EVENT_IDX), {}, /VERSION_1/],
      ["a bit not offered", DRIVER_FEATURES | 1n, {}, /do not offer/],
      ["a high bit not offered", DRIVER_FEATURES | bit(VIRTIO_F.RING_PACKED), {}, /do not offer/],
      ["the device refuses", DRIVER_FEATURES, { recorder: { accept: () => false } }, undefined],
    ];
    for (const [name, features, options, log] of cases) {
      await t.step(
        name,
        withRig((rig) => {
          const status = rig.negotiate(features);
          assert.equal(status, S.ACKNOWLEDGE | S.DRIVER, "FEATURES_OK does not read back");
          if (log !== undefined) assert.match(rig.logText(), log);
          else assert.deepEqual(rig.device.asked, [features], "the device was asked, and said no");
          rig.w(R.STATUS, status | S.DRIVER_OK);
          assert.equal(rig.status, status, "DRIVER_OK needs FEATURES_OK");
          assert.equal(rig.device.activations, 0);
        }, options),
      );
    }
  },
);

Deno.test(
  "mmio: status bits are granted only in order, never cleared but by reset, never NEEDS_RESET from the driver",
  withRig(async (rig) => {
    rig.w(R.STATUS, S.ACKNOWLEDGE);
    rig.writeFeatures(DRIVER_FEATURES);
    rig.w(R.STATUS, S.ACKNOWLEDGE | S.FEATURES_OK);
    assert.equal(rig.status, S.ACKNOWLEDGE, "FEATURES_OK without DRIVER is refused");
    rig.w(R.STATUS, S.ACKNOWLEDGE | S.NEEDS_RESET);
    assert.equal(rig.status, S.ACKNOWLEDGE, "the driver cannot set DEVICE_NEEDS_RESET");
    rig.w(R.STATUS, S.ACKNOWLEDGE | S.DRIVER | S.DRIVER_OK);
    assert.equal(rig.status, S.ACKNOWLEDGE | S.DRIVER, "DRIVER_OK before FEATURES_OK is refused");
    rig.w(R.STATUS, S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK);
    assert.equal(rig.status, S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK);
    const d = driver(rig);
    assert.equal(rig.setupQueue(0, d), 1);
    rig.w(R.STATUS, ALL);
    assert.equal(rig.status, ALL);
    assert.equal(rig.device.activations, 1);
    assert.ok(rig.device.sessions[0] !== undefined, "the device got queue 0");
    rig.w(R.STATUS, S.ACKNOWLEDGE | S.DRIVER);
    assert.equal(rig.status, ALL, "bits the driver drops stay set");
    rig.w(R.STATUS, ALL);
    assert.equal(rig.device.activations, 1, "DRIVER_OK again does not activate twice");
    rig.w(R.STATUS, ALL | S.FAILED);
    assert.equal(rig.status, ALL | S.FAILED);
    assert.equal(rig.device.resets, 1, "FAILED stops the device");
    d.add([], [8]);
    await rig.kick(0);
    assert.equal(d.used().length, 0, "a failed device serves nothing");
    assert.equal(rig.interrupts, 0);

    rig.negotiate();
    rig.w(R.STATUS, S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK | S.FAILED);
    rig.w(R.STATUS, ALL | S.FAILED);
    assert.equal(rig.status & S.DRIVER_OK, 0, "no DRIVER_OK after FAILED");
    rig.w(R.STATUS, S.ACKNOWLEDGE | S.FEATURES_OK | S.DRIVER_OK);
    rig.w(R.STATUS, 0);
    assert.equal(rig.status, 0, "0 resets");
  }),
);

Deno.test(
  "mmio: writing 0 to Status takes back queues, features, interrupts and selectors, and resets the device",
  withRig(async (rig) => {
    const d = driver(rig);
    const first = d.add([], [32]);
    assert.equal(rig.bringUp(d), ALL);
    assert.deepEqual(d.used().map((u) => [u.id, u.len]), [[first, 32]], "activation served the posted buffer");
    assert.equal(rig.r(R.INTERRUPT_STATUS), MMIO_INT.VRING);
    assert.equal(rig.interrupts, 1, "and raised the irqfd once");
    rig.w(R.DEVICE_FEATURES_SEL, 1);
    rig.w(R.QUEUE_SEL, 3);
    rig.w(R.STATUS, 0);
    assert.equal(rig.device.resets, 1, "the device's reset() ran");
    assert.equal(rig.status, 0);
    assert.equal(rig.r(R.INTERRUPT_STATUS), 0);
    assert.equal(rig.transport.features, 0n);
    assert.equal(rig.r(R.DEVICE_FEATURES), (1 << VIRTIO_F.INDIRECT_DESC) | (1 << VIRTIO_F.EVENT_IDX), "sel back to 0");
    assert.equal(rig.r(R.QUEUE_NUM_MAX), 256, "QueueSel back to 0");
    assert.equal(rig.r(R.QUEUE_READY), 0);
    assert.equal(rig.r(R.QUEUE_NUM), 0);
    for (const reg of [R.QUEUE_DESC_LOW, R.QUEUE_DESC_HIGH, R.QUEUE_AVAIL_LOW, R.QUEUE_USED_HIGH]) {
      assert.equal(rig.r(reg), 0);
    }
    const second = d.add([], [32]);
    await rig.kick(0);
    assert.equal(rings(rig.doorbells[0]!), 0, "a QueueNotify after reset rings no doorbell");
    assert.equal(d.used().length, 0, "and nothing is served");
    assert.deepEqual(d.writableData(second), new Uint8Array(32), "or written");
    assert.equal(rig.interrupts, 1);

    rig.negotiate();
    rig.w(R.QUEUE_NUM, 16);
    rig.w(R.QUEUE_READY, 1);
    rig.w(R.STATUS, ALL);
    const session = rig.device.sessions[0];
    assert.ok(session !== undefined);
    assert.deepEqual(session.layout, { size: 16, desc: 0n, avail: 0n, used: 0n }, "ring addresses were cleared");
    assert.deepEqual(session.start, { lastAvailIdx: 0, usedIdx: 0 });
    assert.equal(session.doorbell, rig.doorbells[0]);
    assert.equal(session.interrupt.irqfd, rig.irqfd);
    assert.equal(d.used().length, 0, "the old ring is not looked at");
  }),
);

Deno.test(
  "mmio: a QueueNotify write that reaches the transport rings that queue's doorbell, as KVM's ioeventfd would",
  withRig(async (rig) => {
    const d = driver(rig);
    const doorbell = rig.doorbells[0]!;
    rig.negotiate();
    rig.w(R.QUEUE_NOTIFY, 0);
    assert.equal(rings(doorbell), 0, "not before the queue is ready");
    assert.equal(rig.setupQueue(0, d), 1);
    for (
      const [offset, size, value] of [[R.QUEUE_NOTIFY, 4, 1], [R.QUEUE_NOTIFY, 4, 0x10000], [R.QUEUE_NOTIFY, 2, 0]]
    ) {
      rig.transport.write(offset!, size!, value!);
    }
    assert.equal(rings(doorbell), 0, "not for a queue that does not exist, nor for a 2-byte write");
    rig.w(R.QUEUE_NOTIFY, 0);
    rig.w(R.QUEUE_NOTIFY, 0);
    assert.equal(rings(doorbell), 2, "once per write, before DRIVER_OK too (nobody is listening yet)");

    rig.w(R.STATUS, ALL);
    assert.equal(rig.interrupts, 0, "nothing was posted");
    const head = d.add([], [16]);
    await rig.kick(0);
    assert.equal(pollOne(doorbell, POLL.IN, 0), 0, "the device drained its doorbell");
    assert.deepEqual(d.used().map((u) => [u.id, u.len]), [[head, 16]], "and served the ring");
    assert.equal(rig.r(R.INTERRUPT_STATUS), MMIO_INT.VRING);
    assert.equal(rig.interrupts, 1);
  }),
);

Deno.test(
  "mmio: queue registers per QueueSel; QueueNumMax 0 for a queue that does not exist",
  withRig(async (rig) => {
    rig.w(R.QUEUE_SEL, 0);
    assert.equal(rig.r(R.QUEUE_NUM_MAX), 256);
    rig.w(R.QUEUE_NUM, 16);
    assert.equal(rig.r(R.QUEUE_NUM), 16);
    rig.w(R.QUEUE_READY, 1);
    assert.equal(rig.r(R.QUEUE_READY), 0, "QueueReady before FEATURES_OK is ignored");
    assert.equal(rig.status & S.NEEDS_RESET, 0);
    rig.w(R.QUEUE_SEL, 1);
    assert.equal(rig.r(R.QUEUE_NUM_MAX), 0);
    rig.w(R.QUEUE_NUM, 16);
    assert.equal(rig.r(R.QUEUE_NUM), 0);
    rig.negotiate();
    rig.w(R.QUEUE_SEL, 1);
    rig.w(R.QUEUE_READY, 1);
    assert.equal(rig.r(R.QUEUE_READY), 0);
    assert.equal(rig.status & S.NEEDS_RESET, 0);

    const d = driver(rig);
    assert.equal(rig.setupQueue(0, d), 1);
    rig.w(R.QUEUE_NUM, 8);
    assert.equal(rig.r(R.QUEUE_NUM), 16, "a ready queue's size cannot change");
    rig.w(R.QUEUE_READY, 0);
    assert.equal(rig.r(R.QUEUE_READY), 0, "before DRIVER_OK a queue can be taken back");
    assert.equal(rig.setupQueue(0, d), 1);
    rig.w(R.STATUS, ALL);
    rig.w(R.QUEUE_READY, 0);
    assert.equal(rig.r(R.QUEUE_READY), 1, "after DRIVER_OK the device holds its queues");
    const head = d.add([], [8]);
    await rig.kick(0);
    assert.deepEqual(d.used().map((u) => u.id), [head], "and still serves them");
    assert.equal(rig.interrupts, 1);
  }),
);

Deno.test("mmio: a bad queue size or a ring outside RAM fails the device and the queue never goes ready", async (t) => {
  const MiB = 1024 * 1024;
  const cases: [string, (rig: MmioRig) => void, RegExp][] = [
    ["size 0", (rig) => rig.w(R.QUEUE_NUM, 0), /queue 0 size 0 is not a power of two from 1 to 256/],
    ["size above QueueNumMax", (rig) => rig.w(R.QUEUE_NUM, 512), /queue 0 size 512/],
    ["size not a power of two", (rig) => rig.w(R.QUEUE_NUM, 3), /queue 0 size 3/],
    ["descriptors past RAM", (rig) => rig.w(R.QUEUE_DESC_LOW, MiB - 0x80), /descriptor table .*\[ring-out-of-ram\]/],
    ["used ring above 4 GiB", (rig) => rig.w(R.QUEUE_USED_HIGH, 1), /used ring at 0x1.*\[ring-out-of-ram\]/],
    ["avail ring misaligned", (rig) => rig.w(R.QUEUE_AVAIL_LOW, 0x1101), /\[ring-alignment\]/],
  ];
  for (const [name, spoil, message] of cases) {
    await t.step(
      name,
      withRig((rig) => {
        const d = driver(rig);
        rig.negotiate();
        const { desc, avail, used } = d.layout;
        rig.w(R.QUEUE_SEL, 0);
        rig.w(R.QUEUE_NUM, 16);
        rig.w(R.QUEUE_DESC_LOW, Number(desc));
        rig.w(R.QUEUE_AVAIL_LOW, Number(avail));
        rig.w(R.QUEUE_USED_LOW, Number(used));
        spoil(rig);
        rig.w(R.QUEUE_READY, 1);
        assert.equal(rig.r(R.QUEUE_READY), 0, "the queue did not go ready");
        assert.equal(rig.status, S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK | S.NEEDS_RESET);
        assert.match(rig.logText(), message);
        assert.equal(rig.interrupts, 0, "no interrupt before DRIVER_OK");
        assert.equal(rig.r(R.INTERRUPT_STATUS), 0);
        rig.w(R.STATUS, ALL | S.NEEDS_RESET);
        assert.equal(rig.status & S.DRIVER_OK, 0, "a failed device cannot be started");
        assert.equal(rig.device.activations, 0);
      }),
    );
  }
});
