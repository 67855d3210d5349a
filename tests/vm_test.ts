/*T:063 The test VM runner, tested from the outside: a command's status
 * and both its output streams come back, the VM really has a /dev/kvm and
 * really writes through to the shared checkout; a command that hangs is
 * ended at its timeout with QEMU gone; and stopping the runner, politely
 * (SIGINT, as Ctrl-C does) or not (SIGKILL), leaves no QEMU behind. Each
 * case boots the VM once (about ten seconds of emulation). :*/

import assert from "node:assert/strict";
import { lockupProblem, runInVm, STUCK_FOR_GOOD_S } from "../scripts/vm/run.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const opts = { sanitizeResources: false, sanitizeOps: false };

/** Processes whose parent is `pid`, by name. */
function childrenOf(pid: number): { pid: number; comm: string }[] {
  const out = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
      const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) out.push({ pid: Number(e.name), comm });
    } catch {
      // The process ended while we looked.
    }
  }
  return out;
}

function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

async function waitFor(what: string, cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

Deno.test({
  name: "vm: a command's status, stdout and stderr come back; /dev/kvm is there; shares are written through",
  ...opts,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "lgvm-test-" });
    try {
      const script = [
        "echo to-stdout",
        "echo to-stderr >&2",
        "test -c /dev/kvm && echo kvm-present",
        `echo written-in-vm > ${dir}/from-vm`,
        "exit 7",
      ].join("; ");
      const r = await runInVm(["sh", "-c", script], { cwd: ROOT, shares: [ROOT, dir], output: "capture" });
      assert.equal(r.problem, undefined);
      assert.equal(r.code, 7);
      assert.equal(r.stdout, "to-stdout\nkvm-present\n");
      assert.match(r.stderr, /^to-stderr$/m);
      assert.doesNotMatch(r.stdout, /to-stderr/);
      assert.equal(await Deno.readTextFile(`${dir}/from-vm`), "written-in-vm\n");
      assert.match(r.kernelLog, /lgvm: exit 7/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "vm: a command that hangs is ended at the timeout, with QEMU gone",
  ...opts,
  async fn() {
    const before = childrenOf(Deno.pid).filter((c) => c.comm.startsWith("qemu")).length;
    const r = await runInVm(["sleep", "600"], { cwd: ROOT, timeoutMs: 25_000, output: "capture" });
    assert.equal(r.code, undefined);
    assert.match(r.problem ?? "", /did not finish within 25 s; QEMU stopped/);
    assert.ok(r.seconds < 60, `ended after ${r.seconds} s`);
    assert.equal(childrenOf(Deno.pid).filter((c) => c.comm.startsWith("qemu")).length, before);
  },
});

for (const signal of ["SIGINT", "SIGKILL"] as const) {
  Deno.test({
    name: `vm: ${signal} to the runner leaves no QEMU behind`,
    ...opts,
    async fn() {
      const runner = new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", `${ROOT}scripts/vm.ts`, "--", "sleep", "600"],
        cwd: ROOT,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const output = runner.output();
      let qemu = 0;
      try {
        await waitFor("QEMU to start", () => {
          qemu = childrenOf(runner.pid).find((c) => c.comm.startsWith("qemu"))?.pid ?? 0;
          return qemu > 0;
        }, 60_000);
        // Let the VM boot far enough to be running the command.
        await new Promise((r) => setTimeout(r, 5_000));
        runner.kill(signal);
        const out = await output;
        if (signal === "SIGINT") {
          assert.equal(out.code, 130);
          assert.match(new TextDecoder().decode(out.stderr), /vm: stopped by SIGINT/);
        }
        await waitFor("QEMU to end", () => !alive(qemu), 10_000);
      } finally {
        if (qemu && alive(qemu)) Deno.kill(qemu, "SIGKILL");
        try {
          runner.kill("SIGKILL");
        } catch {
          // Already gone.
        }
        await output.catch(() => {});
      }
    },
  });
}

Deno.test("vm: a CPU reported stuck for minutes ends the run; one that ran late under a busy host does not", () => {
  const late = "[  80.1] watchdog: BUG: soft lockup - CPU#1 stuck for 122s! [deno:512]\n" +
    "[ 210.3] watchdog: BUG: soft lockup - CPU#0 stuck for 130s! [qemu:77]\n";
  assert.equal(lockupProblem(late), undefined);
  const hung = `${late}[ 330.0] watchdog: BUG: soft lockup - CPU#1 stuck for ${STUCK_FOR_GOOD_S}s! [deno:512]\n`;
  assert.equal(
    lockupProblem(hung),
    `vm: the VM's kernel is stuck: BUG: soft lockup - CPU#1 stuck for ${STUCK_FOR_GOOD_S}s! [deno:512]`,
  );
});
