/*T:710 Every figure says where it was measured: the CPU, which KVM (real
 * hardware virtualization, or PVM, where guest ring 0 is emulated and the
 * numbers mean something else), the commit the launcher was built from, and
 * the peer's version. All of it is read from the machine in the run. :*/

import { kvmFlavour } from "../../lib/kvm/kvm.ts";
import type { MachineInfo } from "./types.ts";

/** Runs a command and returns its trimmed stdout, or undefined if it failed. */
export async function capture(cmd: string, args: readonly string[], cwd?: string): Promise<string | undefined> {
  try {
    const out = await new Deno.Command(cmd, {
      args: [...args],
      stdout: "piped",
      stderr: "null",
      ...(cwd ? { cwd } : {}),
    })
      .output();
    return out.success ? new TextDecoder().decode(out.stdout).trim() : undefined;
  } catch {
    return undefined;
  }
}

function cpuModel(): string {
  try {
    const m = /^model name\s*:\s*(.*)$/m.exec(Deno.readTextFileSync("/proc/cpuinfo"));
    return m?.[1]?.trim() ?? "unknown";
  } catch {
    return "unknown";
  }
}

function loadAverage(): number {
  try {
    return Number(Deno.readTextFileSync("/proc/loadavg").split(" ")[0]);
  } catch {
    return NaN;
  }
}

/** True inside the project's test VM (scripts/vm/run.ts), whose CPU is emulated by QEMU's TCG. */
export function inTestVm(): boolean {
  if (Deno.env.get("LGUEST_TEST_VM")) return true;
  try {
    return /(^|\s)lgvm\.job=/.test(Deno.readTextFileSync("/proc/cmdline"));
  } catch {
    return false;
  }
}

/**
 * Why this host cannot give figures worth reporting, or undefined when it
 * can: without /dev/kvm there is nothing to measure, and inside the test VM
 * every instruction is emulated, so its timings say nothing about lguest.
 */
export function benchHostProblem(): string | undefined {
  if (inTestVm()) {
    return "refusing to measure inside the test VM: QEMU's TCG emulates every instruction, so timings mean nothing; run on a host with KVM";
  }
  if (kvmFlavour() === "none") {
    return "no /dev/kvm on this host: the benchmarks need KVM (the test VM's emulated timings are never reported)";
  }
  return undefined;
}

/** Collects the machine facts for the results. */
export async function machineInfo(root: string, qemu: string | undefined): Promise<MachineInfo> {
  const head = await capture("git", ["rev-parse", "--short=12", "HEAD"], root) ?? "unknown";
  const dirty = (await capture("git", ["status", "--porcelain"], root) ?? "").length > 0;
  const qemuVersion = qemu === undefined
    ? "not installed"
    : (await capture(qemu, ["--version"]))?.split("\n")[0] ?? "unknown";
  return {
    cpu: cpuModel(),
    cpus: navigator.hardwareConcurrency,
    kvm: kvmFlavour(),
    hostKernel: Deno.osRelease(),
    commit: dirty ? `${head}-dirty` : head,
    deno: Deno.version.deno,
    qemu: qemuVersion,
    gcc: (await capture("gcc", ["--version"]))?.split("\n")[0] ?? "not installed",
    loadAverage: loadAverage(),
  };
}
