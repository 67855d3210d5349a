/*T:580 The network device against random and hostile drivers, on a real
 * tap in a namespace of the test's own.
 *
 * Transmit: random frames (empty to just past the largest, any ethertype
 * but VLAN tags, which the kernel lifts out of the frame before anyone sees
 * it), behind a zero header or twelve random bytes, cut into random pieces
 * with empty ones among them, direct or indirect; and now and then a chain
 * that breaks a rule (a writable buffer, fewer bytes than the header, a
 * buffer past the end of RAM, a head past the ring). For every chain
 * exactly one of three things must happen: the host kernel receives the
 * frame byte for byte (a packet socket watches), or the device drops it and
 * says why (only where dropping is allowed: too short, too long, or a
 * header the kernel refuses), or the device fails naming the rule the chain
 * broke. No exception may escape, and the device may never write into a
 * buffer the driver gave it to read.
 *
 * Receive: random receive buffers (sizes, pieces, mergeable or not, now and
 * then a bad one), then frames from a second tap on a bridge. A reference
 * model, the slow and obvious way, says which frames fit which buffers,
 * which are dropped, where the device runs out, and where it reaches a bad
 * chain; the device must agree, frame for frame and byte for byte. :*/

import assert from "node:assert/strict";
import fc from "fast-check";
import type { GuestMemory } from "../../../lib/memory.ts";
import { pollOne, read } from "../../../lib/sys/calls.ts";
import { NetdevControl, Tap } from "../../../lib/sys/tap.ts";
import { bit, VIRTIO_F } from "../../../lib/virtio/device.ts";
import { NetDevice } from "../../../lib/virtio/net/device.ts";
import { NET_HDR_SIZE, VIRTIO_NET_F } from "../../../lib/virtio/net/hdr.ts";
import { TX_MAX_FRAME, TX_MIN_FRAME } from "../../../lib/virtio/net/tx.ts";
import type { TestDriver } from "../driver.ts";
import { NetNs, netnsProblem } from "./netns.ts";
import { drain, guestRam, NetBench, tapWrite, withHeader } from "./harness.ts";
import { concatBytes, makeQueues, openUpTap } from "./harness.ts";

const problem = await netnsProblem();
if (problem !== undefined) console.warn(`net_fuzz_test: skipped: ${problem}`);

const MAC = new Uint8Array([0x02, 0, 0x0a, 0x07, 0x08, 0x02]);
const TX_RUNS = 7000;
const RX_RUNS = 3000;

/** Bytes from a small xorshift generator: fast for 64 KiB frames, reproducible from the seed. */
function noise(len: number, seed: number): Uint8Array {
  const out = new Uint8Array(len);
  let x = (seed | 1) >>> 0;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

function pieces(bytes: Uint8Array, cuts: number[], empty: boolean): Uint8Array[] {
  const at = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let from = 0;
  for (const c of [...at, bytes.length]) {
    out.push(bytes.slice(from, c));
    from = c;
  }
  if (empty) out.splice(out.length >> 1, 0, new Uint8Array(0));
  return out.filter((p, i) => p.length > 0 || empty || i === 0);
}

/** The bytes in `d`'s chain `head`'s readable buffers. */
function readableNow(mem: GuestMemory, d: TestDriver, head: number): Uint8Array {
  return concatBytes(d.posted(head)!.readable.map((s) => mem.slice(s.addr, s.len)));
}

// ---------------------------------------------------------------- transmit

type TxBreak = "none" | "writable" | "short" | "out-of-ram" | "bad-head";
const RULE: Record<Exclude<TxBreak, "none">, string> = {
  "writable": "net-tx-writable",
  "short": "net-tx-short",
  "out-of-ram": "out-of-ram",
  "bad-head": "desc-index",
};

const txItem = fc.record({
  len: fc.oneof(
    { weight: 1, arbitrary: fc.integer({ min: 0, max: TX_MIN_FRAME - 1 }) },
    { weight: 10, arbitrary: fc.integer({ min: TX_MIN_FRAME, max: 200 }) },
    { weight: 3, arbitrary: fc.integer({ min: 1400, max: 1600 }) },
    { weight: 1, arbitrary: fc.constantFrom(9000, TX_MAX_FRAME, TX_MAX_FRAME + 1) },
  ),
  seed: fc.integer(),
  ethertype: fc.constantFrom(0x88b5, 0x0800, 0x0806, 0x86dd, 0x0000, 0xffff),
  header: fc.oneof(
    { weight: 4, arbitrary: fc.constant(null) },
    { weight: 1, arbitrary: fc.uint8Array({ minLength: NET_HDR_SIZE, maxLength: NET_HDR_SIZE }) },
  ),
  cuts: fc.array(fc.nat(), { maxLength: 5 }),
  empty: fc.boolean(),
  indirect: fc.boolean(),
  broken: fc.oneof(
    { weight: 30, arbitrary: fc.constant<TxBreak>("none") },
    { weight: 1, arbitrary: fc.constantFrom<TxBreak>("writable", "short", "out-of-ram", "bad-head") },
  ),
});

Deno.test({
  name:
    `net fuzz: ${TX_RUNS} random transmit runs: each frame reaches the host intact, or is dropped or refused for a reason`,
  ignore: problem !== undefined,
  async fn() {
    const ns = await NetNs.create();
    const mem = guestRam();
    const b = new NetBench(mem);
    const [tap, cap] = openUpTap(ns);
    const dev = new NetDevice(tap, { mac: MAC });
    const outcomes = { sent: 0, dropped: 0, failed: 0 };
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom(16, 256),
          fc.boolean(),
          fc.array(txItem, { minLength: 1, maxLength: 6 }),
          async (size, eventIdx, items) => {
            const { rx, tx } = makeQueues(mem, size, eventIdx);
            cap.drain();
            b.activate(dev, eventIdx ? bit(VIRTIO_F.EVENT_IDX) : 0n, rx, tx);
            try {
              for (const it of items) {
                const frame = noise(it.len, it.seed);
                if (it.len >= 14) frame.set([it.ethertype >> 8, it.ethertype & 0xff], 12);
                let bytes = withHeader(frame, it.header ?? undefined);
                if (it.broken === "short") bytes = bytes.subarray(0, (it.seed >>> 0) % NET_HDR_SIZE);
                // The device serves the ring from its own thread as soon as a chain is published, so a
                // chain is broken before it is published, as a hostile driver would have it.
                const head = tx.add(pieces(bytes, it.cuts, it.empty), it.broken === "writable" ? [8] : [], {
                  indirect: it.indirect && it.broken !== "out-of-ram",
                  publish: false,
                });
                if (it.broken === "out-of-ram") {
                  tx.writeDesc(head, { ...tx.readDesc(head), addr: mem.size - 4, len: 64 });
                }
                tx.publish(it.broken === "bad-head" ? size + (it.seed & 0xff) : head);
                const before = dev.txTotals;
                const logs = b.logs.length;
                await b.kick(1);
                if (it.broken !== "none") {
                  assert.equal(b.failures.length, 1, `${it.broken}: expected a failure`);
                  assert.match(b.failures[0]!, new RegExp(`\\[${RULE[it.broken]}\\]$`));
                  assert.deepEqual(tx.used(), []);
                  outcomes.failed++;
                  break;
                }
                assert.deepEqual(b.failures, []);
                assert.deepEqual(readableNow(mem, tx, head), bytes, "the device wrote nothing into the frame");
                assert.deepEqual(tx.used(), [{ id: head, len: 0 }], "the chain comes back, with nothing written");
                const after = dev.txTotals;
                const mustDrop = it.len < TX_MIN_FRAME || it.len > TX_MAX_FRAME;
                if (after.sent > before.sent) {
                  assert.ok(!mustDrop, `a ${it.len}-byte frame was sent`);
                  assert.deepEqual(cap.next(2000), frame, "the host received exactly the frame");
                  outcomes.sent++;
                } else {
                  assert.equal(after.dropped, before.dropped + 1);
                  assert.ok(
                    mustDrop || it.header !== null,
                    `a well-formed ${it.len}-byte frame with a zero header was dropped: ${b.logs.at(-1)}`,
                  );
                  assert.match(b.logs[logs] ?? "", /^dropped a transmitted frame of \d+ bytes: /);
                  outcomes.dropped++;
                }
              }
              assert.equal(cap.next(0), undefined, "nothing else reached the host");
            } finally {
              dev.reset();
            }
          },
        ),
        { numRuns: TX_RUNS },
      );
      console.log(`transmit outcomes: ${JSON.stringify(outcomes)}`);
      assert.ok(outcomes.sent > 0 && outcomes.dropped > 0 && outcomes.failed > 0, "every outcome was exercised");
    } finally {
      dev.close();
      cap.close();
      await b.close();
      mem.close();
      await ns.delete();
    }
  },
});

// ---------------------------------------------------------------- receive

/** One receive chain as the model sees it: its room, or the rule it breaks. */
interface RxChain {
  room: number;
  bad: string | undefined;
}

/** What the reference model says a receive run does. */
interface RxOutcome {
  /** Frames delivered: which frame, and which chains with how many bytes each. */
  deliveries: Array<{ frame: number; parts: Array<{ chain: number; len: number }> }>;
  /** Frames the device takes from the tap. */
  read: number;
  /** The rule of the bad chain it reaches, if it reaches one. */
  fail: string | undefined;
}

/*T:581 The model. Chains are taken in order; without mergeable buffers
 * one at a time, with them until there is room for a full-sized frame, so
 * a bad chain is reached exactly when the device would pop it. A frame
 * goes whole into the first chain or is dropped (not mergeable), or over
 * as many chains as it takes, waiting for more if there are not enough
 * (mergeable); with no chain at all the device stops reading. :*/
function rxModel(chains: RxChain[], frames: number[], mergeable: boolean): RxOutcome {
  const out: RxOutcome = { deliveries: [], read: 0, fail: undefined };
  const want = mergeable ? RX_FULL : 1;
  const stash: number[] = [];
  let next = 0;
  let room = 0;
  const take = (): boolean => {
    const c = chains[next];
    if (c === undefined) return false;
    if (c.bad !== undefined) throw c.bad;
    stash.push(next++);
    room += c.room;
    return true;
  };
  const fill = () => {
    while ((stash.length === 0 || room < want) && take());
  };
  try {
    fill();
    for (const [frame, len] of frames.entries()) {
      if (stash.length === 0) break;
      out.read++;
      let left = NET_HDR_SIZE + len;
      const parts: Array<{ chain: number; len: number }> = [];
      for (const chain of mergeable ? stash : stash.slice(0, 1)) {
        const n = Math.min(chains[chain]!.room, left);
        if (n === 0) break;
        parts.push({ chain, len: n });
        left -= n;
      }
      if (left > 0 && !mergeable) {
        fill();
        continue;
      }
      while (left > 0 && take()) {
        const chain = stash.at(-1)!;
        const n = Math.min(chains[chain]!.room, left);
        parts.push({ chain, len: n });
        left -= n;
      }
      if (left > 0) break;
      out.deliveries.push({ frame, parts });
      for (const p of stash.splice(0, parts.length)) room -= chains[p]!.room;
      fill();
    }
  } catch (rule) {
    out.fail = String(rule);
  }
  return out;
}

const RX_FULL = NET_HDR_SIZE + 1514;
type RxBreak = "none" | "readable" | "out-of-ram";

const rxChain = fc.record({
  sizes: fc.oneof(
    { weight: 1, arbitrary: fc.constant([RX_FULL]) },
    { weight: 3, arbitrary: fc.array(fc.integer({ min: 1, max: 800 }), { minLength: 1, maxLength: 4 }) },
  ),
  indirect: fc.boolean(),
  broken: fc.oneof(
    { weight: 40, arbitrary: fc.constant<RxBreak>("none") },
    { weight: 1, arbitrary: fc.constantFrom<RxBreak>("readable", "out-of-ram") },
  ),
});

/** A broadcast frame of `len` bytes from a fixed unicast source, ethertype 0x88b5. */
function rxFrame(len: number, seed: number): Uint8Array {
  const f = noise(len, seed);
  f.set([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 0x0b, 0x88, 0xb5]);
  return f;
}

Deno.test({
  name: `net fuzz: ${RX_RUNS} random receive runs agree with the reference model, frame for frame`,
  ignore: problem !== undefined,
  async fn() {
    const ns = await NetNs.create();
    const mem = guestRam();
    const b = new NetBench(mem);
    await ns.ip("link", "add", "br0", "type", "bridge", "forward_delay", "0");
    await ns.ip("link", "set", "br0", "up");
    const [tap, peer] = ns.enter(() => {
      const taps = [Tap.open(NET_HDR_SIZE), Tap.open(NET_HDR_SIZE)] as const;
      const ctl = new NetdevControl();
      try {
        for (const t of taps) {
          ctl.addToBridge("br0", ctl.index(t.name));
          ctl.up(t.name);
        }
      } finally {
        ctl.close();
      }
      return taps;
    });
    const dev = new NetDevice(tap, { mac: MAC });
    const seen = { delivered: 0, dropped: 0, starved: 0, failed: 0 };
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom(64, 256),
          fc.record({ eventIdx: fc.boolean(), mergeable: fc.boolean(), csum: fc.boolean() }),
          fc.array(rxChain, { maxLength: 12 }),
          fc.array(fc.integer({ min: 14, max: 1514 }), { maxLength: 6 }),
          fc.integer(),
          async (size, feat, chainSpecs, frames, seed) => {
            const { rx, tx } = makeQueues(mem, size, feat.eventIdx);
            const F = VIRTIO_NET_F;
            const features = (feat.eventIdx ? bit(VIRTIO_F.EVENT_IDX) : 0n) |
              (feat.mergeable ? bit(F.MRG_RXBUF) : 0n) | (feat.csum ? bit(F.GUEST_CSUM) : 0n);
            const chains: RxChain[] = [];
            const heads: number[] = [];
            for (const c of chainSpecs) {
              const room = c.sizes.reduce((a, b) => a + b, 0);
              const head = rx.add(c.broken === "readable" ? [new Uint8Array(4)] : [], [...c.sizes], {
                indirect: c.indirect && c.broken !== "out-of-ram",
              });
              if (c.broken === "out-of-ram") rx.writeDesc(head, { ...rx.readDesc(head), addr: mem.size - 4, len: 64 });
              heads.push(head);
              const bad = c.broken === "readable"
                ? "net-rx-readable"
                : c.broken === "out-of-ram"
                ? "out-of-ram"
                : room < NET_HDR_SIZE
                ? "net-rx-short"
                : undefined;
              chains.push({ room, bad });
            }
            const model = rxModel(chains, frames, feat.mergeable);
            b.activate(dev, features, rx, tx);
            const sent = frames.map((len, i) => rxFrame(len, seed + i));
            for (const f of sent) tapWrite(peer, withHeader(f) as Uint8Array<ArrayBuffer>);
            try {
              if (model.fail !== undefined) {
                await b.until(() => b.failures.length > 0, `the device to reach the bad chain (${model.fail})`);
                assert.equal(b.failures.length, 1);
                assert.match(b.failures[0]!, new RegExp(`\\[${model.fail}\\]$`));
                seen.failed++;
              } else {
                await b.until(() => dev.rxTotals.read >= model.read, `${model.read} frames to be read`);
                assert.equal(dev.rxTotals.read, model.read);
                assert.deepEqual(b.failures, []);
              }
              const used = rx.used();
              assert.deepEqual(
                used,
                model.deliveries.flatMap((d) => d.parts.map((p) => ({ id: heads[p.chain]!, len: p.len }))),
                "the used ring is what the model says",
              );
              for (const d of model.deliveries) {
                const got = concatBytes(d.parts.map((p) => rx.writableData(heads[p.chain]!)));
                assert.equal(got[0]! & ~(feat.csum ? 2 : 0), 0, "flags: nothing, or DATA_VALID with GUEST_CSUM");
                assert.deepEqual([...got.subarray(1, 10)], [0, 0, 0, 0, 0, 0, 0, 0, 0]);
                assert.equal(got[10]! | (got[11]! << 8), d.parts.length, "num_buffers");
                assert.deepEqual(got.subarray(NET_HDR_SIZE), sent[d.frame], "the frame, intact");
              }
              seen.delivered += model.deliveries.length;
              seen.dropped += model.read - model.deliveries.length;
              if (model.read < frames.length && model.fail === undefined) seen.starved++;
            } finally {
              dev.reset();
              for (let left = frames.length - model.read; left > 0; left--) {
                assert.notEqual(pollOne(tap.fd, 1, 2000), 0, `${left} unread frames still in the tap`);
                assert.ok(read(tap.fd, new Uint8Array(2048)) > 0);
              }
            }
            assert.equal(drain(tap.fd), 0, "no frame was left over, and none appeared from elsewhere");
          },
        ),
        { numRuns: RX_RUNS },
      );
      console.log(`receive outcomes: ${JSON.stringify(seen)}`);
      assert.ok(Object.values(seen).every((n) => n > 0), "every outcome was exercised");
    } finally {
      dev.close();
      peer.close();
      await b.close();
      mem.close();
      await ns.delete();
    }
  },
});
