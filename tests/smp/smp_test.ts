// lguest-test-needs: kvm
/*T:703 Several vCPUs on the real /dev/kvm, with the test guest, which runs
 * on vCPU 0 and leaves the others waiting for INIT/SIPI (T:702). Whatever
 * ends the run, a reset on vCPU 0, stop(), SIGTERM or three Ctrl-C, must end
 * every vCPU: the run reports how it ended, and the process ends by itself
 * within 2 s of its last line, which it cannot while any vCPU's Worker is
 * alive. The launcher's --verbose names every vCPU thread it started. :*/

import assert from "node:assert/strict";
import { buildTestGuest } from "../guest/build.ts";
import { HAVE_KVM, runLauncher } from "../helpers/launcher.ts";
import { type ProbeRun, runProbe } from "../helpers/probe_run.ts";
import { StreamText } from "../helpers/exposure.ts";

if (!HAVE_KVM) console.log("smp_test: /dev/kvm cannot be opened here; skipping");

const PROBE = new URL("../helpers/smp_probe.ts", import.meta.url).pathname;
const CLI = new URL("../../cli.ts", import.meta.url).pathname;
const BOOT_MS = 120_000;
const EXIT_WITHIN_MS = 2000;

interface SmpRun extends ProbeRun {
  result: { clean: boolean; reason: string; exits: number };
}

async function probe(cpus: number, how: "reset" | "stop"): Promise<SmpRun> {
  const guest = await buildTestGuest();
  const run = await runProbe([PROBE, String(cpus), how, guest], how === "stop", BOOT_MS);
  const result = JSON.parse(/^RUN (.*)$/m.exec(run.stdout)?.[1] ?? "null");
  return { ...run, result };
}

function assertAllEnded(r: SmpRun, cpus: number): void {
  const why = `stdout: ${r.stdout.slice(-600)}\nstderr: ${r.stderr.slice(-1500)}`;
  assert.equal(r.code, 0, why);
  for (let id = 0; id < cpus; id++) {
    assert.match(r.stderr, new RegExp(`^lguest: vCPU ${id} running on thread \\d+$`, "m"), `vCPU ${id} ran; ${why}`);
  }
  assert.doesNotMatch(r.stderr, new RegExp(`vCPU ${cpus} running`), "no more threads than vCPUs");
  assert.doesNotMatch(r.stderr, /given up on|thread failed|crashed/, why);
  assert.match(r.stdout, /^CLOSED$/m, why);
  assert.ok(r.lingerMs >= 0 && r.lingerMs < EXIT_WITHIN_MS, `ended ${r.lingerMs} ms after its last line; ${why}`);
}

Deno.test({
  name: "smp: a reset on vCPU 0 while the others wait for INIT/SIPI ends every vCPU, cleanly",
  ignore: !HAVE_KVM,
  async fn() {
    const r = await probe(3, "reset");
    assertAllEnded(r, 3);
    assert.equal(r.result.clean, true);
    assert.match(r.result.reason, /reset requested by i8042/);
    assert.match(r.stdout, /^DONE$/m, "the guest finished its checks on vCPU 0");
  },
});

Deno.test({
  name: "smp: stop() ends every vCPU of a guest asleep in hlt, cleanly",
  ignore: !HAVE_KVM,
  async fn() {
    const r = await probe(2, "stop");
    assertAllEnded(r, 2);
    assert.deepEqual([r.result.clean, r.result.reason], [true, "stopped"]);
  },
});

Deno.test({
  name: "smp: the launcher with --cpus=2 boots the test guest, says so, and ends both vCPUs on SIGTERM",
  ignore: !HAVE_KVM,
  async fn() {
    const guest = await buildTestGuest();
    const boot = await runLauncher(["--cpus=2", "--verbose", "--no-acpi", "32", guest]);
    assert.equal(boot.code, 0, boot.stderr);
    assert.match(boot.stderr, /^lguest: vCPU 0 running on thread \d+$/m);
    assert.match(boot.stderr, /^lguest: vCPU 1 running on thread \d+$/m);
    assert.match(boot.stderr, /reset requested by i8042/);
    assert.match(boot.stdout, /^DONE$/m);

    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", CLI, "--cpus=2", "--no-acpi", "32", guest, "lguest.echo"],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const killer = setTimeout(() => child.kill("SIGKILL"), BOOT_MS + 60_000);
    const stdout = new StreamText(child.stdout);
    const stderr = new StreamText(child.stderr);
    try {
      await stdout.waitFor("ECHO-READY", BOOT_MS);
      await new Promise((r) => setTimeout(r, 500));
      const sent = Date.now();
      child.kill("SIGTERM");
      const status = await child.status;
      assert.equal(status.code, 143, stderr.text);
      assert.ok(Date.now() - sent < EXIT_WITHIN_MS + 1000, "ended promptly");
    } finally {
      clearTimeout(killer);
      await child.stdin.close().catch(() => {});
      await Promise.all([stdout.done, stderr.done]);
    }
  },
});
