/*T:725 Small helpers shared by the benchmarks: run a program to the end
 * with a timeout and keep what it printed; alternate which side of a pair
 * goes first; start the launcher the way a user does. :*/

import type { BenchContext, FigureContext } from "./types.ts";

/** What a finished command printed. */
export interface Finished {
  /** Exit status (-1 when killed). */
  code: number;
  /** stdout. */
  stdout: string;
  /** stderr. */
  stderr: string;
  /** True if it was killed at the timeout. */
  timedOut: boolean;
}

/** Runs `cmd` to the end (SIGKILL after `timeoutMs`), stdin from /dev/null. */
export async function runToEnd(cmd: readonly string[], timeoutMs: number): Promise<Finished> {
  const child = new Deno.Command(cmd[0]!, { args: cmd.slice(1), stdin: "null", stdout: "piped", stderr: "piped" })
    .spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, timeoutMs);
  const out = await child.output();
  clearTimeout(timer);
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr), timedOut };
}

/**
 * Runs `cmd` with stdout piped and, the first time `marker` appears on it,
 * awaits `atMarker(child)`; then reads to the end (SIGKILL after
 * `timeoutMs`) and returns what it printed.
 */
export async function runWithMarker(
  cmd: readonly string[],
  marker: string,
  atMarker: (child: Deno.ChildProcess) => Promise<void>,
  options: { timeoutMs: number; stdin?: boolean },
): Promise<string> {
  const child = new Deno.Command(cmd[0]!, {
    args: cmd.slice(1),
    stdin: options.stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs);
  const dec = new TextDecoder();
  let out = "";
  let seen = false;
  try {
    for await (const chunk of child.stdout) {
      out += dec.decode(chunk, { stream: true });
      if (!seen && out.includes(marker)) {
        seen = true;
        await atMarker(child);
      }
    }
  } finally {
    await child.status;
    clearTimeout(timer);
  }
  return out;
}

/**
 * The launcher options every bench run takes. Both guests the bench boots (the test guest and the project's
 * Linux build) are built without ACPI, so their devices are declared on the command line.
 */
export const BENCH_LAUNCH_OPTIONS: readonly string[] = ["--no-acpi"];

/** The command that runs the lguest launcher with {@link BENCH_LAUNCH_OPTIONS}. */
export function lguestCommand(ctx: BenchContext, args: readonly string[]): string[] {
  return [Deno.execPath(), "run", "-A", `${ctx.root}cli.ts`, ...BENCH_LAUNCH_OPTIONS, ...args];
}

/**
 * The QEMU microvm command line booting `kernel` (PVH ELF or bzImage).
 * No virtio devices unless `extra.net` names a network card's options: the
 * test guest's driver routes its interrupt pin edge-triggered, and QEMU's
 * virtio-mmio line is level-triggered, so with QEMU's virtio console the
 * guest now and then waits forever for a completion interrupt (seen with
 * QEMU 7.2); lguest's always-present console is the one asymmetry left, and
 * the results say so. The network benchmark's loops poll with the pin
 * masked, so a card is safe; it gets virtio-mmio's modern layout (version
 * 2, as lguest's) and ACPI off, so that QEMU declares it on the command
 * line (virtio_mmio.device=), where the test guest looks.
 */
export function qemuCommand(
  ctx: BenchContext,
  memMiB: number,
  kernel: string,
  extra: { append?: string; initrd?: string; net?: string[] } = {},
): string[] {
  const net = extra.net === undefined ? [] : ["-global", "virtio-mmio.force-legacy=false", ...extra.net];
  const cmd = [
    ctx.tools.qemu ?? "qemu-system-x86_64",
    ...[
      "-M",
      extra.net === undefined ? "microvm" : "microvm,acpi=off",
      "-accel",
      "kvm",
      "-cpu",
      "host,-arch-capabilities",
    ],
    ...["-m", String(memMiB), "-smp", "1", "-nodefaults", "-no-user-config", "-nographic", "-display", "none"],
    ...["-serial", "stdio", "-no-reboot"],
    // The test guest and Linux's reboot=k end the VM through the i8042's
    // reset line, which microvm does not have unless asked for.
    ...["-device", "i8042"],
    ...net,
    ...["-kernel", kernel],
  ];
  if (extra.initrd !== undefined) cmd.push("-initrd", extra.initrd);
  if (extra.append !== undefined) cmd.push("-append", extra.append);
  return cmd;
}

/**
 * Runs `n` pairs, alternating which side goes first so that neither always
 * gets the warmer cache or the quieter moment.
 */
export async function pairs(n: number, a: () => Promise<void>, b: () => Promise<void>): Promise<void> {
  for (let i = 0; i < n; i++) {
    if (i % 2 === 0) {
      await a();
      await b();
    } else {
      await b();
      await a();
    }
  }
}

/** The figure context for a peer. */
export function contextFor(ctx: BenchContext, peer: string): FigureContext {
  return { cpu: ctx.machine.cpu, kvm: ctx.machine.kvm, commit: ctx.machine.commit, peer };
}
