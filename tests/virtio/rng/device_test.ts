/*T:670 The entropy device without KVM, through the real transport: a
 * TestDriver posts chains, the driver's register writes bring the device
 * up, doorbells are real eventfds the device watches on a running loop,
 * and what comes back is read from the used ring, with interrupts counted
 * on the real irqfd. Each writable buffer must be filled with bytes from
 * getrandom (not zeros, not the same twice), the used length must be
 * exactly what was filled, and a request must stop at RNG_MAX_PER_REQUEST
 * bytes with the rest of its buffers untouched. The device's rule for
 * readable buffers (the spec has the driver post none) is to neither read
 * nor write them and to count them for nothing. :*/

import assert from "node:assert/strict";
import { VIRTIO_STATUS } from "../../../lib/virtio/device.ts";
import { VRING_DESC_F_WRITE } from "../../../lib/virtio/queue.ts";
import { RNG_MAX_PER_REQUEST } from "../../../lib/virtio/rng.ts";
import { TestDriver } from "../driver.ts";
import { MmioRig } from "../mmio/rig.ts";
import { hookPops } from "../pop_hook.ts";

const S = VIRTIO_STATUS;

function withRig(body: (rig: MmioRig, d: TestDriver) => void | Promise<void>): () => Promise<void> {
  return async () => {
    await using rig = new MmioRig({ ram: 1024 * 1024 });
    await body(rig, new TestDriver(rig.mem, { base: 0x1000, size: 16, eventIdx: true }));
  };
}

function allZero(bytes: Uint8Array): boolean {
  return bytes.every((b) => b === 0);
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test(
  "rng: posted writable chains come back filled with random bytes, each different, used with their length",
  withRig(async (rig, d) => {
    const heads = [d.add([], [64]), d.add([], [16, 48]), d.add([], [32, 32], { indirect: true })];
    assert.equal(rig.bringUp(d), S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK | S.DRIVER_OK);
    assert.deepEqual(d.used().map((u) => [u.id, u.len]), heads.map((h) => [h, 64]));
    assert.equal(rig.interrupts, 1, "one interrupt for the batch");
    const seen = new Set<string>();
    for (const h of heads) {
      for (const s of d.posted(h)!.writable) {
        assert.ok(!allZero(rig.mem.slice(s.addr, s.len)), `buffer at 0x${s.addr.toString(16)} was filled`);
      }
      seen.add(hex(d.writableData(h)));
    }
    assert.equal(seen.size, 3, "three requests, three different answers");

    const later = d.add([], [32]);
    d.setUsedEvent(3);
    await rig.kick(0);
    assert.deepEqual(d.used().map((u) => [u.id, u.len]), [[later, 32]], "a doorbell serves a new request");
    assert.equal(rig.interrupts, 2, "and interrupts once more, as used_event asks");
    assert.ok(!seen.has(hex(d.writableData(later))));
    assert.ok(!allZero(d.writableData(later)));
  }),
);

Deno.test(
  "rng: a request is capped at RNG_MAX_PER_REQUEST bytes and the rest of its buffers stay untouched",
  withRig((rig, d) => {
    assert.equal(RNG_MAX_PER_REQUEST, 65536);
    const one = d.add([], [100_000]);
    const two = d.add([], [40_000, 40_000]);
    rig.bringUp(d);
    assert.deepEqual(d.used().map((u) => [u.id, u.len]), [[one, RNG_MAX_PER_REQUEST], [two, RNG_MAX_PER_REQUEST]]);
    const big = d.posted(one)!.writable[0]!;
    const filled = rig.mem.slice(big.addr, big.len);
    assert.ok(!allZero(filled.subarray(RNG_MAX_PER_REQUEST - 32, RNG_MAX_PER_REQUEST)), "filled up to the cap");
    assert.ok(allZero(filled.subarray(RNG_MAX_PER_REQUEST)), "and not a byte past it");
    const [a, b] = d.posted(two)!.writable;
    const second = rig.mem.slice(b!.addr, b!.len);
    const rest = RNG_MAX_PER_REQUEST - a!.len;
    assert.ok(!allZero(rig.mem.slice(a!.addr + a!.len - 32, 32)), "the first buffer is full");
    assert.ok(!allZero(second.subarray(rest - 32, rest)), "the second up to the cap");
    assert.ok(allZero(second.subarray(rest)));
  }),
);

Deno.test(
  "rng: readable buffers are neither read nor written and count for nothing in the used length",
  withRig((rig, d) => {
    const request = Uint8Array.from({ length: 32 }, (_, i) => i + 1);
    const mixed = d.add([request], [16]);
    const readOnly = d.add([request], []);
    const empty = d.add([], [0]);
    rig.bringUp(d);
    assert.deepEqual(d.used().map((u) => [u.id, u.len]), [[mixed, 16], [readOnly, 0], [empty, 0]]);
    for (const h of [mixed, readOnly]) {
      const r = d.posted(h)!.readable[0]!;
      assert.deepEqual(rig.mem.slice(r.addr, r.len), request, "the readable buffer is as the driver left it");
    }
    assert.ok(!allZero(d.writableData(mixed)));
    assert.equal(rig.status & S.NEEDS_RESET, 0);
  }),
);

Deno.test(
  "rng: a buffer outside RAM fails the device after the requests before it were served",
  withRig(async (rig, d) => {
    const good = d.add([], [16]);
    rig.bringUp(d);
    d.used();
    const next = d.add([], [16]);
    d.writeDesc(3, { addr: rig.mem.size - 4, len: 8, flags: VRING_DESC_F_WRITE, next: 0 });
    d.publish(3);
    await rig.kick(0);
    assert.deepEqual(d.used().map((u) => u.id), [next], "the good request was served");
    assert.notEqual(good, 3);
    assert.equal(rig.status & S.NEEDS_RESET, S.NEEDS_RESET);
    assert.match(rig.logText(), /^virtio-rng: virtio-rng queue 0: .*\[out-of-ram\]; device needs reset$/m);
    assert.ok(allZero(rig.mem.slice(rig.mem.size - 4, 4)), "the last bytes of RAM were not written");
  }),
);

Deno.test(
  "rng: a buffer posted while the device finishes a drain, without a doorbell, is served in the same turn",
  withRig(async (rig, d) => {
    rig.bringUp(d);
    assert.equal(d.readAvailEvent(), 0);
    // The guest's vCPU runs while we serve: let it post between our last look at avail.idx and our write of
    // avail_event. It reads the old avail_event, so it does not ring.
    let late: number | undefined;
    const first = d.add([], [32]);
    assert.ok(d.needsNotify());
    const restore = hookPops((_vq, chain) => {
      if (chain === undefined && late === undefined) {
        late = d.add([], [32]);
        assert.equal(d.needsNotify(), false, "avail_event not yet moved: no doorbell");
      }
    });
    try {
      await rig.kick(0);
    } finally {
      restore();
    }
    assert.notEqual(late, undefined);
    assert.deepEqual(d.used().map((u) => [u.id, u.len]), [[first, 32], [late, 32]]);
    assert.equal(rig.interrupts, 1, "one interrupt for both");
    assert.equal(d.readAvailEvent(), d.availIdx, "the next buffer rings");
    assert.ok(!allZero(d.writableData(late!)));
  }),
);
