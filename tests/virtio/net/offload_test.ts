/*T:561 Offloads must match what the driver accepted, because the kernel
 * believes TUNSETOFFLOAD. A 4000-byte TCP segment marked for TSO enters a
 * bridge from a second tap and leaves through the device's tap: when the
 * guest took GUEST_TSO4 (and mergeable buffers) it must arrive whole, as
 * one frame over several buffers, still marked for segmentation; when it
 * did not, the kernel must have cut it into MSS-sized frames first. And a
 * reset takes the offloads back: a segment that arrives between one driver
 * that took TSO and the next, which does not, must already be cut. :*/

import assert from "node:assert/strict";
import { NetdevControl, Tap } from "../../../lib/sys/tap.ts";
import { bit } from "../../../lib/virtio/device.ts";
import { NetDevice } from "../../../lib/virtio/net/device.ts";
import { NET_HDR, NET_HDR_SIZE, VIRTIO_NET_F } from "../../../lib/virtio/net/hdr.ts";
import { RX_SMALL } from "../../../lib/virtio/net/rx.ts";
import { netnsProblem } from "./netns.ts";
import { bench, makeQueues, tapWrite, withHeader } from "./harness.ts";
import { tcpSegment } from "./frames.ts";

const problem = await netnsProblem();
if (problem !== undefined) console.warn(`net_offload_test: tap tests skipped: ${problem}`);

const MAC = new Uint8Array([0x02, 0x00, 0x0a, 0x07, 0x00, 0x02]);
const F = VIRTIO_NET_F;
const TSO = [F.MAC, F.CSUM, F.GUEST_CSUM, F.GUEST_TSO4, F.MRG_RXBUF].reduce((m, n) => m | bit(n), 0n);

const variants: Array<[string, boolean, boolean]> = [
  ["whole (GUEST_TSO4)", true, false],
  ["cut to MSS (no offload)", false, false],
  ["cut to MSS (no offload, after a driver that had it)", false, true],
];
for (const [what, offload, afterTso] of variants) {
  Deno.test({
    name: `net: a large TCP segment from the host arrives ${what}`,
    ignore: problem !== undefined,
    async fn() {
      await bench(async (ns, b) => {
        await ns.ip("link", "add", "br0", "type", "bridge", "forward_delay", "0");
        await ns.ip("link", "set", "br0", "up");
        const [dev, peer] = ns.enter(() => {
          const dev = NetDevice.open("bridge:br0", { mac: MAC });
          const peer = Tap.open(NET_HDR_SIZE);
          const ctl = new NetdevControl();
          try {
            ctl.addToBridge("br0", ctl.index(peer.name));
            ctl.up(peer.name);
          } finally {
            ctl.close();
          }
          return [dev, peer] as const;
        });
        try {
          const payload = new Uint8Array(4000).map((_, i) => (i * 7 + 3) & 0xff);
          const { hdr, frame } = tcpSegment(MAC, payload, 1448);
          const send = () => tapWrite(peer, withHeader(frame, hdr) as Uint8Array<ArrayBuffer>);
          if (afterTso) {
            // A driver takes TSO and goes; the segment arrives while there is none, and waits in the tap.
            const q = makeQueues(b.mem, 16, false);
            b.activate(dev, TSO, q.rx, q.tx);
            await b.settle();
            dev.reset();
            assert.equal(send(), NET_HDR_SIZE + frame.length);
          }
          const { rx, tx } = makeQueues(b.mem, 16, false);
          for (let i = 0; i < 8; i++) rx.add([], [RX_SMALL]);
          b.activate(dev, offload ? TSO : bit(F.MAC), rx, tx);
          if (!afterTso) assert.equal(send(), NET_HDR_SIZE + frame.length);
          // Three buffers either way: one merged frame, or three frames of one buffer each.
          await b.until(() => rx.usedIdx() === 3, "the segment");
          const used = rx.used();
          const bufs = used.map((u) => rx.writableData(u.id));
          if (offload) {
            const whole = new Uint8Array(used.reduce((n, u) => n + u.len, 0));
            let at = 0;
            for (const buf of bufs) {
              whole.set(buf, at);
              at += buf.length;
            }
            assert.equal(whole[10], 3, "num_buffers = 3");
            assert.equal(whole[1], 1, "still marked GSO_TCPV4");
            assert.equal(whole[0]! & NET_HDR.VIRTIO_NET_HDR_F_NEEDS_CSUM, NET_HDR.VIRTIO_NET_HDR_F_NEEDS_CSUM);
            assert.deepEqual(whole.subarray(NET_HDR_SIZE + 54), payload, "the payload, whole and intact");
            // The stash wants room for a 64 KiB frame and the ring ran dry: still, with buffers held, no doorbell.
            await b.settle();
            assert.equal(rx.needsNotify(), false, "no doorbell wanted while the device holds buffers");
          } else {
            const got: number[] = [];
            for (const buf of bufs) {
              assert.equal(buf[1], 0, "no GSO without GUEST_TSO4");
              assert.equal(buf[0], 0, "checksums done (flags 0 without GUEST_CSUM)");
              assert.equal(buf[10], 1);
              assert.ok(buf.length <= NET_HDR_SIZE + 1514);
              got.push(...buf.subarray(NET_HDR_SIZE + 54));
            }
            assert.deepEqual(new Uint8Array(got), payload, "the pieces add up to the payload");
          }
          assert.deepEqual(b.failures, []);
        } finally {
          dev.close();
          peer.close();
        }
      });
    },
  });
}
