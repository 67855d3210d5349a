/*T:640 The console against random drivers, through the real transport
 * and a real socket. A polite driver posts random output chains (split
 * anyhow, direct or indirect, empty buffers included), lends random
 * receive buffers, rings either doorbell (its eventfd) whenever it likes
 * and lets the running loop serve it, while keys are
 * typed at random and stdout fills up and drains. Whatever happened, every
 * byte sent must come out exactly once and in order, every chain must come
 * back, and the receive buffers, read in the order they came back, must
 * hold exactly the keys the device said it took.
 *
 * Then, once the polite part is done, one hostile burst on one queue: raw
 * descriptors with addresses and lengths at the edges (past the end of
 * RAM, 2^32, 2^53, 2^64 - 1), any flags, any next, any head. A shadow
 * virtqueue over the same ring says what the device should make of it: the
 * bytes of every valid output chain must come out, and the first broken
 * rule must fail the device with that rule's name; no exception may
 * escape, and memory the burst has no right to touch must not change. :*/

import assert from "node:assert/strict";
import fc from "fast-check";
import { type Chain, Virtqueue, VirtqueueError } from "../../../lib/virtio/queue.ts";
import { CONSOLE_RX, CONSOLE_TX } from "../../../lib/virtio/console/device.ts";
import { ConsoleRig, RIG } from "./rig.ts";
import type { RawDesc } from "../driver.ts";

const RAM = 2 * 1024 * 1024;
const FILLER = 0x2e;
/**
 * Kicks wait for the doorbell's own turn, not for a zero timer: no run posts more than a ring's worth of
 * chains between two doorbells, far from a turn's budget, so no turn is ever put off.
 */
const QUICK = false;
/** Where hostile buffers point: a patterned window in RAM nobody else uses, and the edges. */
const PATTERN = 0x10000;

type Op =
  | { kind: "send"; data: Uint8Array; cuts: number[]; indirect: boolean }
  | { kind: "lend"; lens: number[]; indirect: boolean }
  | { kind: "type"; data: Uint8Array }
  | { kind: "notify"; queue: number }
  | { kind: "fill" }
  | { kind: "drain" };

const noFiller = (b: Uint8Array) => b.map((x) => x === FILLER ? FILLER + 1 : x);

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant("send" as const),
      data: fc.uint8Array({ maxLength: 200 }).map(noFiller),
      cuts: fc.array(fc.nat(200), { maxLength: 3 }),
      indirect: fc.boolean(),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant("lend" as const),
      lens: fc.array(fc.nat(24), { minLength: 1, maxLength: 3 }),
      indirect: fc.boolean(),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({ kind: fc.constant("type" as const), data: fc.uint8Array({ minLength: 1, maxLength: 64 }) }),
  },
  {
    weight: 4,
    arbitrary: fc.record({ kind: fc.constant("notify" as const), queue: fc.constantFrom(CONSOLE_RX, CONSOLE_TX) }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: "fill" as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: "drain" as const }) },
);

const edgeAddr = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: RIG.FREE, max: RIG.FREE + PATTERN }) },
  { weight: 1, arbitrary: fc.integer({ min: RAM - 64, max: RAM + 64 }) },
  { weight: 1, arbitrary: fc.constantFrom(0x1_0000_0000, 2 ** 53, 2n ** 64n - 1n, 2n ** 64n - 16n) },
);
const edgeLen = fc.oneof(
  { weight: 6, arbitrary: fc.nat(64) },
  { weight: 1, arbitrary: fc.constantFrom(0x10000, 0x7fffffff, 0xffffffff) },
);
const rawDesc: fc.Arbitrary<RawDesc> = fc.record({
  addr: edgeAddr,
  len: edgeLen,
  flags: fc.oneof({ weight: 4, arbitrary: fc.constantFrom(0, 0, 1, 2, 3, 4) }, { weight: 1, arbitrary: fc.nat(7) }),
  next: fc.oneof({ weight: 5, arbitrary: fc.nat(3) }, { weight: 1, arbitrary: fc.nat(20) }),
});
const burst = fc.record({
  queue: fc.constantFrom(CONSOLE_RX, CONSOLE_TX),
  descs: fc.array(rawDesc, { minLength: 1, maxLength: 8 }),
  heads: fc.array(fc.oneof({ weight: 5, arbitrary: fc.nat(3) }, { weight: 1, arbitrary: fc.nat(18) }), {
    minLength: 1,
    maxLength: 6,
  }),
  typed: fc.uint8Array({ minLength: 1, maxLength: 300 }),
});

/** How often the polite phase found stdout full with output still to write. */
const stats = { blocked: 0 };

function concat(parts: Uint8Array[]): Uint8Array {
  return Uint8Array.from(parts.flatMap((p) => Array.from(p)));
}

/** The polite phase: checks what came out and went in; returns how many receive chains are still lent. */
async function politely(rig: ConsoleRig, ops: Op[]): Promise<number> {
  const sent: Uint8Array[] = [];
  const typed: Uint8Array[] = [];
  const got: Uint8Array[] = [];
  let txPosted = 0;
  let txUsed = 0;
  let lent = 0;
  const collect = () => {
    for (const u of rig.rx.used()) {
      const writable = rig.rx.posted(u.id)!.writable.reduce((n, s) => n + s.len, 0);
      assert.ok(u.len <= writable, `used length ${u.len} > buffer ${writable}`);
      got.push(rig.rx.writableData(u.id));
      if (writable > 0) lent--;
    }
    for (const u of rig.tx.used()) {
      assert.equal(u.len, 0);
      txUsed++;
    }
  };
  for (const o of ops) {
    if (o.kind === "send") {
      const parts: Uint8Array[] = [];
      let at = 0;
      for (const c of [...o.cuts].sort((a, b) => a - b)) {
        parts.push(o.data.subarray(at, Math.max(at, Math.min(c, o.data.length))));
        at = Math.max(at, Math.min(c, o.data.length));
      }
      parts.push(o.data.subarray(at));
      if (rig.tx.freeCount >= (o.indirect ? 1 : parts.length)) {
        rig.tx.add(parts, [], { indirect: o.indirect });
        sent.push(o.data);
        txPosted++;
      }
    } else if (o.kind === "lend") {
      if (rig.rx.freeCount >= (o.indirect ? 1 : o.lens.length)) {
        rig.rx.add([], o.lens, { indirect: o.indirect });
        if (o.lens.some((n) => n > 0)) lent++;
      }
    } else if (o.kind === "type") typed.push(o.data.subarray(0, rig.device.receive(o.data)));
    else if (o.kind === "notify") await rig.kick(o.queue, QUICK);
    else if (o.kind === "fill") rig.fillOutput();
    else rig.output();
    collect();
  }
  rig.ring(CONSOLE_TX);
  await rig.kick(CONSOLE_RX, QUICK);
  collect();
  if (txUsed < txPosted) {
    stats.blocked++;
    await rig.runUntil(() => {
      rig.output();
      collect();
      return txUsed === txPosted;
    });
  }
  assert.equal(rig.failed, false, rig.logs.join("\n"));
  assert.deepEqual(concat(got), concat(typed), "the keys the device took, in the buffers, in order");
  const out = rig.output().filter((b) => b !== FILLER);
  assert.deepEqual(out, concat(sent), "every byte sent, once, in order");
  return lent;
}

/** What the device should make of a hostile burst: the output it owes, and the rule it must name. */
function oracle(rig: ConsoleRig, queue: number, popped: number, lent: number): { out: Uint8Array; rule?: string } {
  const d = queue === CONSOLE_TX ? rig.tx : rig.rx;
  const shadow = new Virtqueue(rig.mem, d.layout, { eventIdx: d.eventIdx, indirect: true }, "shadow", {
    lastAvailIdx: (d.availIdx - popped) & 0xffff,
    usedIdx: 0,
  });
  const out: Uint8Array[] = [];
  let held = lent;
  for (let i = 0; i < popped; i++) {
    if (queue === CONSOLE_RX && held >= d.size) break;
    let c: Chain | undefined;
    try {
      c = shadow.pop();
    } catch (e) {
      if (e instanceof VirtqueueError) return { out: concat(out), rule: e.rule };
      throw e;
    }
    if (c === undefined) break;
    if (queue === CONSOLE_TX) {
      if (c.writableBytes > 0) return { out: concat(out), rule: "tx-writable" };
      for (const s of c.readable) out.push(rig.mem.slice(s.addr, s.len));
    } else {
      if (c.readableBytes > 0) return { out: concat(out), rule: "rx-readable" };
      if (c.writableBytes > 0) held++;
    }
  }
  return { out: concat(out) };
}

Deno.test("console fuzz: random drivers, full stdouts and hostile bursts", async () => {
  const rules = new Map<string, number>();
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom(4, 16),
      fc.boolean(),
      fc.array(op, { maxLength: 24 }),
      fc.option(burst, { freq: 2 }),
      async (size, eventIdx, ops, evil) => {
        const rig = new ConsoleRig({ size, eventIdx });
        try {
          const lent = await politely(rig, ops);
          if (evil === null) return;
          const before = rig.output().length;
          const d = evil.queue === CONSOLE_TX ? rig.tx : rig.rx;
          for (let i = 0; i < PATTERN; i += 4) rig.mem.writeU32(RIG.FREE + i, Math.imul(i + 1, 2654435761));
          evil.descs.forEach((desc, i) => d.writeDesc(i % d.size, desc));
          const heads = evil.heads.slice(0, d.size);
          for (const h of heads) d.publish(h);
          const want = oracle(rig, evil.queue, heads.length, lent);
          const low = rig.mem.slice(0, RIG.RX_DATA);
          const txData = rig.mem.slice(RIG.TX_DATA, RIG.FREE - RIG.TX_DATA);
          await rig.kick(evil.queue, QUICK);
          if (want.rule !== undefined) {
            rules.set(want.rule, (rules.get(want.rule) ?? 0) + 1);
            assert.equal(rig.failed, true, `expected [${want.rule}]`);
            const q = `virtio-console queue ${evil.queue}`;
            assert.ok(rig.logs.some((l) => l.includes(q) && l.includes(`[${want.rule}]`)), rig.logs.join("\n"));
          } else {
            rules.set("(none)", (rules.get("(none)") ?? 0) + 1);
            assert.equal(rig.failed, false, rig.logs.join("\n"));
            if (evil.queue === CONSOLE_TX) {
              await rig.runUntil(() => (rig.output(), rig.tx.usedIdx() === d.availIdx));
            }
          }
          if (evil.queue === CONSOLE_RX) rig.device.receive(evil.typed);
          const [ring, ringEnd] = evil.queue === CONSOLE_TX ? [RIG.TX_RING, RIG.RX_DATA] : [RIG.RX_RING, RIG.TX_RING];
          const now = rig.mem.slice(0, RIG.RX_DATA);
          now.fill(0, ring, ringEnd);
          low.fill(0, ring, ringEnd);
          assert.deepEqual(now, low, "the burst wrote outside its own ring and buffers");
          assert.deepEqual(rig.mem.slice(RIG.TX_DATA, RIG.FREE - RIG.TX_DATA), txData);
          const out = rig.output().subarray(before);
          if (rig.failed) assert.deepEqual(out, want.out.subarray(0, out.length), "a prefix, in order");
          else assert.deepEqual(out, want.out, "every valid chain's bytes, once, in order");
        } finally {
          await rig.close();
        }
      },
    ),
    { numRuns: Number(Deno.env.get("CONSOLE_FUZZ_RUNS") ?? 10_000) },
  );
  if (Deno.env.get("FUZZ_STATS")) console.log({ rules, blocked: stats.blocked });
  assert.ok(stats.blocked > 0, "some runs filled stdout with output pending");
  for (const rule of ["tx-writable", "rx-readable", "out-of-ram", "desc-index"]) {
    assert.ok(rules.has(rule), `no burst broke ${rule}`);
  }
});
