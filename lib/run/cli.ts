/*L:448 `lguest run`: the runner on the command line. Everything after
 * the kernel (or after `--`) is the command, joined with spaces as ssh
 * does, so `lguest run bzImage -- 'uname -r; exit 3'` and `lguest run
 * bzImage uname -r` both work. The exit status is the command's own; when
 * there is none to give (the launcher or the guest failed first) it is
 * 125, the status `docker run` uses for "the runner failed, not your
 * command", with one line saying why. A signal stops the guest and exits
 * 128 + its number, like the launcher itself. :*/

import { parseArgs } from "node:util";
import { runCommand, writeAllSync } from "./command.ts";
import { parseBlockSpec } from "../virtio/blk/spec.ts";
import { guardTerminal } from "../terminal_guard.ts";
import { RawTerminal } from "../sys/termios.ts";
import type { VirtioDevice } from "../virtio/device.ts";

/** The exit status when there is no command status to report. */
export const RUN_FAILED = 125;

/** The subcommand's help. */
export const RUN_USAGE = `Usage: lguest run [options] <vmlinux|bzImage> [--] <command...>

Boots the kernel with a small busybox initramfs made on the spot, runs the
shell command in the guest, prints its output here as it arrives, powers the
guest off and exits with the command's exit status. The kernel needs a serial
console (CONFIG_SERIAL_8250_CONSOLE); the guest's boot messages are hidden.

Options:
  --mem=<MiB>            guest RAM (default 256)
  --cpus=<n>             vCPUs (default 1)
  --block=<file>[,ro]    a virtio disk (repeatable; the first is /dev/vda)
  --rng                  a virtio entropy device
  --no-acpi              no ACPI tables (kernels without CONFIG_ACPI)
  --append=<words>       more kernel command-line words (repeatable)
  --show-boot            print the boot's console output on stderr
  -v, --verbose          the launcher's own log on stderr
  -h, --help             show this help

Exit status: the command's; 125 when lguest or the guest failed before the
command finished; 129/130/143 when stopped by SIGHUP/SIGINT/SIGTERM.`;

/** What `lguest run` was asked. */
export interface RunArgs {
  kernel: string;
  command: string;
  memoryMiB: number;
  cpus: number;
  block: Array<{ path: string; readOnly: boolean }>;
  rng: boolean;
  acpi: boolean;
  /** More kernel command-line words. */
  append: string[];
  showBoot: boolean;
  verbose: boolean;
  help: boolean;
}

/**
 * Parses `lguest run`'s arguments (those after "run").
 * @throws Error with a one-line message for bad arguments
 */
export function parseRunArgs(argv: readonly string[]): RunArgs {
  // Options end at the kernel: what follows it is the command's, dashes and all.
  let i = 0;
  while (i < argv.length && argv[i]!.startsWith("-") && argv[i] !== "--") {
    i += ["--mem", "--cpus", "--block", "--append"].includes(argv[i]!) ? 2 : 1;
  }
  const rest = argv.slice(i);
  const kernel = rest[0] === "--" ? undefined : rest[0];
  const command = rest.slice(1).filter((a, j) => !(j === 0 && a === "--"));
  const { values } = parseArgs({
    args: argv.slice(0, i),
    allowPositionals: false,
    strict: true,
    options: {
      mem: { type: "string" },
      cpus: { type: "string" },
      block: { type: "string", multiple: true },
      append: { type: "string", multiple: true },
      rng: { type: "boolean" },
      "no-acpi": { type: "boolean" },
      "show-boot": { type: "boolean" },
      verbose: { type: "boolean", short: "v" },
      help: { type: "boolean", short: "h" },
    },
  });
  const positiveInt = (v: string | undefined, name: string, dflt: number) => {
    if (v === undefined) return dflt;
    if (!/^[1-9][0-9]*$/.test(v)) throw new Error(`--${name} wants a positive whole number, not '${v}'`);
    return Number(v);
  };
  const args = {
    kernel: kernel ?? "",
    command: command.join(" "),
    memoryMiB: positiveInt(values.mem, "mem", 256),
    cpus: positiveInt(values.cpus, "cpus", 1),
    block: (values.block ?? []).map(parseBlockSpec),
    rng: values.rng ?? false,
    acpi: !(values["no-acpi"] ?? false),
    append: (values.append ?? []).flatMap((a) => a.split(/\s+/)).filter((w) => w.length > 0),
    showBoot: values["show-boot"] ?? false,
    verbose: values.verbose ?? false,
    help: values.help ?? false,
  };
  if (!args.help && args.kernel === "") throw new Error("run: no kernel given (see lguest run --help)");
  if (!args.help && args.command.trim() === "") throw new Error("run: no command given (see lguest run --help)");
  return args;
}

/**
 * `lguest run ...`: returns the process exit status.
 * @param argv the arguments after "run"
 */
export async function runMain(argv: readonly string[]): Promise<number> {
  let args: RunArgs;
  try {
    args = parseRunArgs(argv);
  } catch (e) {
    console.error(`lguest: ${e instanceof Error ? e.message : String(e)}`);
    return RUN_FAILED;
  }
  if (args.help) {
    console.log(RUN_USAGE);
    return 0;
  }
  const abort = new AbortController();
  // The launcher's own signal rules (L:060); the terminal is never made raw here, so there is nothing to restore.
  const guard = guardTerminal(new RawTerminal(0), () => abort.abort());
  try {
    const r = await runCommand({
      kernel: args.kernel,
      command: args.command,
      memoryMiB: args.memoryMiB,
      cpus: args.cpus,
      acpi: args.acpi,
      cmdline: args.append,
      devices: await openDevices(args),
      kvmPath: Deno.env.get("LGUEST_KVM") ?? "/dev/kvm",
      verbose: args.verbose,
      ...(args.showBoot ? { bootLog: (b: Uint8Array) => writeAllSync(b, Deno.stderr) } : {}),
      signal: abort.signal,
    });
    if (args.verbose || r.status === undefined) {
      const where = r.run.rip === undefined ? "" : ` at rip 0x${r.run.rip.toString(16)}`;
      console.error(`lguest: ${r.run.reason}${where} (${r.run.exits} exits)`);
    }
    if (guard.signalled !== undefined) return guard.signalled;
    if (r.status !== undefined) return r.status;
    const tail = r.lastLines.slice(-5).map((l) => `\n  | ${l}`).join("");
    console.error(`lguest: the guest stopped before the command finished (${r.run.reason})${tail}`);
    return RUN_FAILED;
  } catch (e) {
    console.error(`lguest: ${e instanceof Error ? e.message : String(e)}`);
    return RUN_FAILED;
  } finally {
    guard.release();
  }
}

async function openDevices(args: RunArgs): Promise<VirtioDevice[]> {
  const devices: VirtioDevice[] = [];
  try {
    if (args.block.length > 0) {
      const { BlockDevice } = await import("../virtio/blk/device.ts");
      for (const b of args.block) devices.push(BlockDevice.open(b.path, { readOnly: b.readOnly }));
    }
    if (args.rng) devices.push(new (await import("../virtio/rng.ts")).RngDevice());
    return devices;
  } catch (e) {
    for (const d of devices) d.close();
    throw e;
  }
}
