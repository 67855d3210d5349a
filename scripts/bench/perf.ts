/*T:732 When an exit ratio misses its target, the run profiles it: `perf
 * record` (cpu-clock sampling, which works without a PMU, as inside this
 * VM) on one lguest run and one C peer run of the same mode, then splits
 * the vCPU thread's samples by where they landed: the host kernel (KVM and
 * PVM: the same work for both launchers), the deno binary (V8's runtime and
 * the FFI trampolines), libc, and code with no file (V8's JIT output: our
 * exit path in JavaScript). Divided by the number of exits, that is the
 * cost per exit of each part, side by side. :*/

import { capture } from "./machine.ts";
import { which } from "./tools.ts";

/** µs per exit spent in each part of the vCPU thread. */
export interface PerfSplit {
  /** Host kernel (KVM, PVM, syscalls). */
  kernel: number;
  /** The launcher's own binary (deno: V8 runtime and FFI; or the C peer). */
  binary: number;
  /** libc and the dynamic loader. */
  libc: number;
  /** JIT-compiled code (anonymous memory). */
  jit: number;
}

const HZ = 10_000;

/** Runs `cmd` under `perf record` and returns `perf report` sorted by `sort`, one "samples key..." line each. */
async function record(cmd: readonly string[], sort: string): Promise<string | undefined> {
  if (which("perf") === undefined) return undefined;
  const data = await Deno.makeTempFile({ prefix: "lguest-bench-perf-" });
  try {
    const rec = await new Deno.Command("perf", {
      args: ["record", "-q", "-F", String(HZ), "-e", "cpu-clock", "-o", data, "--", ...cmd],
      stdout: "null",
      stderr: "null",
    }).output();
    if (!rec.success) return undefined;
    return await capture("perf", ["report", "-i", data, "--sort", sort, "-F", `sample,${sort}`, "--stdio"]);
  } finally {
    await Deno.remove(data).catch(() => {});
  }
}

async function samples(cmd: readonly string[], thread: string): Promise<PerfSplit | undefined> {
  const report = await record(cmd, "comm,dso");
  if (report === undefined) return undefined;
  const split: PerfSplit = { kernel: 0, binary: 0, libc: 0, jit: 0 };
  for (const line of report.split("\n")) {
    const m = /^\s*(\d+)\s+(.+?)\s{2,}(\S.*?)\s*$/.exec(line);
    if (!m || m[2]!.trim() !== thread) continue;
    const us = Number(m[1]) / HZ * 1e6;
    const dso = m[3]!;
    if (dso === "[kernel.kallsyms]") split.kernel += us;
    else if (/^(libc|ld-linux|libgcc)/.test(dso)) split.libc += us;
    else if (dso.startsWith("[") || dso.startsWith("perf-")) split.jit += us;
    else split.binary += us;
  }
  return split;
}

/**
 * CPU time by thread name (µs) of `cmd` under perf, or undefined without perf.
 * @param cmd the command to profile
 */
export async function perfThreads(cmd: readonly string[]): Promise<Map<string, number> | undefined> {
  const report = await record(cmd, "comm");
  if (report === undefined) return undefined;
  const out = new Map<string, number>();
  for (const line of report.split("\n")) {
    const m = /^\s*(\d+)\s+(\S.*?)\s*$/.exec(line);
    if (m) out.set(m[2]!, (out.get(m[2]!) ?? 0) + Number(m[1]) / HZ * 1e6);
  }
  return out;
}

/**
 * CPU µs per operation by thread: a run of `n` operations minus a run of
 * one, divided by `n`, busiest thread first (threads under 0.5 µs left out).
 * @param cmd the command line for a given number of operations
 * @param n how many operations the measured run does
 */
export async function threadCostPerOp(
  cmd: (ops: number) => string[],
  n: number,
): Promise<Array<readonly [string, number]> | undefined> {
  const full = await perfThreads(cmd(n));
  const base = await perfThreads(cmd(1));
  if (full === undefined || base === undefined) return undefined;
  return [...full].map(([comm, us]) => [comm, (us - (base.get(comm) ?? 0)) / n] as const)
    .filter(([, us]) => us > 0.5).sort((a, b) => b[1] - a[1]);
}

/**
 * Samples a run with `exits` exits and one with none, and splits the
 * difference in the samples of the thread named `thread`, so that startup
 * (a Worker compiling its modules, the guest's own boot) cancels out.
 * @param cmd the command line for a given number of exits
 * @param thread the vCPU thread's name (comm)
 * @param exits how many exits the measured run makes
 * @returns µs per exit by part, or undefined without perf
 */
export async function perfSplit(
  cmd: (exits: number) => string[],
  thread: string,
  exits: number,
): Promise<PerfSplit | undefined> {
  const full = await samples(cmd(exits), thread);
  const base = await samples(cmd(0), thread);
  if (full === undefined || base === undefined) return undefined;
  const per = (k: keyof PerfSplit) => (full[k] - base[k]) / exits;
  return { kernel: per("kernel"), binary: per("binary"), libc: per("libc"), jit: per("jit") };
}
