/*T:660 The transport against a random driver. Each run is a sequence of
 * register accesses anywhere in the 4 KiB window (aligned or not, 1, 2, 4
 * or 8 bytes, any value), doorbells, whole bring-ups with random features
 * and ring addresses (some in RAM, some past its end, some misaligned), and
 * calls the device makes back (fail, configChanged), from a context that
 * may be stale. Four chains are already posted in guest memory, so a queue
 * that goes live at the right place has work to do.
 *
 * Whatever happens, nothing may throw out of the transport; the identity
 * registers must still read right and the vCPU thread's proxy must read
 * what the transport reads; the status must never show a bit without the
 * ones the spec puts before it; the device must never be activated twice
 * without a reset in between; and guest memory may change only inside the
 * used ring of a queue the device was given and the writable buffers of
 * chains it popped. :*/

import assert from "node:assert/strict";
import fc from "fast-check";
import { GuestMemory } from "../../../lib/memory.ts";
import { EventLoop } from "../../../lib/eventloop.ts";
import { bit, VIRTIO_F, VIRTIO_ID, VIRTIO_STATUS } from "../../../lib/virtio/device.ts";
import { MMIO_MAGIC, MMIO_REG, MMIO_VENDOR, MMIO_WINDOW } from "../../../lib/virtio/mmio/regs.ts";
import { MailboxClient, MailboxServer, MmioProxy } from "../../../lib/virtio/mmio/proxy.ts";
import type { Segment } from "../../../lib/virtio/queue.ts";
import { TestDriver } from "../driver.ts";
import { DRIVER_FEATURES, MmioRig } from "./rig.ts";

const RAM = 64 * 1024;
const R = MMIO_REG;
const S = VIRTIO_STATUS;
const REGS = Object.values(R).filter((r) => r !== R.CONFIG);

type Op =
  | { k: "write"; offset: number; size: number; value: number }
  | { k: "read"; offset: number; size: number }
  | { k: "notify"; queue: number }
  | { k: "bringUp"; features: bigint; layout: number; size: number; driverOk: boolean }
  | { k: "fail" | "configChanged" };

/** A fixed guest: one queue of 16 at 0x1000 with four chains posted, buffers from 0x4000. */
function layOut(mem: GuestMemory): TestDriver {
  const d = new TestDriver(mem, { base: 0x1000, size: 16, dataBase: 0x4000, dataSize: 0x4000 });
  d.add([], [16]);
  d.add([], [100, 7]);
  d.add([Uint8Array.of(1, 2, 3)], [64]);
  d.add([], [32, 32], { indirect: true });
  return d;
}

function values(d: TestDriver): fc.Arbitrary<number> {
  const { desc, avail, used } = d.layout;
  const pool = [0, 1, 2, 3, 4, 7, 8, 11, 15, 16, 0x40, 0x80, 0x8f, 256, 512, 0xffffffff, 0x1001, RAM - 8, RAM];
  pool.push(Number(desc), Number(avail), Number(used), Number(DRIVER_FEATURES & 0xffffffffn));
  return fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...pool) }, { weight: 1, arbitrary: fc.nat(0xffffffff) });
}

function ops(d: TestDriver): fc.Arbitrary<Op[]> {
  const value = values(d);
  const size = fc.constantFrom(1, 2, 4, 8);
  const anyOffset = fc.oneof(fc.nat(MMIO_WINDOW - 1), fc.constantFrom(...REGS.map((r) => r + 1)));
  const features = fc.oneof(
    { weight: 3, arbitrary: fc.constant(DRIVER_FEATURES) },
    { weight: 1, arbitrary: fc.constantFrom(bit(VIRTIO_F.VERSION_1), 0n, DRIVER_FEATURES | 1n) },
    { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }) },
  );
  const op: fc.Arbitrary<Op> = fc.oneof(
    {
      weight: 6,
      arbitrary: fc.record({ k: fc.constant("write"), offset: fc.constantFrom(...REGS), size: fc.constant(4), value }),
    },
    {
      weight: 2,
      arbitrary: fc.record({ k: fc.constant("write"), offset: anyOffset, size, value: fc.nat(2 ** 53 - 1) }),
    },
    { weight: 2, arbitrary: fc.record({ k: fc.constant("read"), offset: anyOffset, size }) },
    { weight: 2, arbitrary: fc.record({ k: fc.constant("notify"), queue: fc.oneof(fc.nat(2), fc.nat(0xffffffff)) }) },
    {
      weight: 3,
      arbitrary: fc.record({
        k: fc.constant("bringUp"),
        features,
        layout: fc.nat(4),
        size: fc.constantFrom(16, 16, 8, 1, 256, 3),
        driverOk: fc.boolean(),
      }),
    },
    { weight: 1, arbitrary: fc.record({ k: fc.constantFrom<"fail" | "configChanged">("fail", "configChanged") }) },
  );
  return fc.array(op, { minLength: 1, maxLength: 40 });
}

/** Ring addresses for a bring-up: the posted queue's, or shifted, misaligned, or past RAM. */
function addresses(d: TestDriver, choice: number): [number, number, number] {
  const { desc, avail, used } = d.layout;
  const good: [number, number, number] = [Number(desc), Number(avail), Number(used)];
  switch (choice) {
    case 1:
      return [0x8000, 0x8100, 0x8200];
    case 2:
      return [good[0], good[1] + 1, good[2]];
    case 3:
      return [good[0], good[1], RAM - 8];
    default:
      return good;
  }
}

function apply(rig: MmioRig, d: TestDriver, op: Op): void {
  const t = rig.transport;
  switch (op.k) {
    case "write":
      t.write(op.offset, op.size, op.value);
      break;
    case "read":
      t.read(op.offset, op.size);
      break;
    case "notify":
      t.notify(op.queue);
      break;
    case "bringUp": {
      rig.negotiate(op.features);
      const [desc, avail, used] = addresses(d, op.layout);
      rig.w(R.QUEUE_SEL, 0);
      rig.w(R.QUEUE_NUM, op.size);
      rig.w(R.QUEUE_DESC_LOW, desc);
      rig.w(R.QUEUE_AVAIL_LOW, avail);
      rig.w(R.QUEUE_USED_LOW, used);
      rig.w(R.QUEUE_READY, 1);
      if (op.driverOk) rig.w(R.STATUS, S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK | S.DRIVER_OK);
      break;
    }
    case "fail":
      rig.device.ctx?.fail("fuzz [fuzz-rule]");
      break;
    case "configChanged":
      rig.device.ctx?.configChanged();
      break;
  }
}

function checkRegisters(rig: MmioRig, proxy: MmioProxy, op: Op): void {
  const t = rig.transport;
  assert.equal(t.read(R.MAGIC, 4), MMIO_MAGIC);
  assert.equal(t.read(R.VERSION, 4), 2);
  assert.equal(t.read(R.DEVICE_ID, 4), VIRTIO_ID.RNG);
  assert.equal(t.read(R.VENDOR_ID, 4), MMIO_VENDOR);
  if (op.k === "read") assert.equal(proxy.read(op.offset, op.size), t.read(op.offset, op.size));
  for (const reg of [R.STATUS, R.QUEUE_READY, R.INTERRUPT_STATUS, R.DEVICE_FEATURES, R.QUEUE_NUM_MAX]) {
    assert.equal(proxy.read(reg, 4), t.read(reg, 4));
  }
  const status = t.read(R.STATUS, 4);
  assert.equal(status & ~0xff, 0);
  if (status & S.DRIVER_OK) assert.ok(status & S.FEATURES_OK, `status 0x${status.toString(16)}`);
  if (status & S.FEATURES_OK) {
    assert.equal(status & (S.ACKNOWLEDGE | S.DRIVER), S.ACKNOWLEDGE | S.DRIVER, `status 0x${status.toString(16)}`);
    assert.equal(t.features & bit(VIRTIO_F.VERSION_1), bit(VIRTIO_F.VERSION_1));
    assert.equal(t.features & ~DRIVER_FEATURES, 0n, "only offered features are accepted");
  }
  if (status & S.NEEDS_RESET) assert.match(rig.logText(), /^virtio-rng: .*; device needs reset$/m);
  assert.equal(t.read(R.INTERRUPT_STATUS, 4) & ~3, 0);
  const live = rig.device.activations - rig.device.resets;
  assert.ok(live === 0 || live === 1, `${rig.device.activations} activations, ${rig.device.resets} resets`);
}

Deno.test("mmio fuzz: random register traffic never throws, keeps the image sane, writes only used rings and buffers", () => {
  const mem = GuestMemory.create(RAM);
  const loop = new EventLoop();
  const d = layOut(mem);
  const snapshot = mem.bytes.slice();
  const words = new BigUint64Array(mem.bytes.buffer, mem.bytes.byteOffset, RAM / 8);
  const before = new BigUint64Array(snapshot.buffer);
  try {
    fc.assert(
      fc.property(ops(d), (run) => {
        mem.bytes.set(snapshot);
        const allowed: Segment[] = [];
        const rig = new MmioRig({
          shared: { mem, loop },
          recorder: { onPop: (_q, chain) => allowed.push(...chain.writable) },
        });
        const proxy = new MmioProxy("rng", 0, rig.image, new MailboxClient(MailboxServer.shared(), -1));
        let queues = rig.device.queues;
        try {
          for (const op of run) {
            apply(rig, d, op);
            checkRegisters(rig, proxy, op);
            if (rig.device.queues !== queues) {
              queues = rig.device.queues;
              for (const vq of queues) {
                if (vq !== undefined) allowed.push({ addr: Number(vq.layout.used), len: 6 + 8 * vq.size });
              }
            }
          }
        } finally {
          rig.close();
        }
        for (let i = 0; i < words.length; i++) {
          if (words[i] === before[i]) continue;
          for (let b = 8 * i; b < 8 * i + 8; b++) {
            if (mem.bytes[b] === snapshot[b]) continue;
            const ok = allowed.some((s) => b >= s.addr && b < s.addr + s.len);
            assert.ok(ok, `byte 0x${b.toString(16)} changed outside the used rings and popped buffers`);
          }
        }
      }),
      { numRuns: 10_000 },
    );
  } finally {
    loop.close();
    mem.close();
  }
});
