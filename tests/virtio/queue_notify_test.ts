/** Virtqueue: when the device interrupts the driver, and when the driver rings the device (chapters V:140, V:141). */

import assert from "node:assert/strict";
import { VRING_USED_F_NO_NOTIFY } from "../../lib/virtio/queue.ts";
import { bytes, popOk, setup } from "./queue_rig.ts";

Deno.test("queue: needsInterrupt without EVENT_IDX follows NO_INTERRUPT, and only for new entries", () => {
  setup({}, (d, q) => {
    assert.equal(q.needsInterrupt(), false, "nothing used yet");
    const h = d.add([bytes(1)], []);
    popOk(q);
    q.pushUsed(h, 0);
    assert.equal(q.needsInterrupt(), true);
    assert.equal(q.needsInterrupt(), false, "nothing new since");
    d.setNoInterrupt(true);
    for (let k = 0; k < 3; k++) {
      d.add([bytes(k)], []);
      q.pushUsed(popOk(q).head, 0);
    }
    assert.equal(q.needsInterrupt(), false, "NO_INTERRUPT");
    d.setNoInterrupt(false);
    d.add([bytes(1)], []);
    q.pushUsed(popOk(q).head, 0);
    assert.equal(q.needsInterrupt(), true);
  });
});

Deno.test("queue: needsInterrupt with EVENT_IDX fires exactly when used.idx passes used_event", () => {
  for (const start of [0, 100, 65534, 65535]) {
    setup({ size: 8, eventIdx: true, startIndex: start }, (d, q) => {
      const push = (n: number) => {
        for (let k = 0; k < n; k++) {
          const h = d.add([bytes(k)], []);
          popOk(q);
          q.pushUsed(h, 0);
        }
        d.used();
      };
      // used_event = start + 1: the first entry (start -> start+1) does not cross it, the second does.
      d.setUsedEvent(start + 1);
      push(1);
      assert.equal(q.needsInterrupt(), false, `start ${start}: used.idx ${start + 1} has not passed event`);
      push(1);
      assert.equal(q.needsInterrupt(), true, `start ${start}: used.idx ${start + 2} passed event ${start + 1}`);
      // A batch of three whose last element is the event one: fires.
      const base = (start + 2) & 0xffff;
      d.setUsedEvent(base + 2);
      push(3);
      assert.equal(q.needsInterrupt(), true, "event inside the batch");
      // Event exactly at the new index (one further than the batch reaches): no.
      const b2 = (base + 3) & 0xffff;
      d.setUsedEvent(b2 + 3);
      push(3);
      assert.equal(q.needsInterrupt(), false, "event not yet reached");
      assert.equal(q.needsInterrupt(), false, "nothing new");
      push(1);
      assert.equal(q.needsInterrupt(), true, "now it is");
      // NO_INTERRUPT means nothing with EVENT_IDX.
      d.setNoInterrupt(true);
      d.setUsedEvent(d.usedIdx());
      push(1);
      assert.equal(q.needsInterrupt(), true, "avail.flags ignored with EVENT_IDX");
      // An event far behind (the driver does not want to hear): no.
      d.setUsedEvent(d.usedIdx() - 100);
      push(2);
      assert.equal(q.needsInterrupt(), false, "event behind the window");
    });
  }
});

Deno.test("queue: enableNotifications without EVENT_IDX toggles NO_NOTIFY and rechecks", () => {
  setup({}, (d, q) => {
    assert.equal(q.enableNotifications(false), false);
    assert.equal(d.usedFlags(), VRING_USED_F_NO_NOTIFY);
    d.add([bytes(1)], []);
    assert.equal(d.needsNotify(), false, "driver sees NO_NOTIFY");
    assert.equal(q.enableNotifications(true), true, "a buffer arrived while notifications were off");
    assert.equal(d.usedFlags(), 0);
    popOk(q);
    assert.equal(q.enableNotifications(true), false);
    d.add([bytes(2)], []);
    assert.equal(d.needsNotify(), true, "driver rings");
    assert.equal(d.readAvailEvent(), 0, "avail_event untouched without EVENT_IDX");
  });
});

Deno.test("queue: enableNotifications with EVENT_IDX writes avail_event and rechecks", () => {
  setup({ eventIdx: true, startIndex: 65534 }, (d, q) => {
    const flags = d.usedFlags();
    d.add([bytes(1)], []);
    d.add([bytes(2)], []);
    assert.equal(d.needsNotify(), true, "avail_event = start: the first buffer rings");
    popOk(q);
    assert.equal(q.enableNotifications(false), true, "one still waiting");
    assert.equal(d.readAvailEvent(), 65534, "off writes nothing");
    popOk(q);
    assert.equal(q.lastAvailIdx, 0);
    assert.equal(q.enableNotifications(true), false);
    assert.equal(d.readAvailEvent(), 0, "avail_event = next index to read, across the wrap");
    assert.equal(d.usedFlags(), flags, "used.flags untouched with EVENT_IDX");
    d.add([bytes(3)], []);
    assert.equal(d.needsNotify(), true, "the very next buffer rings");
    d.add([bytes(4)], []);
    assert.equal(d.needsNotify(), false, "but not the one after");
    assert.equal(q.enableNotifications(true), true, "recheck sees both");
    assert.equal(d.readAvailEvent(), 0);
    popOk(q);
    popOk(q);
    assert.equal(q.enableNotifications(true), false);
    assert.equal(d.readAvailEvent(), 2);
  });
});
