/*T:062 Running one command in the test VM. Any Linux host can offer a
 * real /dev/kvm this way: QEMU's TCG emulates an AMD CPU with SVM and
 * nested paging, so Debian's kernel inside loads kvm_amd, and guests of
 * *that* KVM run ring 0 with hardware semantics (slowly: everything is
 * emulated). The VM has no disk: its root is the host's own `/`, read-only
 * over 9p under a tmpfs overlay, so every tool, cache and package the host
 * has, the VM has too. The checkout (and any other path asked for) is
 * mounted read-write at the same path, so a test writes its results where
 * the host reads them. The command's stdout and stderr come back on two
 * virtio consoles, its exit status on the serial line, and the kernel's log
 * is kept in a file for when something goes wrong.
 *
 * Every way out ends QEMU: the command finishing, a timeout, a panic (the
 * kernel has panic=-1 and QEMU -no-reboot), the runner's own Ctrl-C or
 * SIGTERM, and even the runner being killed (QEMU runs with a parent-death
 * signal). A kernel whose CPU has been stuck for four minutes is stuck for
 * good: that ends the VM too, at once, rather than at the timeout. Shorter
 * soft-lockup reports are not enough: the VM's clock follows the host's
 * while emulation can fall behind (a busy host gives the one TCG thread
 * less time), so a CPU that merely ran late is reported stuck too. So the
 * VM's kernel warns only after two minutes (watchdog_thresh=60) and we act
 * on a report of four (see lockupProblem).
 *
 * TCG runs in one host thread (thread=single), though two would be
 * faster: with one thread per vCPU, a CPU of the VM was seen stuck for
 * good at a jump label that the other CPU was patching (Linux patches its
 * own code when KVM's static keys flip, as they do when a nested VM comes
 * or goes), and the whole run hung. :*/

import { ensureVmImage } from "./image.ts";

/** What to run and how. */
export interface VmRunOptions {
  /** Working directory inside the VM (default: this process's). */
  cwd?: string;
  /** Host paths mounted read-write at the same path (default: `cwd`). */
  shares?: readonly string[];
  /** Extra environment for the command, on top of this process's. */
  env?: Record<string, string>;
  /** Ends the VM after this long (default 30 minutes). */
  timeoutMs?: number;
  /** Guest memory in MiB (default 8192: tests boot guests of 4 GiB). */
  memoryMib?: number;
  /** Where the command's output goes (default: this process's stdout and stderr). */
  output?: "inherit" | "capture";
  /** Progress lines (image build, boot). */
  log?: (line: string) => void;
}

/** How the command ended. */
export interface VmRunResult {
  /** The command's exit status, or undefined when the VM ended without one. */
  code: number | undefined;
  /** One line saying why there is no status (timeout, panic, QEMU failed). */
  problem?: string;
  /** Captured output (only with `output: "capture"`). */
  stdout: string;
  stderr: string;
  /** The VM kernel's log (kept on disk only when something went wrong). */
  kernelLog: string;
  /** The signal that stopped the runner, when one did. */
  stoppedBy?: Deno.Signal;
  /** Seconds from QEMU's start to its end. */
  seconds: number;
}

const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

/** The job script the VM's init runs, chrooted into the host's root. */
function jobScript(argv: readonly string[], cwd: string, env: Record<string, string>): string {
  const lines = ["ulimit -n 1048576"];
  for (const [k, v] of Object.entries(env)) {
    if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) lines.push(`export ${k}=${quote(v)}`);
  }
  lines.push(`cd ${quote(cwd)} || exit 125`, `exec ${argv.map(quote).join(" ")}`);
  return lines.join("\n") + "\n";
}

function qemuArgs(image: { kernel: string; initramfs: string }, job: string, shares: readonly string[], mib: number) {
  const fs = (id: string, path: string, extra = "") => [
    "-fsdev",
    `local,id=${id},path=${path},security_model=none,multidevs=remap${extra}`,
    "-device",
    `virtio-9p-pci,fsdev=${id},mount_tag=${id}`,
  ];
  return [
    "-c",
    'ulimit -n "$(ulimit -Hn)" && exec "$@"',
    "sh",
    "setpriv",
    "--pdeathsig",
    "KILL",
    "--",
    "qemu-system-x86_64",
    ...["-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"],
    ...["-accel", "tcg,thread=single", "-cpu", "max", "-smp", "2", "-m", String(mib)],
    ...["-kernel", image.kernel, "-initrd", image.initramfs],
    ...["-append", `console=ttyS0 panic=-1 watchdog_thresh=60 lgvm.job=${job}`],
    ...["-serial", `file:${job}/kernel.log`],
    ...["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"],
    ...["-device", "virtio-serial-pci"],
    ...["-chardev", "stdio,id=out,signal=off", "-device", "virtconsole,chardev=out"],
    ...["-chardev", "file,id=err,path=/proc/self/fd/2", "-device", "virtconsole,chardev=err"],
    ...fs("hostroot", "/", ",readonly=on"),
    ...fs("job", job),
    ...shares.flatMap((p, i) => fs(`share${i}`, p)),
  ];
}

/** Copies a stream to a sink (or a string), chunk by chunk, as it arrives. */
async function pump(
  src: ReadableStream<Uint8Array>,
  sink: { write(p: Uint8Array): Promise<number> } | undefined,
): Promise<string> {
  let text = "";
  const dec = new TextDecoder();
  for await (const chunk of src) {
    if (sink) {
      for (let off = 0; off < chunk.length;) off += await sink.write(chunk.subarray(off));
    } else text += dec.decode(chunk, { stream: true });
  }
  return text;
}

/** How long a CPU of the VM must be reported stuck before the run is ended (T:062). */
export const STUCK_FOR_GOOD_S = 240;

/**
 * Whether the VM's kernel log shows a CPU stuck for good: a soft-lockup report of at least
 * {@link STUCK_FOR_GOOD_S} seconds.
 * @param log the VM kernel's log so far
 * @returns the one-line problem, or undefined
 */
export function lockupProblem(log: string): string | undefined {
  for (const m of log.matchAll(/BUG: soft lockup - CPU#(\d+) stuck for (\d+)s![^\n]*/g)) {
    if (Number(m[2]) >= STUCK_FOR_GOOD_S) return `vm: the VM's kernel is stuck: ${m[0].trim()}`;
  }
  return undefined;
}

/** Why the VM ended without a status, from its kernel log. */
function diagnose(log: string, qemuCode: number): string {
  const fail = /^lgvm: FAIL (.*)$/m.exec(log);
  if (fail) return `vm: its init failed: ${fail[1]!.trim()}`;
  const panic = /Kernel panic[^\n]*/.exec(log);
  if (panic) return `vm: the VM's kernel panicked: ${panic[0].trim()}`;
  return `vm: QEMU exited with status ${qemuCode} before the command finished`;
}

/**
 * Boots the test VM, runs `argv` in it and returns how it ended.
 * @param argv the command and its arguments (a program on the host's root)
 * @param opts where, with what, for how long
 */
export async function runInVm(argv: readonly string[], opts: VmRunOptions = {}): Promise<VmRunResult> {
  if (argv.length === 0) throw new Error("vm: no command given");
  const cwd = opts.cwd ?? Deno.cwd();
  const shares = [...(opts.shares ?? [cwd])].map((p) => Deno.realPathSync(p)).sort((a, b) => a.length - b.length);
  for (const p of shares) {
    if (p === "/" || /[\s,]/.test(p)) throw new Error(`vm: cannot share ${JSON.stringify(p)} read-write`);
  }
  const image = await ensureVmImage(opts.log);
  const job = await Deno.makeTempDir({ prefix: "lgvm-" });
  const env = { ...Deno.env.toObject(), ...opts.env, LGUEST_TEST_VM: "tcg" };
  await Deno.writeTextFile(`${job}/job.sh`, jobScript(argv, cwd, env));
  await Deno.writeTextFile(`${job}/shares`, shares.map((p, i) => `share${i} ${p}\n`).join(""));
  opts.log?.(`booting the test VM (${image.release}, TCG)`);

  const capture = opts.output === "capture";
  const started = performance.now();
  const qemu = new Deno.Command("sh", {
    args: qemuArgs(image, job, shares, opts.memoryMib ?? 8192),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let problem: string | undefined;
  let stoppedBy: Deno.Signal | undefined;
  const end = (why: string) => {
    problem ??= why;
    try {
      qemu.kill("SIGKILL");
    } catch {
      // Already gone.
    }
  };
  const timer = setTimeout(
    () => end(`vm: the command did not finish within ${(opts.timeoutMs ?? 1_800_000) / 1000} s; QEMU stopped`),
    opts.timeoutMs ?? 1_800_000,
  );
  const watchdog = setInterval(() => {
    const log = (() => {
      try {
        return Deno.readTextFileSync(`${job}/kernel.log`);
      } catch {
        return "";
      }
    })();
    const stuck = lockupProblem(log);
    if (stuck !== undefined) end(stuck);
  }, 5_000);
  const onSignal = (sig: Deno.Signal) => () => {
    stoppedBy ??= sig;
    end(`vm: stopped by ${sig}`);
  };
  const handlers = (["SIGINT", "SIGTERM", "SIGHUP"] as const).map((s) => [s, onSignal(s)] as const);
  for (const [s, h] of handlers) Deno.addSignalListener(s, h);
  try {
    const [stdout, stderr, status] = await Promise.all([
      pump(qemu.stdout, capture ? undefined : Deno.stdout),
      pump(qemu.stderr, capture ? undefined : Deno.stderr),
      qemu.status,
    ]);
    const kernelLog = await Deno.readTextFile(`${job}/kernel.log`).catch(() => "");
    const exit = /^lgvm: exit (\d+)\s*$/m.exec(kernelLog);
    const code = problem === undefined && exit ? Number(exit[1]) : undefined;
    if (code === undefined) {
      problem ??= diagnose(kernelLog, status.code);
      const kept = `${job}.kernel.log`;
      await Deno.writeTextFile(kept, kernelLog);
      problem += ` (the VM's kernel log: ${kept})`;
    }
    const seconds = (performance.now() - started) / 1000;
    return {
      code,
      ...(problem ? { problem } : {}),
      ...(stoppedBy ? { stoppedBy } : {}),
      stdout,
      stderr,
      kernelLog,
      seconds,
    };
  } finally {
    clearTimeout(timer);
    clearInterval(watchdog);
    for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
    await Deno.remove(job, { recursive: true }).catch(() => {});
  }
}
