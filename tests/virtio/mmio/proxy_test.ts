/*T:652 The transport's registers from the other thread, as a vCPU reaches them:
 * a Worker plays the vCPU with the real MmioProxy and MailboxClient, and
 * the main thread serves the mailbox from its event loop into the real
 * transport, exactly as MmioDevices wires it. Reads come from the image
 * without a round trip, an interrupt is acknowledged in place, a byte-wide
 * write to Status changes nothing, and an 8-byte config write arrives with
 * its high half. :*/

import assert from "node:assert/strict";
import { close, eventfd } from "../../../lib/sys/calls.ts";
import { VIRTIO_STATUS } from "../../../lib/virtio/device.ts";
import { MMIO_INT, MMIO_MAGIC, MMIO_REG } from "../../../lib/virtio/mmio/regs.ts";
import { MailboxServer } from "../../../lib/virtio/mmio/proxy.ts";
import { TestDriver } from "../driver.ts";
import { DRIVER_FEATURES, MmioRig } from "./rig.ts";

const R = MMIO_REG;
const S = VIRTIO_STATUS;
const ALL = S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK | S.DRIVER_OK;

const VCPU = `
import { MailboxClient, MmioProxy } from "${new URL("../../../lib/virtio/mmio/proxy.ts", import.meta.url).href}";
self.onmessage = (e) => {
  const { image, mailbox, fd, ops } = e.data;
  const proxy = new MmioProxy("vcpu", 0, image, new MailboxClient(mailbox, fd));
  const reads = [];
  for (const op of ops) {
    if (op.write) proxy.write(op.offset, op.size, op.value);
    else reads.push(proxy.read(op.offset, op.size));
  }
  self.postMessage(reads);
};
`;

type VcpuOp = { write: boolean; offset: number; size: number; value: number };

Deno.test("mmio: a vCPU thread's accesses through MmioProxy and the mailbox reach the transport intact", async () => {
  await using rig = new MmioRig({ recorder: { config: new Uint8Array(16) } });
  const fd = eventfd();
  try {
    const d = new TestDriver(rig.mem, { base: 0x1000, size: 16, eventIdx: true });
    const head = d.add([], [24]);
    const mailbox = MailboxServer.shared();
    rig.serveMailbox(mailbox, fd);
    const url = URL.createObjectURL(new Blob([VCPU], { type: "application/typescript" }));
    const worker = new Worker(url, { type: "module" });
    try {
      const w = (offset: number, value: number, size = 4): VcpuOp => ({ write: true, offset, size, value });
      const r = (offset: number, size = 4): VcpuOp => ({ write: false, offset, size, value: 0 });
      const { desc, avail, used } = d.layout;
      const ops: VcpuOp[] = [
        w(R.STATUS, 0),
        w(R.STATUS, S.ACKNOWLEDGE),
        w(R.STATUS, S.ACKNOWLEDGE | S.DRIVER),
        w(R.DRIVER_FEATURES_SEL, 1),
        w(R.DRIVER_FEATURES, 1),
        w(R.DRIVER_FEATURES_SEL, 0),
        w(R.DRIVER_FEATURES, Number(DRIVER_FEATURES & 0xffffffffn)),
        w(R.STATUS, S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK),
        r(R.STATUS),
        w(R.QUEUE_SEL, 0),
        w(R.QUEUE_NUM, d.size),
        w(R.QUEUE_DESC_LOW, Number(desc)),
        w(R.QUEUE_AVAIL_LOW, Number(avail)),
        w(R.QUEUE_USED_LOW, Number(used)),
        w(R.QUEUE_READY, 1),
        r(R.QUEUE_READY),
        w(R.STATUS, ALL),
        r(R.STATUS),
        r(R.INTERRUPT_STATUS),
        w(R.INTERRUPT_ACK, MMIO_INT.VRING),
        r(R.INTERRUPT_STATUS),
        w(R.STATUS, 0, 1),
        r(R.STATUS),
        w(R.CONFIG + 8, 0x1f_0102_0304_0506, 8),
        r(R.MAGIC),
        r(R.MAGIC, 2),
      ];
      const reads = await new Promise<number[]>((resolve, reject) => {
        worker.onmessage = (e: MessageEvent<number[]>) => resolve(e.data);
        worker.onerror = (e) => {
          e.preventDefault();
          reject(new Error(e.message));
        };
        worker.postMessage({ image: rig.image, mailbox, fd, ops });
      });
      assert.deepEqual(reads, [
        S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK,
        1,
        ALL,
        MMIO_INT.VRING,
        0,
        ALL,
        MMIO_MAGIC,
        0,
      ]);
      assert.deepEqual(d.used().map((u) => [u.id, u.len]), [[head, 24]]);
      assert.equal(rig.interrupts, 1, "the device raised the irqfd for it");
      assert.equal(rig.transport.features, DRIVER_FEATURES);
      assert.deepEqual(rig.device.configWrites, [{ offset: 8, bytes: [6, 5, 4, 3, 2, 1, 0x1f, 0] }]);
    } finally {
      worker.terminate();
      URL.revokeObjectURL(url);
    }
  } finally {
    rig.loop.remove(fd);
    close(fd);
  }
});
