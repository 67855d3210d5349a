/*T:473 The network device on a stream port (V:461, V:463), on the bench
 * (harness.ts) with a stream socketpair for a wire and the test as the
 * backend: the device offers no offloads on such a port and the tap's
 * full set on any other; frames the backend sends, between empty and runt
 * records it must skip, reach the guest's receive buffers behind a zeroed
 * header; and frames the guest sends arrive framed, in order and whole,
 * even when the socket takes them only in part and the backend is slow to
 * read (the device then waits for EPOLLOUT and the port flushes). :*/

import assert from "node:assert/strict";
import {
  AF_UNIX,
  close,
  read,
  setNonBlocking,
  SOCK_STREAM,
  socketpair,
  write,
  writeAll,
} from "../../../lib/sys/calls.ts";
import type { IoVecs } from "../../../lib/sys/iovec.ts";
import { bit } from "../../../lib/virtio/device.ts";
import { NET_FEATURES, NET_FEATURES_PLAIN, NetDevice } from "../../../lib/virtio/net/device.ts";
import { NET_HDR_SIZE, type PacketPort, VIRTIO_NET_F } from "../../../lib/virtio/net/hdr.ts";
import { RX_SMALL } from "../../../lib/virtio/net/rx.ts";
import { encodeStreamFrame } from "../../../lib/virtio/net/stream_framing.ts";
import { StreamPort } from "../../../lib/virtio/net/stream_port.ts";
import { guestRam, makeQueues, NetBench, withHeader } from "./harness.ts";

const MAC = new Uint8Array([0x02, 0, 0, 0, 0, 0x42]);

function frame(n: number, seed: number): Uint8Array {
  return new Uint8Array(n).map((_, i) => (i * 31 + seed) & 0xff);
}

/** A device on a stream port over a socketpair: `peer` is the backend's end, `own` the port's. */
async function onBench(body: (b: NetBench, dev: NetDevice, peer: number, own: number) => Promise<void>): Promise<void> {
  const [a, peer] = socketpair(AF_UNIX, SOCK_STREAM);
  setNonBlocking(a);
  const dev = new NetDevice(new StreamPort(a, { warn: () => {} }), { mac: MAC });
  const mem = guestRam(8);
  const b = new NetBench(mem);
  try {
    await body(b, dev, peer, a);
  } finally {
    try {
      await b.close();
    } finally {
      dev.close();
      close(peer);
      mem.close();
    }
  }
}

Deno.test("stream device: no offloads on a stream port, all of them on a tap-like one", () => {
  const [a, b] = socketpair(AF_UNIX, SOCK_STREAM);
  const plain = new NetDevice(new StreamPort(a));
  const tapLike: PacketPort = {
    fd: b,
    framing: "packet",
    readv: (_: IoVecs) => -1,
    writev: (_: IoVecs) => -1,
    setOffload: () => {},
    close: () => close(b),
  };
  const full = new NetDevice(tapLike);
  try {
    assert.equal(plain.features, NET_FEATURES_PLAIN);
    assert.equal(full.features, NET_FEATURES);
    for (const f of [VIRTIO_NET_F.CSUM, VIRTIO_NET_F.GUEST_CSUM, VIRTIO_NET_F.HOST_TSO4, VIRTIO_NET_F.GUEST_TSO4]) {
      assert.equal(plain.features & bit(f), 0n, `feature ${f} is not offered`);
    }
  } finally {
    plain.close();
    full.close();
  }
});

Deno.test("stream device: the backend's frames reach the guest, its empty and runt records do not", async () => {
  await onBench(async (b, dev, peer) => {
    const { rx, tx } = makeQueues(b.mem, 16, false);
    for (let i = 0; i < 4; i++) rx.add([], [RX_SMALL]);
    b.activate(dev, bit(VIRTIO_NET_F.MAC) | bit(VIRTIO_NET_F.MRG_RXBUF), rx, tx);
    await b.settle();
    const f1 = frame(60, 1);
    const f2 = frame(1514, 2);
    const zero = new Uint8Array(4);
    const runt = new Uint8Array([0, 0, 0, 3, 9, 9, 9]);
    writeAll(peer, new Uint8Array([...zero, ...encodeStreamFrame(f1), ...runt, ...encodeStreamFrame(f2)]));
    await b.until(() => rx.usedIdx() === 2, "two frames in the receive queue");
    const used = rx.used();
    for (const [i, f] of [f1, f2].entries()) {
      const u = used[i]!;
      assert.equal(u.len, NET_HDR_SIZE + f.length);
      const got = rx.writableData(u.id);
      assert.deepEqual([...got.subarray(0, 10)], new Array(10).fill(0), "a zeroed header: no checksum, no GSO");
      assert.equal(got[10], 1, "num_buffers = 1");
      assert.deepEqual(got.subarray(NET_HDR_SIZE, NET_HDR_SIZE + f.length), f);
    }
    assert.deepEqual(dev.rxTotals, { read: 2, delivered: 2, dropped: 0 });
    assert.deepEqual(b.failures, []);
  });
});

Deno.test("stream device: guest frames arrive framed, whole and in order past a slow backend", async () => {
  await onBench(async (b, dev, peer) => {
    setNonBlocking(peer); // read below must not block the loop's thread
    const { rx, tx } = makeQueues(b.mem, 64, false);
    b.activate(dev, bit(VIRTIO_NET_F.MAC), rx, tx);
    await b.settle();
    const frames = Array.from({ length: 15 }, (_, i) => frame(60_000 - i, i));
    for (const f of frames) tx.add([withHeader(f)], []);
    await b.kick(1);
    // The socket holds far less than 900 kB: the device must now be waiting for room.
    assert.ok(tx.usedIdx() < frames.length, `only ${tx.usedIdx()} of ${frames.length} could go yet`);
    const want = frames.map((f) => encodeStreamFrame(f));
    const total = want.reduce((s, w) => s + w.length, 0);
    const got = new Uint8Array(total);
    let have = 0;
    const chunk = new Uint8Array(8192);
    await b.until(
      () => {
        for (let k = 0; k < 64 && have < total; k++) {
          const n = read(peer, chunk.subarray(0, Math.min(chunk.length, total - have)));
          if (n <= 0) break;
          got.set(chunk.subarray(0, n), have);
          have += n;
        }
        return have === total && tx.usedIdx() === frames.length;
      },
      "every frame read by the backend",
      20_000,
    );
    let at = 0;
    for (const [i, w] of want.entries()) {
      assert.ok(got.subarray(at, at + w.length).every((x, k) => x === w[k]), `frame ${i} arrived intact, in order`);
      at += w.length;
    }
    assert.deepEqual(dev.txTotals, { sent: frames.length, dropped: 0 });
    assert.deepEqual(b.failures, []);
  });
});

Deno.test("stream device: the last frame, accepted while the socket was full, still goes out", async () => {
  await onBench(async (b, dev, peer, own) => {
    setNonBlocking(peer);
    const { rx, tx } = makeQueues(b.mem, 16, false);
    b.activate(dev, bit(VIRTIO_NET_F.MAC), rx, tx);
    await b.settle();
    // Fill the port's socket behind its back, so its next write takes nothing.
    const filler = new Uint8Array(4096);
    let filled = 0;
    for (let n; (n = write(own, filler)) > 0;) filled += n;
    const f = frame(1000, 9);
    tx.add([withHeader(f)], []);
    await b.kick(1);
    assert.equal(tx.usedIdx(), 1, "the port took the frame (to send when there is room)");
    const want = encodeStreamFrame(f);
    const got = new Uint8Array(filled + want.length);
    let have = 0;
    await b.until(
      () => {
        for (let n; have < got.length && (n = read(peer, got.subarray(have))) > 0;) have += n;
        return have === got.length;
      },
      "the frame after the filler",
      5000,
    );
    assert.deepEqual(got.subarray(filled), want);
  });
});
