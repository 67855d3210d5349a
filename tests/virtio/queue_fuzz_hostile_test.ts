/** The virtqueue against hostile random rings, judged by the reference model (chapters T:402, T:403). */

import assert from "node:assert/strict";
import fc from "fast-check";
import { type Chain, Virtqueue, VirtqueueError } from "../../lib/virtio/queue.ts";
import { TestDriver } from "./driver.ts";
import { BASE, hostile, RAM, TABLES, withMem } from "./queue_fuzz_rig.ts";
import { model, RULES } from "./queue_model.ts";

Deno.test("fuzz: hostile rings yield in-RAM chains or VirtqueueError, and the queue writes only its used ring", () => {
  withMem((mem) => {
    const snapshot = new Uint8Array(RAM);
    const now32 = new Int32Array(mem.bytes.buffer, mem.bytes.byteOffset, RAM / 4);
    const then32 = new Int32Array(snapshot.buffer);
    let chains = 0;
    let refusals = 0;
    const rules = new Map<string, number>();
    fc.assert(
      fc.property(hostile, (h) => {
        mem.bytes.fill(0);
        const d = new TestDriver(mem, { base: BASE, size: h.size, startIndex: h.start, eventIdx: h.eventIdx });
        h.descs.forEach((desc, i) => d.writeDesc(i, desc));
        h.tables.forEach((t, k) => d.writeTable(TABLES[k]!, t));
        // The last table sits at the very end of RAM: 64 bytes, 4 entries, any longer claim runs off.
        d.writeTable(TABLES[TABLES.length - 1]!, h.tailTable);
        h.availRing.forEach((v, slot) => d.setAvailRing(slot, v));
        d.setAvailIdx(h.start + h.availDelta);
        d.setAvailFlags(h.availFlags);
        d.setUsedEvent(h.usedEvent);
        const features = { eventIdx: h.eventIdx, indirect: h.indirect };
        const q = new Virtqueue(mem, d.layout, features, "hostile queue", d.start);
        snapshot.set(mem.bytes);

        for (let round = 0; round <= h.size + 1; round++) {
          const last = q.lastAvailIdx;
          const expected = model(mem, d.layout, features, last);
          let chain: Chain | undefined;
          try {
            chain = q.pop();
          } catch (e) {
            if (!(e instanceof VirtqueueError)) throw e;
            assert.ok(RULES.has(e.rule), `known rule: ${e.rule}`);
            assert.equal(e.queue, "hostile queue");
            assert.ok(e.message.startsWith("hostile queue: "), e.message);
            assert.deepEqual({ kind: "error", rule: e.rule }, expected, e.message);
            assert.equal(q.lastAvailIdx, last, "a refused pop does not advance");
            refusals++;
            rules.set(e.rule, (rules.get(e.rule) ?? 0) + 1);
            break;
          }
          if (chain === undefined) {
            assert.deepEqual(expected, { kind: "empty" });
            break;
          }
          chains++;
          assert.ok(chain.head >= 0 && chain.head < h.size);
          let bytes = 0;
          for (const s of [...chain.readable, ...chain.writable]) {
            assert.ok(s.len > 0 && mem.contains(s.addr, s.len), `segment ${s.addr}+${s.len} in RAM`);
            bytes += s.len;
          }
          assert.ok(bytes <= 0xffffffff);
          assert.equal(chain.readableBytes + chain.writableBytes, bytes);
          const segs = [
            ...chain.readable.map((s) => ({ ...s, write: false })),
            ...chain.writable.map((s) => ({ ...s, write: true })),
          ];
          assert.deepEqual({ kind: "chain", head: chain.head, segs }, expected);
          q.pushUsed(chain.head, chain.writableBytes === 0 ? 0 : h.written % (chain.writableBytes + 1));
        }
        q.needsInterrupt();
        q.enableNotifications(h.enable);

        // Only the used ring (flags, idx, elements, avail_event) may differ from what the driver wrote.
        const used = Number(d.layout.used);
        snapshot.set(mem.bytes.subarray(used, used + 6 + 8 * h.size), used);
        for (let k = 0; k < now32.length; k++) {
          if (now32[k] !== then32[k]) assert.fail(`queue wrote outside its used ring near 0x${(4 * k).toString(16)}`);
        }
      }),
      { numRuns: 20_000 },
    );
    // The generator must actually reach both outcomes and the rules, or the test proves little. (too-long
    // needs over 4 GiB of buffers: in 1 MiB that is 4097 descriptors, so queue_test covers it instead.)
    if (Deno.env.get("FUZZ_STATS")) console.log({ chains, refusals, rules });
    assert.ok(chains > 1000, `${chains} chains accepted`);
    assert.ok(refusals > 1000, `${refusals} refusals`);
    for (const rule of RULES) {
      if (rule !== "too-long") assert.ok((rules.get(rule) ?? 0) > 0, `rule ${rule} was exercised`);
    }
  });
});
