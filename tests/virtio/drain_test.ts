/*T:669 The one drain helper (V:150), against a driver that never lets up.
 * The driver here re-posts every chain the moment the device pops it, as
 * a guest's vCPU on another core can, so the ring is never empty. A turn
 * must still end, after its budget, and on the main loop the next turn
 * must wait behind everything else that is ready: a timer set during the
 * flood fires, and stopping the loop from it ends the run. A turn that
 * took more than a few budgets' worth of chains is counted as the fault
 * it is, rather than left to hang the test. :*/

import assert from "node:assert/strict";
import { GuestMemory } from "../../lib/memory.ts";
import { EventLoop } from "../../lib/eventloop.ts";
import { close, eventfd } from "../../lib/sys/calls.ts";
import type { DeviceContext } from "../../lib/virtio/device.ts";
import { DEFAULT_BUDGET, drainQueue } from "../../lib/virtio/drain.ts";
import { RngDevice } from "../../lib/virtio/rng.ts";
import { TestDriver } from "./driver.ts";
import { hookPops } from "./pop_hook.ts";

/** More chains than this in one turn means the turn has no working budget. */
const RUNAWAY = 20 * DEFAULT_BUDGET;

Deno.test("drain: a turn over a ring the driver keeps full ends after its budget, with the rest left posted", () => {
  const mem = GuestMemory.create(1024 * 1024);
  try {
    const d = new TestDriver(mem, { base: 0x1000, size: 16, eventIdx: true });
    const heads = Array.from({ length: 4 }, () => d.add([], [8]));
    const vq = d.queue("flooded queue", { eventIdx: true });
    let served = 0;
    const result = drainQueue(vq, 100, (chain) => {
      if (++served > RUNAWAY) throw new Error("the turn did not stop at its budget");
      vq.pushUsed(chain.head, 0);
      d.used();
      d.publish(chain.head);
      return true;
    });
    assert.deepEqual(result, { served: 100, end: "budget" });
    assert.equal(d.used().length, 0, "every served chain was taken back by the driver");
    assert.ok(vq.hasAvailable(), "the re-posted chains wait for the next turn");
    assert.equal(heads.length, 4);
  } finally {
    mem.close();
  }
});

Deno.test("drain: an empty ring ends the turn with notifications on; a declined chain goes back unserved", () => {
  const mem = GuestMemory.create(1024 * 1024);
  try {
    const d = new TestDriver(mem, { base: 0x1000, size: 16, eventIdx: true });
    const a = d.add([], [8]);
    const b = d.add([], [8]);
    const vq = d.queue("queue", { eventIdx: true });
    const seen: number[] = [];
    const declined = drainQueue(vq, 100, (chain) => {
      seen.push(chain.head);
      if (chain.head === b) return false;
      vq.pushUsed(chain.head, 0);
      return true;
    });
    assert.deepEqual(declined, { served: 1, end: "declined" });
    assert.deepEqual(seen, [a, b]);
    const empty = drainQueue(vq, 100, (chain) => {
      vq.pushUsed(chain.head, 0);
      return true;
    });
    assert.deepEqual(empty, { served: 1, end: "empty" }, "b comes again, then the ring is empty");
    assert.equal(d.readAvailEvent(), d.availIdx, "the next buffer rings the doorbell");
  } finally {
    mem.close();
  }
});

Deno.test("drain: a flooded queue on the main loop leaves room for a timer that stops the loop", async () => {
  const mem = GuestMemory.create(1024 * 1024);
  const loop = new EventLoop();
  const doorbell = eventfd();
  const irqfd = eventfd();
  const d = new TestDriver(mem, { base: 0x1000, size: 16, eventIdx: true });
  for (let i = 0; i < 16; i++) d.add([], [64]);
  const failures: string[] = [];
  let pops = 0;
  let sinceTimer = 0;
  // The driver: each chain the device pops is posted again at once (its used entry is taken back first).
  const restore = hookPops((_vq, chain) => {
    if (chain === undefined) return;
    pops++;
    if (++sinceTimer > RUNAWAY) throw new Error("runaway turn");
    d.used();
    d.publish(chain.head);
  });
  const ctx: DeviceContext = {
    memory: mem,
    loop,
    features: 0n,
    fail: (reason) => {
      failures.push(reason);
      loop.stop();
    },
    configChanged: () => {},
    log: () => {},
  };
  const rng = new RngDevice();
  try {
    const running = loop.run();
    let timerAt = -1;
    setTimeout(() => {
      timerAt = pops;
      sinceTimer = 0;
      loop.stop();
    }, 10);
    rng.activate(ctx, [{
      index: 0,
      name: "virtio-rng queue 0",
      layout: d.layout,
      features: { eventIdx: true, indirect: false },
      start: { lastAvailIdx: 0, usedIdx: 0 },
      doorbell,
      interrupt: { irqfd, status: new SharedArrayBuffer(4), word: 0 },
    }]);
    await running;
    assert.deepEqual(failures, [], "no turn ran away");
    assert.ok(timerAt > DEFAULT_BUDGET, `the flood was on when the timer fired (${timerAt} chains served)`);
  } finally {
    restore();
    rng.close();
    loop.close();
    for (const fd of [doorbell, irqfd]) close(fd);
    mem.close();
  }
});
