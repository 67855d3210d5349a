/**
 * Drives a Linux guest's shell from TypeScript: boot, wait for the prompt, run two commands, check
 * what they print, power off. Run it as
 * `deno run -A examples/script_shell.ts <bzImage|vmlinux> [--no-acpi] [kernel words...]`; it exits 0 when every
 * check passed. The kernel needs a serial console; the shell is busybox, from the runner's initramfs.
 *
 * @module
 */

import { Machine, runInitramfs, SHELL_PROMPT } from "../mod.ts";

const [kernel, ...flags] = Deno.args;
if (kernel === undefined) {
  console.error("usage: script_shell.ts <bzImage|vmlinux> [--no-acpi] [kernel words...]");
  Deno.exit(2);
}

const acpi = !flags.includes("--no-acpi");
await using machine = Machine.create({
  memoryMiB: 256,
  kernel,
  initrd: await runInitramfs({ nonce: "shell" }), // no command: /init starts an interactive shell
  cmdline: ["console=ttyS0", "quiet", "panic=-1", ...flags.filter((f) => !f.startsWith("--"))],
  acpi,
  console: "script",
});
const run = machine.run();

/** Types a command and returns what it printed, up to the next prompt. */
async function sh(command: string): Promise<string> {
  await machine.console.write(`${command}\n`);
  return (await machine.console.waitFor(SHELL_PROMPT, { timeoutMs: 30_000 })).before;
}

try {
  await machine.console.waitFor(SHELL_PROMPT, { timeoutMs: 120_000 });
  const release = (await sh("uname -r")).trim();
  const cpuinfoLines = Number((await sh("cat /proc/cpuinfo | wc -l")).trim());
  console.log(`uname -r: ${release}`);
  console.log(`/proc/cpuinfo: ${cpuinfoLines} lines`);
  // Without ACPI a kernel cannot power the machine off (it would halt with interrupts off, for ever): reboot instead.
  await machine.console.write(acpi ? "poweroff -f\n" : "reboot -f\n");
  const result = await run;
  console.log(`run ended: ${result.end} (${result.reason})`);
  if (!/^\d+\.\d+\.\d+/.test(release) || !(cpuinfoLines > 0) || !result.clean) Deno.exitCode = 1;
} catch (e) {
  // Say where the guest was when the script gave up on it.
  machine.stop();
  const result = await run;
  console.error(`${e instanceof Error ? e.message : e}\nguest stopped at rip 0x${result.rip?.toString(16)}`);
  Deno.exitCode = 1;
}
