/*T:730 Benchmark 1, the exit round trip. The test guest's bench.pio=N mode
 * does N port writes from ring 3 (native even on PVM) and prints the TSC
 * cycles they took; bench.pio0=N does the same loop in ring 0. The peer,
 * bench/kvm_exit.c, boots the very same guest ELF with the same command
 * line and serves the exits in a plain C KVM_RUN loop, so the two numbers
 * differ only in what the launcher does between one KVM_RUN and the next.
 * The TSC rate comes from KVM_GET_TSC_KHZ (the peer prints it). To see how
 * much of a gap is Deno's FFI rather than our exit handling, the run also
 * times a trivial FFI call into libc in this very process, and profiles
 * both launchers' vCPU threads with perf (perf.ts). Each figure also
 * carries the ns the launcher adds per exit over the C loop, with its goal
 * of 300 ns: on PVM an exit spends 10 to 65 µs in the host kernel, so the
 * ratio of two such exits stays near 1 even when the launcher adds 2 µs,
 * which on hardware KVM (about 1 µs an exit) would be most of the cost. :*/

import { contextFor, lguestCommand, pairs, runToEnd } from "./run.ts";
import { addedPerExit, EXIT_GOAL_NS, figure, fmt } from "./stats.ts";
import type { BenchContext, Benchmark, Figure, Section } from "./types.ts";
import { perfSplit } from "./perf.ts";

const MODES = [
  { id: "ring3", param: "bench.pio", label: "PIO exit, guest ring 3", n: 50_000 },
  { id: "ring0", param: "bench.pio0", label: "PIO exit, guest ring 0", n: 20_000 },
] as const;

/** Parses "BENCH-PIO: <n> <cycles> cpl <c>" into cycles per exit. */
export function cyclesPerExit(stdout: string): number | undefined {
  const m = /^BENCH-PIO: (\d+) (\d+) cpl (\d)/m.exec(stdout);
  if (!m || Number(m[1]) === 0) return undefined;
  return Number(m[2]) / Number(m[1]);
}

/** Nanoseconds per call of a trivial libc function through Deno FFI. */
function ffiCallNs(): number {
  const lib = Deno.dlopen("libc.so.6", { getppid: { parameters: [], result: "i32" } });
  try {
    const n = 2_000_000;
    for (let i = 0; i < 10_000; i++) lib.symbols.getppid();
    const t0 = performance.now();
    for (let i = 0; i < n; i++) lib.symbols.getppid();
    return (performance.now() - t0) * 1e6 / n;
  } finally {
    lib.close();
  }
}

async function measureMode(ctx: BenchContext, mode: (typeof MODES)[number], tscKhz: { value: number }) {
  const args = ["128", ctx.tools.guest, `${mode.param}=${mode.n}`];
  const lguest: number[] = [];
  const peer: number[] = [];
  const errors: string[] = [];
  const one = async (cmd: string[], into: number[], who: string) => {
    const r = await runToEnd(cmd, 120_000);
    const c = cyclesPerExit(r.stdout);
    const khz = /^TSC-KHZ: (\d+)/m.exec(r.stderr);
    if (khz) tscKhz.value = Number(khz[1]);
    if (c === undefined || r.code !== 0) {
      errors.push(`${who}: exit ${r.code}${r.timedOut ? " (timeout)" : ""} ${r.stderr.trim().slice(0, 200)}`);
    } else into.push(c);
  };
  await pairs(
    ctx.repeats,
    () => one(lguestCommand(ctx, args), lguest, "lguest"),
    () => one([ctx.tools.kvmExit, ctx.tools.guest, "128", `${mode.param}=${mode.n}`], peer, "kvm_exit"),
  );
  return { lguest, peer, errors };
}

/** The exit round-trip benchmark. */
export const exitBenchmark: Benchmark = {
  id: "exit",
  title: "1. Exit round trip (µs per port-I/O exit)",
  async run(ctx: BenchContext): Promise<Section> {
    const figures: Figure[] = [];
    const analysis: string[] = [];
    const tscKhz = { value: 0 };
    const raw: Array<{ mode: (typeof MODES)[number]; lguest: number[]; peer: number[] }> = [];
    for (const mode of MODES) {
      ctx.log(`exit: ${mode.label}, ${ctx.repeats} pairs of ${mode.n} exits`);
      const r = await measureMode(ctx, mode, tscKhz);
      for (const e of r.errors.slice(0, 3)) analysis.push(`${mode.label}: a run failed: ${e}`);
      raw.push({ mode, lguest: r.lguest, peer: r.peer });
    }
    if (tscKhz.value === 0) {
      return {
        id: this.id,
        title: this.title,
        status: "failed",
        reason: "no TSC rate (the C peer never finished)",
        figures,
        analysis,
      };
    }
    const us = (cycles: number) => cycles / (tscKhz.value / 1000);
    for (const { mode, lguest, peer } of raw) {
      const f = figure({
        id: `exit.${mode.id}`,
        label: `${mode.label} (N=${mode.n})`,
        unit: "µs/exit",
        lguest: lguest.map(us),
        peer: peer.map(us),
        context: contextFor(ctx, "bench/kvm_exit.c (C, same guest ELF), gcc -O2"),
        target: ({ ratio }) => ({ text: "ratio ≤ 1.10", met: ratio === null ? null : ratio <= 1.10 }),
      });
      f.added = addedPerExit(f);
      figures.push(f);
    }
    const ffi = ffiCallNs();
    analysis.push(`TSC rate ${tscKhz.value} kHz (KVM_GET_TSC_KHZ). A trivial Deno FFI call costs ${fmt(ffi)} ns here.`);
    for (const f of figures) {
      if (f.lguest === null || f.peer === null || f.ratio === null || !f.added || f.added.value === null) continue;
      const gap = f.added.value;
      const pairs = f.added.pairs;
      analysis.push(
        `${f.label}: lguest ${fmt(f.lguest)} µs vs C ${fmt(f.peer)} µs per exit, ratio ${fmt(f.ratio)} ` +
          (f.target?.met ? "(within the 1.10 target)" : "(over the 1.10 target)") +
          `; lguest adds ${fmt(gap)} ns per exit over the C loop, ${fmt(gap / ffi)}× a bare FFI call ` +
          (pairs ? `(pair by pair ${fmt(pairs.min)} to ${fmt(pairs.max)} ns over ${pairs.samples} pairs), ` : "") +
          (f.added.target.met ? "within" : "over") + ` the ${EXIT_GOAL_NS} ns goal.` +
          (ctx.machine.kvm === "pvm" && f.id === "exit.ring3"
            ? " On PVM a ring-3 exit is dominated by time in the host kernel," +
              " the same for both launchers."
            : ""),
      );
    }
    for (const { mode } of raw) {
      const f = figures.find((x) => x.id === `exit.${mode.id}`);
      if (ctx.machine.kvm === "pvm" && mode.id === "ring3") {
        analysis.push(
          `${mode.label}: not profiled: on PVM the guest's ring-3 code runs natively on the vCPU thread, so perf ` +
            `attributes guest instructions to whatever host file happens to be mapped at the guest's addresses.`,
        );
        continue;
      }
      ctx.log(`exit: profiling ${mode.label} with perf`);
      const arg = (n: number) => `${mode.param}=${n}`;
      const l = await perfSplit((n) => lguestCommand(ctx, ["128", ctx.tools.guest, arg(n)]), "worker-1", mode.n);
      const c = await perfSplit((n) => [ctx.tools.kvmExit, ctx.tools.guest, "128", arg(n)], "kvm_exit", mode.n);
      if (l === undefined || c === undefined) {
        analysis.push(`${mode.label}: no perf profile (perf missing or not permitted).`);
        continue;
      }
      const lUser = l.binary + l.jit + l.libc;
      const cUser = c.binary + c.jit + c.libc;
      analysis.push(
        `${mode.label}, profile (perf record, cpu-clock samples of the vCPU thread, a run with no exits ` +
          `subtracted, µs per exit, perf's own overhead included): host kernel ${fmt(l.kernel)} for lguest vs ${
            fmt(c.kernel)
          } for C; user space ` +
          `${fmt(lUser)} vs ${fmt(cUser)}, lguest's split into the deno binary (V8 runtime and FFI call path; ` +
          `stripped, so perf cannot name functions) ${fmt(l.binary)}, JIT-compiled JavaScript (our exit path: the ` +
          `run loop, handleExit, Bus.find, the kvm_run field reads) ${fmt(l.jit)} and libc ${fmt(l.libc)}. ` +
          `What would close ${
            f?.target?.met === false || f?.added?.target.met === false ? "the" : "most of the remaining"
          } gap: an exit path that stays in optimized JavaScript with no allocation and no ` +
          `generic helpers (kvm_run fields read at fixed offsets from one DataView, ports dispatched from a ` +
          `table instead of a range search), leaving the FFI call to ioctl as the only step out of JIT code.`,
      );
    }
    return { id: this.id, title: this.title, status: "measured", figures, analysis };
  },
};
