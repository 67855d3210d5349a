/*T:564 What a driver may not do to the network device, and what bounds
 * one turn of it. A chain that breaks a rule on either queue, found at
 * DRIVER_OK or at a doorbell, fails the device with the rule's name and
 * gives nothing back; a failed device hears no more doorbells. And the
 * transmit engine stops after its budget and says so, so the data-path
 * thread looks at the receive side and at a withdrawal between turns: a
 * driver that re-posts each frame the moment it comes back still gets its
 * receive queue served, and a reset still stops the thread at once. :*/

import assert from "node:assert/strict";
import { bit, VIRTIO_F } from "../../../lib/virtio/device.ts";
import { NetDevice } from "../../../lib/virtio/net/device.ts";
import { NET_HDR_SIZE, VIRTIO_NET_F } from "../../../lib/virtio/net/hdr.ts";
import { RX_SMALL } from "../../../lib/virtio/net/rx.ts";
import { NetTx, TX_BUDGET } from "../../../lib/virtio/net/tx.ts";
import { netnsProblem } from "./netns.ts";
import { bench, makeQueues, openUpTap, withHeader } from "./harness.ts";
import { arpRequest } from "./frames.ts";

const problem = await netnsProblem();
if (problem !== undefined) console.warn(`net_rules_test: tap tests skipped: ${problem}`);

const MAC = new Uint8Array([0x02, 0x00, 0x0a, 0x07, 0x00, 0x02]);

Deno.test({
  name: "net: the transmit engine stops after its budget and says more is waiting",
  ignore: problem !== undefined,
  async fn() {
    await bench((ns, b) => {
      const [tap, cap] = openUpTap(ns);
      try {
        const { tx } = makeQueues(b.mem, 16, true);
        const engine = new NetTx(b.mem, tx.queue("net tx"), tap, () => {});
        const frames = [0, 1, 2, 3, 4].map((i) => arpRequest(MAC, [10, 7, 3, 10 + i], [10, 7, 3, 1]));
        for (const fr of frames) tx.add([withHeader(fr)], []);
        cap.drain();
        assert.deepEqual(engine.transmit(2), { used: 2, end: "budget" });
        assert.deepEqual(engine.transmit(2), { used: 2, end: "budget" });
        assert.deepEqual(engine.transmit(2), { used: 1, end: "empty" });
        assert.equal(tx.used().length, 5);
        for (const fr of frames) assert.deepEqual(cap.next(2000), fr, "in order, each once");
        assert.equal(cap.next(0), undefined);
        assert.deepEqual(engine.totals, { sent: 5, dropped: 0 });
      } finally {
        tap.close();
        cap.close();
      }
    });
  },
});

Deno.test({
  name: "net: a rule broken on either queue fails the device and names the rule",
  ignore: problem !== undefined,
  async fn() {
    await bench(async (ns, b) => {
      const dev = ns.enter(() => NetDevice.open("10.7.3.1", { mac: MAC }));
      const mem = b.mem;
      try {
        const cases: Array<[string, (q: ReturnType<typeof makeQueues>) => void]> = [
          ["net-rx-readable", ({ rx }) => rx.add([new Uint8Array(20)], [RX_SMALL])],
          ["net-rx-short", ({ rx }) => rx.add([], [NET_HDR_SIZE - 1])],
          ["net-tx-writable", ({ tx }) => tx.add([withHeader(new Uint8Array(60))], [4])],
          ["net-tx-short", ({ tx }) => tx.add([new Uint8Array(NET_HDR_SIZE - 1)], [])],
          [
            "out-of-ram",
            ({ tx }) => {
              // Broken before it is published: the device's thread may look at the ring at any time.
              const head = tx.add([new Uint8Array(80)], [], { publish: false });
              tx.writeDesc(head, { addr: mem.size - 8, len: 80, flags: 0, next: 0 });
              tx.publish(head);
            },
          ],
        ];
        for (const [rule, post] of cases) {
          for (const atDoorbell of [false, true]) {
            const what = `${rule} ${atDoorbell ? "at a doorbell" : "at DRIVER_OK"}`;
            mem.bytes.fill(0);
            const q = makeQueues(mem, 16, true);
            if (!atDoorbell) post(q);
            b.activate(dev, bit(VIRTIO_NET_F.MAC) | bit(VIRTIO_F.EVENT_IDX), q.rx, q.tx);
            await b.settle();
            if (atDoorbell) {
              assert.deepEqual(b.failures, [], what);
              post(q);
              await b.kick(rule.startsWith("net-rx") ? 0 : 1);
              if (rule.startsWith("net-rx")) {
                // A starved receive queue looks at new buffers on its doorbell.
                assert.equal(b.failures.length, 1, `${what}: ${b.failures.join("; ")}`);
              }
            }
            assert.equal(b.failures.length, 1, `${what}: ${b.failures.join("; ")}`);
            assert.match(b.failures[0]!, new RegExp(`\\[${rule}\\]$`));
            assert.match(b.failures[0]!, /^net (rx|tx): /, "the message names the queue");
            assert.deepEqual(q.tx.used(), [], "nothing was given back");
            assert.deepEqual(q.rx.used(), []);
            assert.equal(b.interrupts(0) + b.interrupts(1), 0, "and no interrupt raised");
            q.tx.add([withHeader(arpRequest(MAC, [10, 7, 3, 2], [10, 7, 3, 1]))], []);
            b.ring(1);
            await b.settle();
            assert.equal(b.failures.length, 1, "a failed device does nothing more");
            assert.deepEqual(q.tx.used(), []);
          }
        }
      } finally {
        dev.close();
      }
    });
  },
});

Deno.test({
  name: "net: a driver that keeps the transmit queue full still gets its receive queue served, and a reset stops it",
  ignore: problem !== undefined,
  async fn() {
    await bench(async (ns, b) => {
      const dev = ns.enter(() => NetDevice.open("10.7.3.1", { mac: MAC }));
      const { rx, tx } = makeQueues(b.mem, 256, false);
      for (let i = 0; i < 8; i++) rx.add([], [RX_SMALL]);
      // 200 ARP requests to the tap's address: each one the thread sends, the kernel answers.
      const heads = Array.from(
        { length: 200 },
        (_, i) => tx.add([withHeader(arpRequest(MAC, [10, 7, 3, 2 + (i % 200)], [10, 7, 3, 1]))], []),
      );
      let reposted = 0;
      let resetMs = 0;
      try {
        b.activate(dev, bit(VIRTIO_NET_F.MAC), rx, tx);
        // The driver re-posts each frame the moment it comes back: the ring never runs dry.
        const flood = (): void => {
          for (const u of tx.used()) {
            tx.publish(u.id);
            reposted++;
          }
          if (tx.needsNotify()) b.ring(1);
        };
        const until = Date.now() + 10_000;
        while (rx.usedIdx() < 8 || reposted < 5 * TX_BUDGET) {
          if (Date.now() > until) throw new Error(`after 10 s: ${reposted} re-posted, ${rx.usedIdx()} received`);
          flood();
          await new Promise((r) => setTimeout(r, 0));
        }
        flood();
        const t0 = performance.now();
        dev.reset();
        resetMs = performance.now() - t0;
        const usedAtReset = tx.usedIdx();
        flood();
        await new Promise((r) => setTimeout(r, 100));
        assert.equal(tx.usedIdx(), usedAtReset, "after reset() the thread touches the ring no more");
        assert.deepEqual(dev.txTotals, { sent: usedAtReset, dropped: 0 }, "each posting sent once");
      } finally {
        dev.close();
      }
      assert.ok(heads.length === 200);
      assert.equal(rx.usedIdx(), 8, "replies reached the receive queue while transmit was flooded");
      assert.ok(resetMs < 1000, `reset() during the flood returned (after ${resetMs.toFixed(1)} ms)`);
      assert.deepEqual(b.failures, []);
    });
  },
});
