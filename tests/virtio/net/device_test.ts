/*T:560 The network device on the bench (harness.ts): TestDriver plays
 * the guest's driver, and the wire is a real tap in a namespace of the
 * test's own, so the far end is the host kernel itself. A frame the device
 * transmits must reach the kernel byte for byte (a packet socket watches),
 * and the kernel's answer (its ARP reply) must come back through the
 * receive queue, header and all. Doorbells are rung on their eventfds and
 * served by the device's data-path thread; interrupts are read off the
 * irqfds. :*/

import assert from "node:assert/strict";
import { bit, INTERRUPT_CAUSE } from "../../../lib/virtio/device.ts";
import { NetDevice } from "../../../lib/virtio/net/device.ts";
import { NET_HDR_SIZE, VIRTIO_NET_F } from "../../../lib/virtio/net/hdr.ts";
import { RX_SMALL } from "../../../lib/virtio/net/rx.ts";
import { netnsProblem } from "./netns.ts";
import { bench, Capture, makeQueues, withHeader } from "./harness.ts";
import { arpRequest, be16, sameBytes, split } from "./frames.ts";

const problem = await netnsProblem();
if (problem !== undefined) console.warn(`net_test: tap tests skipped: ${problem}`);

const MAC = new Uint8Array([0x02, 0x00, 0x0a, 0x07, 0x00, 0x02]);

Deno.test({
  name: "net: frames in any layout reach the host kernel intact, and its ARP replies come back",
  ignore: problem !== undefined,
  async fn() {
    await bench(async (ns, b) => {
      const [dev, cap] = ns.enter(() => [NetDevice.open("10.7.3.1", { mac: MAC }), new Capture()] as const);
      try {
        const { rx, tx } = makeQueues(b.mem, 16, false);
        for (let i = 0; i < 4; i++) rx.add([], [RX_SMALL]);
        b.activate(dev, bit(VIRTIO_NET_F.MAC), rx, tx);
        await b.settle();
        cap.drain();
        const layouts: Array<[string, (b: Uint8Array) => Uint8Array[], boolean]> = [
          ["header and frame apart", (b) => split(b, NET_HDR_SIZE), false],
          ["one buffer", (b) => [b], false],
          ["header straddling two buffers", (b) => split(b, 5, 20, 30), false],
          ["indirect, with an empty buffer", (b) => [...split(b, 12), new Uint8Array(0)], true],
        ];
        let rxInterrupts = 0;
        for (const [i, [what, cut, indirect]] of layouts.entries()) {
          const frame = arpRequest(MAC, [10, 7, 3, 2 + i], [10, 7, 3, 1]);
          const head = tx.add(cut(withHeader(frame)), [], { indirect });
          await b.kick(1);
          assert.deepEqual(tx.used(), [{ id: head, len: 0 }], what);
          assert.equal(b.interrupts(1), 1, `${what}: one transmit interrupt for the doorbell`);
          assert.deepEqual(cap.next(2000), frame, `${what}: the kernel got the frame as posted`);
          await b.until(() => rx.usedIdx() === i + 1, `the ARP reply to ${what}`);
          cap.drain(); // the packet socket saw the reply leave, too
          await b.until(() => (rxInterrupts += b.interrupts(0)) >= i + 1, "the receive interrupt");
          const [u] = rx.used();
          const got = rx.writableData(u!.id);
          assert.equal(u!.len, NET_HDR_SIZE + 42);
          assert.equal(got[10], 1, "num_buffers = 1");
          const reply = got.subarray(NET_HDR_SIZE);
          assert.deepEqual(reply.subarray(0, 6), MAC, "sent to us");
          assert.equal(be16(reply, 12), 0x0806);
          assert.equal(be16(reply, 20), 2, "an ARP reply");
          assert.deepEqual([...reply.subarray(28, 32)], [10, 7, 3, 1]);
          assert.deepEqual([...reply.subarray(38, 42)], [10, 7, 3, 2 + i]);
        }
        assert.equal(rxInterrupts, 4, "one receive interrupt per reply");
        assert.equal(b.takeStatus(), INTERRUPT_CAUSE.USED, "the status word says why");
        assert.deepEqual(b.failures, []);
        assert.deepEqual(dev.txTotals, { sent: 4, dropped: 0 });
      } finally {
        dev.close();
        cap.close();
      }
    });
  },
});

Deno.test({
  name: "net: with no receive buffers the tap is not watched; the guest's doorbell resumes it",
  ignore: problem !== undefined,
  async fn() {
    await bench(async (ns, b) => {
      const [dev, cap] = ns.enter(() => [NetDevice.open("10.7.3.1", { mac: MAC }), new Capture()] as const);
      try {
        const { rx, tx } = makeQueues(b.mem, 16, false);
        b.activate(dev, bit(VIRTIO_NET_F.MAC), rx, tx);
        await b.settle();
        assert.equal(dev.listening, false, "starved from the start: the tap is not watched");
        assert.equal(rx.usedFlags(), 0, "and the device asks for a doorbell on the receive queue");
        tx.add([withHeader(arpRequest(MAC, [10, 7, 3, 2], [10, 7, 3, 1]))], []);
        await b.kick(1);
        // The packet socket sees our request arrive, then the kernel's reply leave.
        for (let i = 0; i < 3; i++) {
          const seen = cap.next(2000);
          if (seen === undefined || !sameBytes(seen.subarray(6, 12), MAC)) break;
        }
        await b.settle();
        assert.equal(rx.usedIdx(), 0, "the reply waits in the kernel");
        assert.equal(dev.listening, false);
        rx.add([], [RX_SMALL]);
        rx.add([], [RX_SMALL]);
        assert.ok(rx.needsNotify());
        await b.kick(0);
        await b.until(() => rx.usedIdx() === 1, "the waiting reply, once the guest rang");
        await b.settle();
        assert.equal(dev.listening, true, "a buffer is left: the tap is watched for input");
        assert.equal(rx.needsNotify(), false, "no more doorbells wanted while it has buffers");
        tx.add([withHeader(arpRequest(MAC, [10, 7, 3, 3], [10, 7, 3, 1]))], []);
        await b.kick(1);
        await b.until(() => rx.usedIdx() === 2, "the second reply, delivered by the data-path thread");
        await b.settle();
        assert.equal(dev.listening, false, "out of buffers again: unwatched");
        assert.deepEqual(b.failures, []);
      } finally {
        dev.close();
        cap.close();
      }
    });
  },
});
