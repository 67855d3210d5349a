/*L:050 The command line keeps the original launcher's shape:
 *
 *   lguest [--verbose] [--cpus=<n>] [--tunnet=(<ip>|bridge:<name>)] [--block=<file>]
 *          [--initrd=<file>] [--no-acpi] <mem-in-mb> <vmlinux|bzImage> [kernel args...]
 *
 * Options come first; the first two plain arguments are the memory size and
 * the kernel, and everything after the kernel belongs to the guest, even if
 * it looks like an option. Every mistake gets one line on stderr naming the
 * problem and a non-zero exit; the terminal is put back however we leave. :*/

import { parseArgs } from "node:util";
import { Machine, MAX_CPUS, MAX_MEMORY_MIB } from "./lib/machine.ts";
import { RawTerminal } from "./lib/sys/termios.ts";
import { guardTerminal } from "./lib/terminal_guard.ts";
import { parseBlockSpec } from "./lib/virtio/blk/spec.ts";

export { parseBlockSpec };
import { isatty } from "./lib/sys/calls.ts";
import { VERSION } from "./lib/version.ts";
import { ConsoleDevice } from "./lib/virtio/console/device.ts";
import { parseNetSpec, parseTunnetSpec } from "./lib/virtio/net/spec.ts";
import type { VirtioDevice } from "./lib/virtio/device.ts";
import { bootClockMs, BootTimings, formatTimings } from "./lib/timings.ts";
import { describeEntry, ENTRY_CHOICES, type EntryChoice } from "./lib/machine/entry.ts";
import { ConfigError } from "./lib/config/error.ts";
import type { ConfigReader } from "./lib/config/parse.ts";
import { USAGE } from "./lib/usage.ts";

/** A lone plain argument with this name is a config file (`lguest vm.yaml`). */
const CONFIG_FILE_NAME = /\.ya?ml$/;

/** Exit codes. */
export const EXIT = { OK: 0, ERROR: 1, ABORTED: 2 } as const;

const OPTIONS = {
  verbose: { type: "boolean", short: "v" },
  tunnet: { type: "string", multiple: true },
  net: { type: "string", multiple: true },
  block: { type: "string", multiple: true },
  initrd: { type: "string" },
  rng: { type: "boolean" },
  timings: { type: "boolean" },
  cpus: { type: "string" },
  "no-acpi": { type: "boolean" },
  entry: { type: "string" },
  config: { type: "string" },
  "print-config": { type: "boolean" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean" },
} as const;

/** A problem with the command line or its inputs: one line, exit 1. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Parsed command line. */
export interface CliArgs {
  /** --verbose */
  verbose: boolean;
  /** --tunnet values, in order. */
  tunnet: string[];
  /** --net values, in order (their cards come after the --tunnet ones). */
  net: string[];
  /** --block values, in order. */
  block: string[];
  /** --initrd */
  initrd: string | undefined;
  /** --rng */
  rng: boolean;
  /** --timings */
  timings: boolean;
  /** --cpus (default 1). */
  cpus: number;
  /** False with --no-acpi. */
  acpi: boolean;
  /** --entry (default "auto"). */
  entry: EntryChoice;
  /** --help */
  help: boolean;
  /** --version */
  version: boolean;
  /** --print-config */
  printConfig: boolean;
  /** Guest memory in MiB. */
  memoryMiB: number;
  /** Kernel path. */
  kernel: string;
  /** Everything after the kernel. */
  kernelArgs: string[];
}

/** Splits argv into launcher arguments and the guest's (after the kernel). */
function splitAtKernel(argv: readonly string[]): [string[], string[]] {
  const valued = new Set(["--tunnet", "--net", "--block", "--initrd", "--cpus", "--entry", "--config"]);
  let positionals = 0;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") {
      const rest = argv.slice(i + 1);
      const need = 2 - positionals;
      return [[...argv.slice(0, i + 1), ...rest.slice(0, need)], rest.slice(need)];
    }
    if (a.startsWith("-") && a !== "-") {
      if (valued.has(a)) i++;
      continue;
    }
    if (++positionals === 2) return [argv.slice(0, i + 1), argv.slice(i + 1)];
  }
  return [[...argv], []];
}

/*L:076 A config file (--config=<file>, or a lone *.yaml argument) fills in
 * whatever the command line leaves out: an option given here wins, a
 * --block or --tunnet here replaces the file's whole list, and plain
 * arguments keep their places (memory, kernel, then the guest's words,
 * which replace the file's cmdline). :*/

/**
 * Parses the launcher's command line; throws UsageError (or ConfigError for a config file).
 * @param argv arguments after the program name
 * @param readConfig reads a config file (lib/config/parse.ts's readConfig), needed only when argv names one
 */
export function parseCli(argv: readonly string[], readConfig?: ConfigReader): CliArgs {
  const [head, kernelArgs] = splitAtKernel(argv);
  let parsed;
  try {
    parsed = parseArgs({ args: head, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message.split("\n")[0]! : String(e));
  }
  const v = { ...parsed.values };
  const positionals = [...parsed.positionals];
  const lone = positionals.length === 1 && CONFIG_FILE_NAME.test(positionals[0]!) ? positionals.pop() : undefined;
  const configFile = v.help || v.version ? undefined : v.config ?? lone;
  if (configFile !== undefined && readConfig === undefined) throw new Error("parseCli: a config file needs readConfig");
  const file = configFile === undefined
    ? {}
    : readConfig!(configFile, { memory: positionals.length > 0, kernel: positionals.length > 1 });
  // Networks given here, of either kind, replace the file's whole list.
  const nets = v.tunnet !== undefined || v.net !== undefined;
  const base = {
    verbose: v.verbose ?? file.verbose ?? false,
    tunnet: (nets ? v.tunnet : file.tunnet) ?? [],
    net: (nets ? v.net : file.net) ?? [],
    block: v.block ?? file.block ?? [],
    initrd: v.initrd ?? file.initrd,
    rng: v.rng ?? file.rng ?? false,
    timings: v.timings ?? file.timings ?? false,
    acpi: v["no-acpi"] ? false : file.acpi ?? true,
    entry: v.entry === undefined ? file.entry ?? "auto" : entryChoice(v.entry),
    help: v.help ?? false,
    version: v.version ?? false,
    printConfig: v["print-config"] ?? false,
    kernelArgs: kernelArgs.length > 0 ? kernelArgs : file.kernelArgs ?? [],
  };
  if (base.help || base.version) return { ...base, cpus: 1, memoryMiB: 0, kernel: "" };
  const cpus = v.cpus === undefined ? file.cpus ?? 1 : Number(v.cpus);
  if (!/^[0-9]+$/.test(v.cpus ?? "1") || cpus < 1 || cpus > MAX_CPUS) {
    throw new UsageError(`--cpus=${v.cpus} is not a whole number from 1 to ${MAX_CPUS}`);
  }
  const [mem = file.memoryMiB?.toString(), kernel = file.kernel] = positionals;
  if (mem === undefined || kernel === undefined) {
    throw new UsageError("expected <mem-in-mb> and a kernel (try --help)");
  }
  if (!/^[0-9]+$/.test(mem) || Number(mem) <= 0) {
    throw new UsageError(`memory size '${mem}' is not a positive whole number of MiB`);
  }
  const memoryMiB = Number(mem);
  if (memoryMiB > MAX_MEMORY_MIB) throw new UsageError(`memory size ${mem} MiB is more than ${MAX_MEMORY_MIB} MiB`);
  return { ...base, cpus, memoryMiB, kernel };
}

/** `--entry=auto|pvh|linux64` */
function entryChoice(value: string | undefined): EntryChoice {
  if (value === undefined) return "auto";
  const choice = ENTRY_CHOICES.find((c) => c === value);
  if (choice === undefined) throw new UsageError(`--entry must be ${ENTRY_CHOICES.join(", ")}, not '${value}'`);
  return choice;
}

/** Host RAM in MiB from /proc/meminfo (undefined if unreadable). */
function hostMemoryMiB(): number | undefined {
  try {
    const m = /^MemTotal:\s+(\d+) kB/m.exec(Deno.readTextFileSync("/proc/meminfo"));
    return m ? Math.floor(Number(m[1]) / 1024) : undefined;
  } catch {
    return undefined;
  }
}

function checkReadable(path: string, what: string): void {
  try {
    const st = Deno.statSync(path);
    if (!st.isFile) throw new UsageError(`${what} '${path}' is not a regular file`);
  } catch (e) {
    if (e instanceof UsageError) throw e;
    if (e instanceof Deno.errors.NotFound) throw new UsageError(`${what} '${path}' does not exist`);
    if (e instanceof Deno.errors.PermissionDenied) throw new UsageError(`${what} '${path}' is not readable`);
    throw new UsageError(`${what} '${path}': ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** Checks the inputs exist and fit before any KVM work. */
function validate(args: CliArgs): void {
  const host = hostMemoryMiB();
  if (host !== undefined && args.memoryMiB > host) {
    throw new UsageError(`memory size ${args.memoryMiB} MiB is more than this host's ${host} MiB of RAM`);
  }
  checkReadable(args.kernel, "kernel");
  if (args.initrd !== undefined) checkReadable(args.initrd, "initrd");
  for (const spec of args.block) checkReadable(parseBlockSpec(spec).path, "block device file");
  for (
    const [spec, parse] of [
      ...args.tunnet.map((t) => [t, parseTunnetSpec] as const),
      ...args.net.map((n) => [n, parseNetSpec] as const),
    ]
  ) {
    try {
      parse(spec);
    } catch (e) {
      throw new UsageError(e instanceof Error ? e.message : String(e));
    }
  }
}

/*L:070 The devices, in the order the guest will find them: disks and
 * network cards in command-line order (the first --block is /dev/vda, the
 * first --tunnet is eth0, as in the original), then the entropy device, and
 * last the console, which the original launcher always had. Only the
 * console is always there; the others' modules are loaded when asked for,
 * so a plain boot does not pay for compiling them. :*/
async function openDevices(args: CliArgs): Promise<VirtioDevice[]> {
  const devices: VirtioDevice[] = [];
  try {
    if (args.block.length > 0) {
      const { BlockDevice } = await import("./lib/virtio/blk/device.ts");
      for (const spec of args.block) {
        const { path, readOnly } = parseBlockSpec(spec);
        devices.push(BlockDevice.open(path, { readOnly }));
      }
    }
    if (args.tunnet.length > 0 || args.net.length > 0) {
      const { NetDevice, openUserNet } = await import("./lib/virtio/net/device.ts");
      for (const spec of args.tunnet) devices.push(NetDevice.open(spec));
      for (const spec of args.net) devices.push(await openUserNet(spec));
    }
    if (args.rng) devices.push(new (await import("./lib/virtio/rng.ts")).RngDevice());
    devices.push(new ConsoleDevice({ outputFd: 1, sizeFd: isatty(0) ? 0 : undefined }));
    return devices;
  } catch (e) {
    for (const d of devices) d.close();
    throw e;
  }
}

/**
 * Runs the launcher with `argv` and returns the process exit code.
 * @param argv arguments after the program name
 */
export async function main(argv: readonly string[]): Promise<number> {
  const runtimeUp = bootClockMs();
  if (argv[0] === "run") return await (await import("./lib/run/cli.ts")).runMain(argv.slice(1));
  let args: CliArgs;
  try {
    const mayNameConfig = argv.some((a) => a.startsWith("--config") || CONFIG_FILE_NAME.test(a));
    args = parseCli(argv, mayNameConfig ? (await import("./lib/config/parse.ts")).readConfig : undefined);
    if (args.help) {
      console.log(USAGE);
      return EXIT.OK;
    }
    if (args.version) {
      console.log(`lguest ${VERSION}`);
      return EXIT.OK;
    }
    validate(args);
    if (args.printConfig) {
      console.log((await import("./lib/config/print.ts")).printConfig(args).trimEnd());
      return EXIT.OK;
    }
  } catch (e) {
    const lines = e instanceof ConfigError ? e.problems : [e instanceof Error ? e.message : String(e)];
    for (const line of lines) console.error(`lguest: ${line}`);
    return EXIT.ERROR;
  }

  let machine: Machine | undefined;
  const timings = args.timings ? BootTimings.start() : undefined;
  timings?.mark("runtime up", runtimeUp);
  const term = new RawTerminal(0);
  const guard = guardTerminal(term, () => machine?.stop());
  try {
    machine = Machine.create({
      memoryMiB: args.memoryMiB,
      kernel: args.kernel,
      initrd: args.initrd,
      cmdline: args.kernelArgs,
      verbose: args.verbose,
      acpi: args.acpi,
      entry: args.entry,
      cpus: args.cpus,
      kvmPath: Deno.env.get("LGUEST_KVM") ?? "/dev/kvm",
      timings,
      devices: await openDevices(args),
    });
    if (args.verbose) describe(machine);
    if (isatty(0)) term.enter();
    const result = await machine.run();
    term.restore();
    if (args.verbose || !result.clean) {
      const where = result.rip === undefined ? "" : ` at rip 0x${result.rip.toString(16)}`;
      console.error(`lguest: ${result.reason}${where} (${result.exits} exits)`);
    }
    if (guard.signalled !== undefined) return guard.signalled;
    if (result.end === "stopped" && !result.clean) return EXIT.ABORTED;
    return result.clean ? EXIT.OK : EXIT.ERROR;
  } catch (e) {
    term.restore();
    console.error(`lguest: ${e instanceof Error ? e.message : String(e)}`);
    return EXIT.ERROR;
  } finally {
    guard.release();
    await machine?.close().catch((e) => console.error(`lguest: ${e instanceof Error ? e.message : String(e)}`));
    if (timings) { for (const line of formatTimings(timings.report())) console.error(`lguest: ${line}`); }
  }
}

function describe(m: Machine): void {
  const hex = (n: number) => `0x${n.toString(16)}`;
  const k = m.info.kernel;
  console.error(`lguest: ${k.kind} kernel, entry ${hex(k.entry)}, ends at ${hex(k.kernelEnd)}`);
  console.error(`lguest: ${describeEntry(k, m.info.entry)}`);
  if (m.info.initrd) console.error(`lguest: initrd at ${hex(m.info.initrd.addr)}, ${m.info.initrd.size} bytes`);
  console.error(`lguest: command line "${m.info.cmdline}"`);
  const rsdp = m.info.rsdp;
  console.error(rsdp === undefined ? `lguest: no ACPI tables (--no-acpi)` : `lguest: ACPI RSDP at ${hex(rsdp)}`);
  for (const e of m.info.e820) console.error(`lguest: e820 ${hex(e.addr)}+${hex(e.size)} type ${e.type}`);
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
