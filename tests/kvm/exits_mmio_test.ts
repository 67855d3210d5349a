/** handleExit: MMIO of every length, and the exits that stop the VM (chapter T:330). */

import assert from "node:assert/strict";
import { handleExit } from "../../lib/kvm/exits.ts";
import { KVM_EXIT } from "../../lib/kvm/ioctl.ts";
import { assertStop, context, CONTINUE, mmioExit, page, R, Recorder, set } from "./exits_rig.ts";

Deno.test("exits: MMIO reads and writes of 1, 2, 4 and 8 bytes", () => {
  const cases = [
    [1, 0xa5, [0xa5]],
    [2, 0xa55a, [0x5a, 0xa5]],
    [4, 0x01020304, [4, 3, 2, 1]],
    [8, 0x0011_2233_4455_6677, [0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0]],
  ] as const;
  for (const [len, value, bytesLe] of cases) {
    const ctx = context();
    const d = new Recorder("virtio", () => value);
    ctx.mmio.add(0xd000_0000, 0x200, d);
    const { bytes, view } = page();
    mmioExit(view, 0xd000_0070, len, true);
    bytes.set(bytesLe, R["mmio.data"].offset);
    assert.deepEqual(handleExit(view, ctx), CONTINUE);
    assert.deepEqual(d.writes, [{ offset: 0x70, size: len, value }]);

    const r = page();
    mmioExit(r.view, 0xd000_01f8, len, false);
    assert.deepEqual(handleExit(r.view, ctx), CONTINUE);
    assert.deepEqual(d.reads, [{ offset: 0x1f8, size: len }]);
    const data = r.bytes.subarray(R["mmio.data"].offset, R["mmio.data"].offset + 8);
    assert.deepEqual([...data.subarray(0, len)], bytesLe);
    assert.ok(data.subarray(len).every((b) => b === 0), "bytes past the access are untouched");
  }
});

Deno.test("exits: unclaimed MMIO reads fill exactly len bytes with 0xff; writes are logged", () => {
  for (const len of [1, 2, 3, 4, 8]) {
    const ctx = context();
    const { bytes, view } = page();
    mmioExit(view, 0xfeb0_0000, len, false);
    assert.deepEqual(handleExit(view, ctx), CONTINUE);
    const data = bytes.subarray(R["mmio.data"].offset, R["mmio.data"].offset + 8);
    assert.deepEqual([...data], [...new Array(8).keys()].map((i) => i < len ? 0xff : 0));
    assert.deepEqual(ctx.lines, [`mmio: unclaimed read of ${len} bytes at 0xfeb00000`]);
  }
  const ctx = context();
  const { view } = page();
  mmioExit(view, 0x1234, 4, true);
  assert.deepEqual(handleExit(view, ctx), CONTINUE);
  assert.deepEqual(ctx.lines, ["mmio: unclaimed write of 4 bytes at 0x1234"]);
});

Deno.test("exits: bad MMIO lengths stop uncleanly; an MMIO reset request stops cleanly", () => {
  const ctx = context();
  const d = new Recorder("virtio", () => 0, "reset");
  ctx.mmio.add(0xd000_0000, 0x200, d);
  for (const len of [0, 9, 0xffff_ffff]) {
    const { view } = page();
    mmioExit(view, 0xd000_0000, len, true);
    assertStop(handleExit(view, ctx), false, new RegExp(`^bad MMIO length ${len} at 0xd0000000$`));
  }
  assert.equal(d.writes.length, 0);
  const { view } = page();
  mmioExit(view, 0xd000_0010, 4, true);
  assertStop(handleExit(view, ctx), "reset", /^reset requested by virtio$/);
});

Deno.test("exits: shutdown, halt and system events", () => {
  const ctx = context();
  const { view } = page();
  set(view, { exit_reason: KVM_EXIT.SHUTDOWN });
  assertStop(handleExit(view, ctx), "triple-fault", /triple fault/);
  set(view, { exit_reason: KVM_EXIT.HLT });
  assertStop(handleExit(view, ctx), "halt", /^guest halted$/);
  set(view, { exit_reason: KVM_EXIT.SYSTEM_EVENT, "system_event.type": 1 });
  assertStop(handleExit(view, ctx), "power-off", /^guest powered off$/);
  set(view, { "system_event.type": 2 });
  assertStop(handleExit(view, ctx), "reset", /^guest reset$/);
  set(view, { "system_event.type": 3 });
  assertStop(handleExit(view, ctx), false, /^guest system event 3 \(crash\)$/);
  set(view, { "system_event.type": 0 });
  assertStop(handleExit(view, ctx), false, /system event 0/);
  set(view, { exit_reason: KVM_EXIT.INTR });
  assert.deepEqual(handleExit(view, ctx), { kind: "interrupted" });
});

Deno.test("exits: internal errors name the suberror and the data words in hex", () => {
  const ctx = context();
  const { view } = page();
  set(view, { exit_reason: KVM_EXIT.INTERNAL_ERROR, "internal.suberror": 1, "internal.ndata": 2 });
  view.setBigUint64(R["internal.data"].offset, 0xdeadn, true);
  view.setBigUint64(R["internal.data"].offset + 8, 0xffff_ffff_8100_0000n, true);
  view.setBigUint64(R["internal.data"].offset + 16, 0x5555n, true); // beyond ndata
  const r = handleExit(view, ctx);
  assertStop(r, false, /suberror 1 \(emulation failure\)/);
  assert.ok(r.kind === "stop" && r.reason.endsWith("data [0xdead 0xffffffff81000000]"), JSON.stringify(r));
  assert.ok(r.kind === "stop" && !r.reason.includes("0x5555"));

  set(view, { "internal.suberror": 3, "internal.ndata": 0 });
  assertStop(handleExit(view, ctx), false, /^KVM internal error: suberror 3 \(delivery event\)$/);
  set(view, { "internal.suberror": 2 });
  assertStop(handleExit(view, ctx), false, /simultaneous exception/);
  set(view, { "internal.suberror": 77, "internal.ndata": 0xffff_ffff });
  const many = handleExit(view, ctx);
  assertStop(many, false, /suberror 77 \(unknown\)/);
  assert.ok(many.kind === "stop");
  assert.equal(many.reason.split("data [")[1]!.split(" ").length, 16, "ndata is capped at the 16 words KVM has");
});

Deno.test("exits: failed entry and unknown exits report the hardware reason in hex", () => {
  const ctx = context();
  const { view } = page();
  set(view, { exit_reason: KVM_EXIT.FAIL_ENTRY, "fail_entry.hardware_entry_failure_reason": 0x8000_0021 });
  assertStop(handleExit(view, ctx), false, /^KVM entry failed: hardware reason 0x80000021$/);
  set(view, { exit_reason: KVM_EXIT.UNKNOWN, "hw.hardware_exit_reason": 0x30 });
  assertStop(handleExit(view, ctx), false, /^unknown exit: hardware reason 0x30$/);
  for (const reason of [99, KVM_EXIT.EXCEPTION, KVM_EXIT.DEBUG, 0xffff_ffff]) {
    set(view, { exit_reason: reason });
    assertStop(handleExit(view, ctx), false, new RegExp(`^unexpected exit reason ${reason}$`));
  }
});
