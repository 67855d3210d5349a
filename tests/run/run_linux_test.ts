// lguest-test-needs: guest-kernel
/*T:768 The runner and the scripting API on Linux, the project's own build
 * (scripts/linux.ts, no ACPI): `lguest run` passes a command's output
 * through byte for byte and exits with its status, and the README's
 * TypeScript example (examples/script_shell.ts) waits for the shell's
 * prompt, runs `uname -r` and `cat /proc/cpuinfo | wc -l`, checks both and
 * reboots the guest (this kernel has no ACPI to power off with). In the
 * test VM, a boot that ends in the emulator's known stall (T:236) is
 * booted again, a bounded number of times. :*/

import assert from "node:assert/strict";
import { ensureLinux } from "../../scripts/linux.ts";
import { linuxUnreachable, pastEmulatorStalls, TEST_VM_GUEST_ARGS } from "../helpers/emulator_stall.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const WHY_NOT = linuxUnreachable();
if (WHY_NOT) console.log(`run_linux_test: skipping: ${WHY_NOT}`);

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Runs a deno program, SIGTERM after `timeoutMs`. */
async function spawn(args: string[], timeoutMs: number): Promise<Ran> {
  const child = new Deno.Command(Deno.execPath(), { args, cwd: ROOT, stdin: "null", stdout: "piped", stderr: "piped" })
    .spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGTERM");
  }, timeoutMs);
  const out = await child.output();
  clearTimeout(timer);
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr), timedOut };
}

/** The test VM's extra kernel words (T:237), as `lguest run` options. */
const APPEND = TEST_VM_GUEST_ARGS.map((w) => `--append=${w}`);

const show = (r: Ran) => `exit ${r.code}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr.slice(-3000)}`;

Deno.test({
  name: "lguest run: a command's output, byte for byte, and its exit status",
  ignore: WHY_NOT !== undefined,
  async fn() {
    const linux = await ensureLinux({ log: (s) => console.log(`linux: ${s}`) });
    const command = `uname -r; printf 'a  b\\tc\\n'; echo to-stderr >&2; printf 'no newline'; exit 3`;
    const r = await pastEmulatorStalls(
      "run",
      linux.vmlinux,
      () =>
        spawn(
          ["run", "-A", "cli.ts", "run", "--no-acpi", "--verbose", ...APPEND, linux.bzImage, "--", command],
          180_000,
        ),
      (r) => ({ ...r, console: r.stdout }),
    );
    // The guest has one console: the command's stderr comes back on the same stream as its stdout.
    assert.equal(r.stdout, `${linux.version}\na  b\tc\nto-stderr\nno newline`, show(r));
    assert.equal(r.code, 3, show(r));
  },
});

Deno.test({
  name: "README example: a script waits for the shell, runs uname -r and counts /proc/cpuinfo, reboots",
  ignore: WHY_NOT !== undefined,
  async fn() {
    const linux = await ensureLinux({ log: (s) => console.log(`linux: ${s}`) });
    const r = await pastEmulatorStalls(
      "run",
      linux.vmlinux,
      () =>
        spawn(["run", "-A", "examples/script_shell.ts", linux.bzImage, "--no-acpi", ...TEST_VM_GUEST_ARGS], 240_000),
      (r) => ({ stderr: r.stderr, timedOut: /did not appear within/.test(r.stderr), console: r.stdout + r.stderr }),
    );
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, new RegExp(`^uname -r: ${linux.version.replaceAll(".", "\\.")}$`, "m"), show(r));
    const lines = Number(/^\/proc\/cpuinfo: (\d+) lines$/m.exec(r.stdout)?.[1]);
    assert.ok(lines >= 10, `a CPU's entry in /proc/cpuinfo is more than 10 lines\n${show(r)}`);
    assert.match(r.stdout, /^run ended: reset \(reset requested by i8042\)$/m, show(r));
  },
});

Deno.test({
  name: "lguest run: SIGINT while the command runs stops the guest and exits 130",
  ignore: WHY_NOT !== undefined,
  async fn() {
    const linux = await ensureLinux({ log: (s) => console.log(`linux: ${s}`) });
    const r = await pastEmulatorStalls("run", linux.vmlinux, async () => {
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          "cli.ts",
          "run",
          "--no-acpi",
          "--verbose",
          ...APPEND,
          linux.bzImage,
          "--",
          "echo started; sleep 600",
        ],
        cwd: ROOT,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const errText = new Response(child.stderr).text();
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        child.kill("SIGTERM");
      }, 180_000);
      let stdout = "";
      let signalledAt = 0;
      for await (const chunk of child.stdout) {
        stdout += new TextDecoder().decode(chunk);
        if (signalledAt === 0 && stdout.includes("started\n")) {
          signalledAt = Date.now();
          child.kill("SIGINT");
        }
      }
      const status = await child.status;
      clearTimeout(timer);
      return { code: status.code, stdout, stderr: await errText, timedOut, endedAfterMs: Date.now() - signalledAt };
    }, (r) => ({ ...r, console: r.stdout + r.stderr }));
    assert.equal(r.stdout, "started\n", show(r));
    assert.equal(r.code, 130, show(r));
    assert.ok(r.endedAfterMs < 5000, `the runner took ${r.endedAfterMs} ms to end after SIGINT\n${show(r)}`);
  },
});
