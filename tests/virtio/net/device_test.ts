/*T:560 The network device on the bench (harness.ts): TestDriver plays
 * the guest's driver, and the wire is a real tap in a namespace of the
 * test's own, so the far end is the host kernel itself. A frame the device
 * transmits must reach the kernel byte for byte (a packet socket watches),
 * and the kernel's answer (its ARP reply, its segmented or unsegmented TCP)
 * must come back through the receive queue, header and all. :*/

import assert from "node:assert/strict";
import { EventLoop, type FdHandler } from "../../../lib/eventloop.ts";
import type { GuestMemory } from "../../../lib/memory.ts";
import { NetdevControl, Tap } from "../../../lib/sys/tap.ts";
import { bit, VIRTIO_F } from "../../../lib/virtio/device.ts";
import { NET_FEATURES, NetDevice } from "../../../lib/virtio/net/device.ts";
import { NET_HDR, NET_HDR_SIZE, VIRTIO_NET_F, VIRTIO_NET_S_LINK_UP } from "../../../lib/virtio/net/hdr.ts";
import { RX_SMALL } from "../../../lib/virtio/net/rx.ts";
import { NetTx } from "../../../lib/virtio/net/tx.ts";
import { NetNs, netnsProblem } from "./netns.ts";
import { BenchContext, Capture, makeQueues, runLoop, tapWrite, until, withHeader } from "./harness.ts";
import { guestRam, openUpTap } from "./harness.ts";

const problem = await netnsProblem();
if (problem !== undefined) console.warn(`net_test: tap tests skipped: ${problem}`);

const V1 = bit(VIRTIO_F.VERSION_1);
const MAC = new Uint8Array([0x02, 0x00, 0x0a, 0x07, 0x00, 0x02]);
const f = (...bits: number[]) => bits.reduce((m, b) => m | bit(b), V1);

function be16(p: Uint8Array, at: number): number {
  return (p[at]! << 8) | p[at + 1]!;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** An ARP request from `mac`/`ip` for `target`. */
function arpRequest(mac: Uint8Array, ip: number[], target: number[]): Uint8Array {
  const a = new Uint8Array(42);
  a.fill(0xff, 0, 6);
  a.set(mac, 6);
  a.set([0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1], 12);
  a.set(mac, 22);
  a.set(ip, 28);
  a.set(target, 38);
  return a;
}

/** Cuts `bytes` at the given offsets. */
function split(bytes: Uint8Array, ...cuts: number[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let at = 0;
  for (const c of [...cuts, bytes.length]) {
    out.push(bytes.slice(at, c));
    at = c;
  }
  return out;
}

/** A test body inside a fresh namespace, with guest RAM and an event loop, all torn down after. */
async function bench(
  body: (ns: NetNs, mem: GuestMemory, loop: EventLoop) => Promise<void> | void,
  loop: EventLoop = new EventLoop(),
): Promise<void> {
  await NetNs.use(async (ns) => {
    const mem = guestRam();
    try {
      await body(ns, mem, loop);
    } finally {
      loop.close();
      mem.close();
    }
  });
}

Deno.test({
  name: "net: config space holds the MAC and link-up; features keep the spec's dependencies",
  ignore: problem !== undefined,
  async fn() {
    await bench((ns) => {
      const dev = ns.enter(() => NetDevice.open("10.7.3.1", { mac: MAC }));
      try {
        assert.deepEqual(dev.config.slice(0, 6), MAC);
        assert.equal(dev.config[6]! | (dev.config[7]! << 8), VIRTIO_NET_S_LINK_UP);
        for (const b of ["CSUM", "GUEST_CSUM", "MAC", "HOST_TSO4", "GUEST_TSO4", "MRG_RXBUF", "STATUS"] as const) {
          assert.ok(dev.features & bit(VIRTIO_NET_F[b]), `${b} is offered`);
        }
        assert.equal(dev.acceptFeatures(NET_FEATURES | V1), true);
        assert.equal(dev.acceptFeatures(f(VIRTIO_NET_F.GUEST_TSO4)), false, "GUEST_TSO4 needs GUEST_CSUM");
        assert.equal(dev.acceptFeatures(f(VIRTIO_NET_F.HOST_TSO6)), false, "HOST_TSO6 needs CSUM");
        assert.equal(dev.acceptFeatures(f(VIRTIO_NET_F.HOST_TSO6, VIRTIO_NET_F.CSUM)), true);
        const random = ns.enter(() => NetDevice.open("10.7.3.5"));
        try {
          assert.equal(random.mac[0]! & 3, 2, "a made-up MAC is locally administered and unicast");
          assert.notDeepEqual(random.mac, MAC);
        } finally {
          random.close();
        }
      } finally {
        dev.close();
      }
    });
  },
});

Deno.test({
  name: "net: frames in any layout reach the host kernel intact, and its ARP replies come back",
  ignore: problem !== undefined,
  async fn() {
    await bench(async (ns, mem, loop) => {
      const [dev, cap] = ns.enter(() => [NetDevice.open("10.7.3.1", { mac: MAC }), new Capture()] as const);
      const stop = runLoop(loop);
      try {
        const { rx, tx } = makeQueues(mem, 16, false);
        const ctx = new BenchContext(mem, loop, f(VIRTIO_NET_F.MAC));
        for (let i = 0; i < 4; i++) rx.add([], [RX_SMALL]);
        ctx.activate(dev, [rx.queue("net rx"), tx.queue("net tx")]);
        cap.drain();
        const layouts: Array<[string, (b: Uint8Array) => Uint8Array[], boolean]> = [
          ["header and frame apart", (b) => split(b, NET_HDR_SIZE), false],
          ["one buffer", (b) => [b], false],
          ["header straddling two buffers", (b) => split(b, 5, 20, 30), false],
          ["indirect, with an empty buffer", (b) => [...split(b, 12), new Uint8Array(0)], true],
        ];
        for (const [i, [what, cut, indirect]] of layouts.entries()) {
          const frame = arpRequest(MAC, [10, 7, 3, 2 + i], [10, 7, 3, 1]);
          const head = tx.add(cut(withHeader(frame)), [], { indirect });
          ctx.notify(1);
          assert.deepEqual(tx.used(), [{ id: head, len: 0 }], what);
          assert.deepEqual(cap.next(2000), frame, `${what}: the kernel got the frame as posted`);
          await until(() => rx.usedIdx() === i + 1, `the ARP reply to ${what}`);
          cap.drain(); // the packet socket saw the reply leave, too
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
        assert.equal(ctx.usedCalls[1], 4, "one transmit interrupt per doorbell");
        assert.ok(ctx.usedCalls[0]! >= 4);
        assert.deepEqual(ctx.failures, []);
        assert.deepEqual(dev.txTotals, { sent: 4, dropped: 0 });
      } finally {
        await stop();
        dev.close();
        cap.close();
      }
    });
  },
});

/** A loop that remembers which fds it watches (a spy on the real one). */
class WatchingLoop extends EventLoop {
  readonly watched = new Map<number, number>();
  readonly ops: string[] = [];
  override add(fd: number, events: number, handler: FdHandler): boolean {
    this.watched.set(fd, events);
    this.ops.push(`add ${events}`);
    return super.add(fd, events, handler);
  }
  override modify(fd: number, events: number): void {
    this.watched.set(fd, events);
    this.ops.push(`modify ${events}`);
    super.modify(fd, events);
  }
  override remove(fd: number): void {
    if (this.watched.delete(fd)) this.ops.push("remove");
    super.remove(fd);
  }
}

Deno.test({
  name: "net: with no receive buffers the tap is not watched; the guest's doorbell resumes it",
  ignore: problem !== undefined,
  async fn() {
    const loop = new WatchingLoop();
    await bench(async (ns, mem) => {
      const [dev, cap] = ns.enter(() => [NetDevice.open("10.7.3.1", { mac: MAC }), new Capture()] as const);
      const stop = runLoop(loop);
      try {
        const { rx, tx } = makeQueues(mem, 16, false);
        const ctx = new BenchContext(mem, loop, f(VIRTIO_NET_F.MAC));
        ctx.activate(dev, [rx.queue("net rx"), tx.queue("net tx")]);
        assert.equal(loop.watched.size, 0, "starved from the start: nothing watched");
        assert.equal(rx.usedFlags(), 0, "and the device asks for a doorbell on the receive queue");
        tx.add([withHeader(arpRequest(MAC, [10, 7, 3, 2], [10, 7, 3, 1]))], []);
        ctx.notify(1);
        // The packet socket sees our request arrive, then the kernel's reply leave.
        for (let i = 0; i < 3; i++) {
          const seen = cap.next(2000);
          if (seen === undefined || !sameBytes(seen.subarray(6, 12), MAC)) break;
        }
        assert.equal(rx.usedIdx(), 0, "the reply waits in the kernel");
        assert.equal(loop.watched.size, 0);
        rx.add([], [RX_SMALL]);
        rx.add([], [RX_SMALL]);
        assert.ok(rx.needsNotify());
        ctx.notify(0);
        await until(() => rx.usedIdx() === 1, "the waiting reply, once the guest rang");
        assert.deepEqual([...loop.watched.values()], [1], "a buffer is left: the tap is watched for input");
        assert.equal(rx.needsNotify(), false, "no more doorbells wanted while it has buffers");
        tx.add([withHeader(arpRequest(MAC, [10, 7, 3, 3], [10, 7, 3, 1]))], []);
        ctx.notify(1);
        await until(() => rx.usedIdx() === 2, "the second reply, delivered by the event loop");
        assert.equal(loop.watched.size, 0, "out of buffers again: unwatched");
        assert.deepEqual(loop.ops, ["add 1", "remove"]);
        assert.deepEqual(ctx.failures, []);
      } finally {
        await stop();
        dev.close();
        cap.close();
      }
    }, loop);
  },
});

/** An Ethernet/IPv4/TCP frame with `payload`, and a header asking for TSO at `mss`. */
function tcpSegment(dst: Uint8Array, payload: Uint8Array, mss: number): { hdr: Uint8Array; frame: Uint8Array } {
  const frame = new Uint8Array(54 + payload.length);
  const v = new DataView(frame.buffer);
  frame.set(dst, 0);
  frame.set([0x02, 0, 0, 0, 0, 0x0b], 6);
  v.setUint16(12, 0x0800);
  frame.set([0x45, 0], 14);
  v.setUint16(16, 40 + payload.length);
  v.setUint16(20, 0x4000);
  frame.set([64, 6], 22);
  frame.set([10, 7, 5, 2, 10, 7, 5, 3], 26);
  let sum = 0;
  for (let i = 14; i < 34; i += 2) sum += v.getUint16(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  v.setUint16(24, ~sum & 0xffff);
  v.setUint16(34, 1234);
  v.setUint16(36, 5678);
  v.setUint32(38, 1);
  frame[46] = 5 << 4;
  frame[47] = 0x10;
  v.setUint16(48, 65535);
  frame.set(payload, 54);
  const hdr = new Uint8Array(NET_HDR_SIZE);
  const h = new DataView(hdr.buffer);
  hdr[0] = NET_HDR.VIRTIO_NET_HDR_F_NEEDS_CSUM;
  hdr[1] = 1; // VIRTIO_NET_HDR_GSO_TCPV4
  h.setUint16(2, 54, true);
  h.setUint16(4, mss, true);
  h.setUint16(6, 34, true);
  h.setUint16(8, 16, true);
  return { hdr, frame };
}

/*T:561 Offloads must match what the driver accepted, because the kernel
 * believes TUNSETOFFLOAD. A 4000-byte TCP segment marked for TSO enters a
 * bridge from a second tap and leaves through the device's tap: when the
 * guest took GUEST_TSO4 (and mergeable buffers) it must arrive whole, as
 * one frame over several buffers, still marked for segmentation; when it
 * did not, the kernel must have cut it into MSS-sized frames first. And a
 * reset takes the offloads back: a segment that arrives between one driver
 * that took TSO and the next, which does not, must already be cut. :*/
const TSO = f(
  VIRTIO_NET_F.MAC,
  VIRTIO_NET_F.CSUM,
  VIRTIO_NET_F.GUEST_CSUM,
  VIRTIO_NET_F.GUEST_TSO4,
  VIRTIO_NET_F.MRG_RXBUF,
);
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
      await bench(async (ns, mem, loop) => {
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
        const stop = runLoop(loop);
        try {
          const payload = new Uint8Array(4000).map((_, i) => (i * 7 + 3) & 0xff);
          const { hdr, frame } = tcpSegment(MAC, payload, 1448);
          const send = () => tapWrite(peer, withHeader(frame, hdr) as Uint8Array<ArrayBuffer>);
          if (afterTso) {
            // A driver takes TSO and goes; the segment arrives while there is none, and waits in the tap.
            const q = makeQueues(mem, 16, false);
            new BenchContext(mem, loop, TSO).activate(dev, [q.rx.queue("net rx"), q.tx.queue("net tx")]);
            dev.reset();
            assert.equal(send(), NET_HDR_SIZE + frame.length);
          }
          const { rx, tx } = makeQueues(mem, 16, false);
          const ctx = new BenchContext(mem, loop, offload ? TSO : f(VIRTIO_NET_F.MAC));
          for (let i = 0; i < 8; i++) rx.add([], [RX_SMALL]);
          ctx.activate(dev, [rx.queue("net rx"), tx.queue("net tx")]);
          if (!afterTso) assert.equal(send(), NET_HDR_SIZE + frame.length);
          // Three buffers either way: one merged frame, or three frames of one buffer each.
          await until(() => rx.usedIdx() === 3, "the segment");
          const used = rx.used();
          const bufs = used.map((u) => rx.writableData(u.id));
          if (offload) {
            const whole = new Uint8Array(used.reduce((n, u) => n + u.len, 0));
            let at = 0;
            for (const b of bufs) {
              whole.set(b, at);
              at += b.length;
            }
            assert.equal(whole[10], 3, "num_buffers = 3");
            assert.equal(whole[1], 1, "still marked GSO_TCPV4");
            assert.equal(whole[0]! & NET_HDR.VIRTIO_NET_HDR_F_NEEDS_CSUM, NET_HDR.VIRTIO_NET_HDR_F_NEEDS_CSUM);
            assert.deepEqual(whole.subarray(NET_HDR_SIZE + 54), payload, "the payload, whole and intact");
          } else {
            const got: number[] = [];
            for (const b of bufs) {
              assert.equal(b[1], 0, "no GSO without GUEST_TSO4");
              assert.equal(b[0], 0, "checksums done (flags 0 without GUEST_CSUM)");
              assert.equal(b[10], 1);
              assert.ok(b.length <= NET_HDR_SIZE + 1514);
              got.push(...b.subarray(NET_HDR_SIZE + 54));
            }
            assert.deepEqual(new Uint8Array(got), payload, "the pieces add up to the payload");
          }
          assert.deepEqual(ctx.failures, []);
        } finally {
          await stop();
          dev.close();
          peer.close();
        }
      });
    },
  });
}

Deno.test({
  name: "net: the transmit engine stops after its budget and says more is waiting",
  ignore: problem !== undefined,
  async fn() {
    await bench((ns, mem) => {
      const [tap, cap] = openUpTap(ns);
      try {
        const { tx } = makeQueues(mem, 16, true);
        const engine = new NetTx(mem, tx.queue("net tx"), tap, () => {});
        const frames = [0, 1, 2, 3, 4].map((i) => arpRequest(MAC, [10, 7, 3, 10 + i], [10, 7, 3, 1]));
        for (const fr of frames) tx.add([withHeader(fr)], []);
        cap.drain();
        assert.deepEqual(engine.transmit(2), { used: 2, more: true });
        assert.deepEqual(engine.transmit(2), { used: 2, more: true });
        assert.deepEqual(engine.transmit(2), { used: 1, more: false });
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
    await bench((ns, mem, loop) => {
      const dev = ns.enter(() => NetDevice.open("10.7.3.1", { mac: MAC }));
      try {
        const cases: Array<[string, (q: ReturnType<typeof makeQueues>) => void]> = [
          ["net-rx-readable", ({ rx }) => rx.add([new Uint8Array(20)], [RX_SMALL])],
          ["net-rx-short", ({ rx }) => rx.add([], [NET_HDR_SIZE - 1])],
          ["net-tx-writable", ({ tx }) => tx.add([withHeader(new Uint8Array(60))], [4])],
          ["net-tx-short", ({ tx }) => tx.add([new Uint8Array(NET_HDR_SIZE - 1)], [])],
          [
            "out-of-ram",
            ({ tx }) =>
              tx.writeDesc(tx.add([new Uint8Array(80)], []), { addr: mem.size - 8, len: 80, flags: 0, next: 0 }),
          ],
        ];
        for (const [rule, post] of cases) {
          mem.bytes.fill(0);
          const q = makeQueues(mem, 16, true);
          const ctx = new BenchContext(mem, loop, f(VIRTIO_NET_F.MAC, VIRTIO_F.EVENT_IDX));
          post(q);
          ctx.activate(dev, [q.rx.queue("net rx"), q.tx.queue("net tx")]);
          ctx.notify(1);
          assert.equal(ctx.failures.length, 1, `${rule}: ${ctx.failures.join("; ")}`);
          assert.match(ctx.failures[0]!, new RegExp(`\\[${rule}\\]$`));
          assert.match(ctx.failures[0]!, /^net (rx|tx): /, "the message names the queue");
          assert.deepEqual(q.tx.used(), [], "nothing was given back");
          ctx.notify(1);
          assert.equal(ctx.failures.length, 1, "a failed device does nothing more");
        }
      } finally {
        dev.close();
      }
    });
  },
});

/*T:562 Opening from --tunnet, as the launcher does: routed, the tap gets
 * the address with a /24 and is up; bridged, it is a port of the bridge
 * and up; and each way of going wrong is one line that says what. :*/
Deno.test({
  name: "net: NetDevice.open configures the tap (routed, bridged) and explains failures",
  ignore: problem !== undefined,
  async fn() {
    await bench(async (ns) => {
      await ns.ip("link", "add", "br0", "type", "bridge");
      const routed = ns.enter(() => NetDevice.open("10.7.4.1"));
      const bridged = ns.enter(() => NetDevice.open("bridge:br0"));
      try {
        const tapOf = (d: NetDevice) => /\((tap\d+)/.exec(d.name)![1]!;
        const addr = await ns.ip("-o", "-4", "addr", "show", "dev", tapOf(routed));
        assert.match(addr, /inet 10\.7\.4\.1\/24 /);
        assert.match(await ns.ip("link", "show", tapOf(routed)), /<[^>]*\bUP\b/);
        assert.match(await ns.ip("-o", "link", "show", "master", "br0"), new RegExp(`\\b${tapOf(bridged)}\\b`));
        assert.match(await ns.ip("link", "show", tapOf(bridged)), /<[^>]*\bUP\b/);
        assert.throws(() => ns.enter(() => NetDevice.open("bridge:nosuch0")), {
          message: "--tunnet=bridge:nosuch0: bridge nosuch0 does not exist",
        });
        assert.throws(() => ns.enter(() => NetDevice.open("bridge:lo")), {
          message: /^--tunnet=bridge:lo: lo is not a bridge \(E[A-Z]+\)$/,
        });
      } finally {
        routed.close();
        bridged.close();
      }
      assert.equal(await ns.ip("-o", "link", "show", "type", "tun"), "", "closing deletes the taps");
      assert.equal(await ns.ip("-o", "link", "show", "master", "br0"), "");
    });
  },
});
