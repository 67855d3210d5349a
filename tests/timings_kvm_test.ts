// lguest-test-needs: kvm
/*T:813 --timings end to end: the launcher boots the test guest, whose C
 * code writes 1 to the boot timer as it starts (tests/guest/guest.c), and
 * prints at exit one line per phase. Every phase must be there, printed in
 * time order, and the order must be the boot's own: the VM built and the
 * vCPU Worker's modules loaded before the kernel was entered, the guest's
 * boot-timer write and its first console byte after that, the guest
 * stopped after both, the teardown last. The boot timer's live line says
 * the same time as the table. Without --timings or --verbose the boot
 * timer prints nothing. Only orders are checked, never a duration. :*/

import assert from "node:assert/strict";
import { buildTestGuest } from "./guest/build.ts";
import { HAVE_KVM, runLauncher } from "./helpers/launcher.ts";
import { parseBootTimerLines, PHASES, TIMINGS_HEADING } from "../lib/timings.ts";

if (!HAVE_KVM) console.log("timings_kvm_test: /dev/kvm cannot be opened here; skipping");

/** The table's rows after the heading: label and ms, in printed order. */
function table(stderr: string): Array<{ label: string; ms: number }> {
  const lines = stderr.split("\n");
  const at = lines.indexOf(`lguest: ${TIMINGS_HEADING}`);
  assert.ok(at >= 0, `no timings table in:\n${stderr}`);
  return lines.slice(at + 1).filter((l) => l.startsWith("lguest: ")).map((l) => {
    const m = /^lguest: +([0-9.]+|-) {2}(.*)$/.exec(l);
    assert.ok(m, `not a timings row: ${l}`);
    return { label: m[2]!, ms: m[1] === "-" ? NaN : Number(m[1]) };
  });
}

Deno.test({
  name: "timings: every phase of a test-guest boot, in the boot's order",
  ignore: !HAVE_KVM,
  async fn() {
    const guest = await buildTestGuest();
    const run = await runLauncher(["--no-acpi", "--timings", "64", guest, "root=/dev/null"]);
    assert.equal(run.code, 0, `exit status (stderr: ${run.stderr})`);
    const rows = table(run.stderr);
    const at = (label: string) => {
      const row = rows.find((r) => r.label === label);
      assert.ok(row !== undefined && Number.isFinite(row.ms), `${label} missing from:\n${run.stderr}`);
      return row.ms;
    };
    for (const phase of PHASES) at(phase);
    const timer = at("boot timer (value 1)");
    assert.equal(rows.length, PHASES.length + 1, `one row per phase and one boot-timer write:\n${run.stderr}`);
    for (let i = 1; i < rows.length; i++) {
      assert.ok(rows[i - 1]!.ms <= rows[i]!.ms, `rows in time order:\n${run.stderr}`);
    }
    assert.ok(at("runtime up") <= at("VM built"));
    assert.ok(at("VM built") <= at("kernel entered") && at("modules loaded") <= at("kernel entered"));
    assert.ok(at("kernel entered") <= timer && timer <= at("first console byte"), "C code starts, then prints");
    assert.ok(at("first console byte") <= at("guest stopped") && at("guest stopped") <= at("torn down"));
    assert.equal(rows.at(-1)!.label, "torn down");
    const live = parseBootTimerLines(run.stderr);
    assert.equal(live.length, 1, run.stderr);
    assert.equal(live[0]!.value, 1);
    assert.ok(Math.abs(live[0]!.ms - timer) <= 0.1, `live line ${live[0]!.ms} ms, table ${timer} ms`);
  },
});

Deno.test({
  name: "timings: without --timings or --verbose the boot timer is silent",
  ignore: !HAVE_KVM,
  async fn() {
    const guest = await buildTestGuest();
    const run = await runLauncher(["--no-acpi", "64", guest, "root=/dev/null"]);
    assert.equal(run.code, 0, `exit status (stderr: ${run.stderr})`);
    assert.match(run.stdout, /lguest test guest/);
    assert.doesNotMatch(run.stderr, /boot timer/);
  },
});
