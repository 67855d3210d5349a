/*T:566 One turn of the network card's data-path session (V:468), run on
 * the test's own thread so that its order can be watched: a transmit ring
 * holding a full budget of frames and a frame waiting on the tap. The turn
 * must move both, the budget's worth of transmits and the receive, and say
 * that it wants another turn at once; a data path that served the
 * receive side only once the transmit ring ran dry would leave the guest
 * deaf for as long as it kept sending. And a withdrawn session's next turn
 * touches nothing. :*/

import assert from "node:assert/strict";
import { NetdevControl, Tap } from "../../../lib/sys/tap.ts";
import { POLL, pollOne } from "../../../lib/sys/calls.ts";
import { bit, VIRTIO_F } from "../../../lib/virtio/device.ts";
import { NET_HDR_SIZE, VIRTIO_NET_F } from "../../../lib/virtio/net/hdr.ts";
import { RX_SMALL } from "../../../lib/virtio/net/rx.ts";
import { TX_BUDGET } from "../../../lib/virtio/net/tx.ts";
import { NCTL } from "../../../lib/virtio/net/data_protocol.ts";
import { NetSession } from "../../../lib/virtio/net/data_session.ts";
import { THREAD_CTL, Withdrawn } from "../../../lib/virtio/thread/window.ts";
import type { TestDriver } from "../driver.ts";
import { netnsProblem } from "./netns.ts";
import { bench, makeQueues, tapWrite, withHeader } from "./harness.ts";
import { arpRequest } from "./frames.ts";

const problem = await netnsProblem();
if (problem !== undefined) console.warn(`net data session test: skipped: ${problem}`);

const MAC = new Uint8Array([0x02, 0x00, 0x0a, 0x07, 0x00, 0x02]);

Deno.test({
  name: "net data path: a turn with a full budget of transmits still receives, and asks to go again",
  ignore: problem !== undefined,
  async fn() {
    await bench(async (ns, b) => {
      const tap = ns.enter(() => {
        const t = Tap.open(NET_HDR_SIZE);
        const ctl = new NetdevControl();
        try {
          ctl.setAddress(t.name, [10, 7, 3, 1], 24);
          ctl.up(t.name);
        } finally {
          ctl.close();
        }
        return t;
      });
      try {
        const { rx, tx } = makeQueues(b.mem, TX_BUDGET, false);
        for (let i = 0; i < 4; i++) rx.add([], [RX_SMALL]);
        for (let i = 0; i < TX_BUDGET; i++) {
          tx.add([withHeader(arpRequest(MAC, [10, 7, 3, 2 + (i % 200)], [10, 7, 3, 9]))], []);
        }
        // One frame waits on the tap for the guest: the kernel's answer to an ARP request.
        tapWrite(tap, new Uint8Array(withHeader(arpRequest(MAC, [10, 7, 3, 2], [10, 7, 3, 1]))));
        const deadline = Date.now() + 2000;
        while (pollOne(tap.fd, POLL.IN, 0) === 0) {
          if (Date.now() > deadline) throw new Error("the kernel never answered the ARP request");
          await new Promise((r) => setTimeout(r, 1));
        }
        const ctl = new Int32Array(new SharedArrayBuffer(4 * NCTL.WORDS));
        Atomics.store(ctl, THREAD_CTL.REQ, 1);
        const logs: string[] = [];
        const session = (q: number, d: TestDriver, name: string) => ({
          index: q,
          name,
          layout: d.layout,
          features: { eventIdx: false, indirect: true },
          start: d.start,
          doorbell: b.doorbells[q]!,
          interrupt: { irqfd: b.irqfds[q]!, status: b.status, word: 0 },
        });
        const s = new NetSession({ ctl, port: tap, log: (l) => logs.push(l) }, {
          kind: "start",
          session: 1,
          hostAddress: b.mem.hostAddress,
          memSize: b.mem.size,
          features: bit(VIRTIO_NET_F.MAC) | bit(VIRTIO_F.VERSION_1),
          rx: session(0, rx, "net rx"),
          tx: session(1, tx, "net tx"),
        });
        s.window.enter();
        let again: boolean;
        try {
          again = s.turn();
        } finally {
          s.window.leave();
        }
        assert.equal(tx.usedIdx(), TX_BUDGET, "a budget's worth of frames went out");
        assert.ok(rx.usedIdx() >= 1, "and the waiting frame came in, in the same turn");
        assert.equal(again, true, "a spent budget asks for another turn at once");
        assert.equal(Atomics.load(ctl, NCTL.TX_SENT), TX_BUDGET, "the totals are published");
        assert.deepEqual(logs, []);
        Atomics.store(ctl, THREAD_CTL.REQ, 0);
        const used = rx.usedIdx();
        assert.throws(() => s.window.enter(), Withdrawn, "a withdrawn session's window does not open");
        assert.equal(Atomics.load(ctl, THREAD_CTL.RING_BUSY), 0);
        assert.equal(rx.usedIdx(), used);
      } finally {
        tap.close();
      }
    });
  },
});
