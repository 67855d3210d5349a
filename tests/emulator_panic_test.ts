/*T:235 The recognizer of the test VM's GS-base panic (T:234) on the
 * console tails of the two boots that ended in it, and on what must not
 * pass for it: the same panic with GS and KERNEL_GS_BASE apart, another
 * panic, and any console outside the test VM. :*/

import assert from "node:assert/strict";
import { emulatorPanic } from "./helpers/emulator_stall.ts";

/** The last lines of the CI boot of 2026-12-05 that ended in it (Debian's bzImage on passt). */
const SEEN = `[   34.015162] RIP: 0033:0x40f4e8
[   34.015162]  </ENTRY_TRAMPOLINE>
[   34.015162] ---[ end trace 0000000000000000 ]---
[   34.015162] RIP: 0010:error_entry+0x10/0x130
[   34.015162] RSP: 0000:fffffe0000002000 EFLAGS: 00000083
[   34.015162] FS:  0000000000000000(0000) GS:ff1100000f600000(0000) knlGS:ff1100000f600000
[   34.015162] CS:  0010 DS: 0000 ES: 0000 CR0: 0000000080050033
[   34.015162] CR2: fffffe0000001ff8 CR3: 0000000005412000 CR4: 0000000000711eb0
[   34.015162] Kernel panic - not syncing: Fatal exception in interrupt
`;

function inTestVm<T>(on: boolean, body: () => T): T {
  const was = Deno.env.get("LGUEST_TEST_VM");
  if (on) Deno.env.set("LGUEST_TEST_VM", "tcg");
  else Deno.env.delete("LGUEST_TEST_VM");
  try {
    return body();
  } finally {
    if (was === undefined) Deno.env.delete("LGUEST_TEST_VM");
    else Deno.env.set("LGUEST_TEST_VM", was);
  }
}

Deno.test("emulator panic: the GS-base panic is recognised in the test VM, and nothing else is", () => {
  inTestVm(true, () => {
    assert.match(emulatorPanic(SEEN) ?? "", /GS = KERNEL_GS_BASE = 0xff1100000f600000/);
    const apart = SEEN.replace("knlGS:ff1100000f600000", "knlGS:0000000000000000");
    assert.equal(emulatorPanic(apart), undefined, "GS and KERNEL_GS_BASE apart: a real fault");
    assert.equal(emulatorPanic(SEEN.replace("error_entry", "do_syscall_64")), undefined, "another RIP");
    assert.equal(emulatorPanic(SEEN.replace("Kernel panic", "Kernel warning")), undefined, "no panic");
    assert.equal(emulatorPanic(""), undefined);
  });
  inTestVm(false, () => assert.equal(emulatorPanic(SEEN), undefined, "outside the test VM it is never excused"));
});
