/*T:215 The TSC-deadline bit (L:212) is ours to set: it appears in leaf 1
 * exactly when the caller says KVM has the capability, whatever KVM's own
 * table said, and no other leaf-1 bit moves because of it. :*/

import assert from "node:assert/strict";
import { guestCpuid } from "../../lib/kvm/cpu_setup.ts";
import type { CpuidEntry } from "../../lib/kvm/kvm.ts";

const TSC_DEADLINE = 1 << 24;
const LEAF1: CpuidEntry = {
  function: 1,
  index: 0,
  flags: 0,
  eax: 0x806c1,
  ebx: 0x800,
  ecx: 0x7ef8fbff,
  edx: 0xbfebfbff,
};

function leaf1(entries: CpuidEntry[]): CpuidEntry {
  const e = entries.find((x) => x.function === 1);
  assert.ok(e, "leaf 1 present");
  return e;
}

Deno.test("cpuid: TSC-deadline is set in leaf 1 when KVM has the capability, and only then", () => {
  assert.equal(LEAF1.ecx & TSC_DEADLINE, 0, "the sample host table lacks the bit, as KVM's does");
  const on = leaf1(guestCpuid([LEAF1], 0, 1, { tscDeadline: true }));
  const off = leaf1(guestCpuid([LEAF1], 0, 1, { tscDeadline: false }));
  const unset = leaf1(guestCpuid([LEAF1], 0, 1));
  assert.equal(on.ecx & TSC_DEADLINE, TSC_DEADLINE);
  assert.equal(off.ecx & TSC_DEADLINE, 0);
  assert.equal(unset.ecx & TSC_DEADLINE, 0);
  assert.equal((on.ecx & ~TSC_DEADLINE) >>> 0, off.ecx >>> 0, "no other ecx bit changes");
  assert.equal(on.edx, off.edx);
});
