// lguest-test-needs: kvm
/*T:210 Every mistake a user can make on the command line must come back as
 * exactly one line on stderr that names the problem, and a non-zero exit,
 * before any guest runs. These run the real CLI in a subprocess. :*/

import assert from "node:assert/strict";
import { parseCli, UsageError } from "../cli.ts";
import { buildTestGuest } from "./guest/build.ts";
import { runLauncher } from "./helpers/launcher.ts";

async function expectOneLineError(args: string[], pattern: RegExp, env: Record<string, string> = {}): Promise<void> {
  const run = await runLauncher(args, { env });
  assert.equal(run.code, 1, `exit status for ${args.join(" ")}`);
  assert.equal(run.stdout, "", "nothing on stdout");
  const lines = run.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `one line on stderr, got: ${run.stderr}`);
  assert.match(lines[0]!, /^lguest: /);
  assert.match(lines[0]!, pattern);
}

Deno.test("parseCli: options, memory, kernel, and guest arguments after the kernel", () => {
  const a = parseCli(["--verbose", "--initrd=i.img", "128", "vmlinux", "console=ttyS0", "--not-ours", "-v"]);
  assert.equal(a.verbose, true);
  assert.equal(a.initrd, "i.img");
  assert.equal(a.memoryMiB, 128);
  assert.equal(a.kernel, "vmlinux");
  assert.deepEqual(a.kernelArgs, ["console=ttyS0", "--not-ours", "-v"]);
  assert.equal(a.acpi, true, "ACPI tables unless --no-acpi");
  assert.equal(parseCli(["--no-acpi", "64", "k"]).acpi, false);
  assert.deepEqual(parseCli(["64", "k", "--no-acpi"]).kernelArgs, ["--no-acpi"], "after the kernel it is the guest's");
  const b = parseCli(["--block", "disk.img", "--tunnet=10.0.0.1", "--block=two.img", "64", "bzImage"]);
  assert.deepEqual(b.block, ["disk.img", "two.img"]);
  assert.deepEqual(b.tunnet, ["10.0.0.1"]);
  assert.deepEqual(b.kernelArgs, []);
  const c = parseCli(["--", "64", "k", "-x"]);
  assert.equal(c.kernel, "k");
  assert.deepEqual(c.kernelArgs, ["-x"]);
});

Deno.test("parseCli: rejects bad memory sizes and unknown options", () => {
  for (const mem of ["abc", "0", "1.5", "-3", "12MB", "0x10"]) {
    assert.throws(() => parseCli([mem, "vmlinux"]), UsageError, `memory '${mem}'`);
  }
  assert.throws(() => parseCli(["--frobnicate", "64", "k"]), UsageError);
  assert.throws(() => parseCli(["64"]), /expected <mem-in-mb> and a kernel/);
  assert.throws(() => parseCli(["99999999999", "k"]), /more than/);
});

Deno.test("cli: --help and --version", async () => {
  const help = await runLauncher(["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: lguest \[options\] <mem-in-mb> <vmlinux\|bzImage>/);
  for (const opt of ["--initrd", "--block", "--tunnet", "--cpus", "--no-acpi", "--verbose", "--help", "--version"]) {
    assert.ok(help.stdout.includes(opt), `help mentions ${opt}`);
  }
  const version = await runLauncher(["--version"]);
  assert.equal(version.code, 0);
  assert.match(version.stdout, /^lguest \d+\.\d+\.\d+\n$/);
});

Deno.test("cli: bad input gets one line and exit 1", async (t) => {
  const dir = await Deno.makeTempDir();
  const text = `${dir}/notes.txt`;
  await Deno.writeTextFile(text, "this is not a kernel\n".repeat(100));
  const truncated = `${dir}/truncated.elf`;
  const guest = await buildTestGuest();
  await Deno.writeFile(truncated, (await Deno.readFile(guest)).slice(0, 100));
  const big = `${dir}/big.img`;
  await Deno.writeFile(big, new Uint8Array(20 * 1024 * 1024));
  try {
    const cases: Array<[string, string[], RegExp, Record<string, string>?]> = [
      ["no arguments", [], /expected <mem-in-mb> and a kernel/],
      ["memory not a number", ["lots", guest], /memory size 'lots' is not a positive whole number/],
      ["memory zero", ["0", guest], /not a positive whole number/],
      ["memory larger than the host", ["900000", guest], /more than this host's \d+ MiB of RAM/],
      ["unknown option", ["--frobnicate", "64", guest], /frobnicate/],
      ["no vCPUs", ["--cpus=0", "64", guest], /--cpus=0 is not a whole number from 1 to 64/],
      ["too many vCPUs", ["--cpus=65", "64", guest], /--cpus=65 is not a whole number from 1 to 64/],
      ["missing kernel", ["64", `${dir}/nope`], /kernel '.*nope' does not exist/],
      ["kernel is a directory", ["64", dir], /is not a regular file/],
      ["missing initrd", [`--initrd=${dir}/nope`, "64", guest], /initrd '.*nope' does not exist/],
      ["missing block file", [`--block=${dir}/nope`, "64", guest], /block device file '.*nope' does not exist/],
      ["bad tunnet", ["--tunnet=10.0.0", "64", guest], /--tunnet=10\.0\.0: expected an IPv4 address or bridge:<name>/],
      ["bad bridge name", ["--tunnet=bridge:", "64", guest], /bad bridge name/],
      // The kernel and initrd are checked before /dev/kvm is opened, so these need no KVM.
      ["not a kernel", ["64", text], /notes\.txt: .*(bzImage|kernel)/i],
      ["truncated ELF", ["64", truncated], /truncated\.elf: /],
      ["initrd too big for RAM", [`--initrd=${big}`, "16", guest], /initrd .*big\.img.* does not fit/],
      ["no /dev/kvm", ["64", guest], /\/nonexistent\/kvm does not exist/, { LGUEST_KVM: "/nonexistent/kvm" }],
      ["memory too small", ["1", guest], /too small/],
    ];
    for (const [name, args, pattern, env] of cases) {
      await t.step(name, () => expectOneLineError(args, pattern, env));
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
