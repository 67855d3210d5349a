/*T:740 Benchmark 2, launch to guest. Both launchers boot the same file, the
 * test guest: lguest by its 64-bit entry, QEMU's microvm by the PVH note
 * start.S carries. bench/launch_probe.c starts each, timestamps the first
 * byte the guest writes to its serial port and the process's exit (the
 * guest resets the machine through the i8042 when it is done), and reports
 * peak RSS. QEMU may fail to boot on a PVM host; then what it did (error,
 * timeout) is recorded instead of a number.
 *
 * The same run measures three floors and a profile, so a gap can be
 * attributed without guessing: Deno starting an empty script, Deno loading
 * the launcher's module graph without running it, bench/kvm_exit.c (a C
 * launcher doing the same KVM work for the same guest, which bounds what
 * the guest itself costs; on PVM its ring-0 code is emulated), and
 * phases.ts timing each phase of the launcher's own boot. And it boots
 * the guest with `deno task bundle`'s dist/lguest against `deno run
 * cli.ts`, in pairs, to show what one file per isolate saves. :*/

import { describeFailure, type ProbeResult, probeRun } from "./probe.ts";
import { BENCH_LAUNCH_OPTIONS, contextFor, lguestCommand, pairs, qemuCommand, runToEnd } from "./run.ts";
import { cacheRoot } from "../../tests/guest/build.ts";
import { figure, fmt, median } from "./stats.ts";
import type { BenchContext, Benchmark, Section } from "./types.ts";
import { bundle } from "../bundle.ts";

const TARGET_MS = 30;

interface Side {
  first: number[];
  exit: number[];
  rss: number[];
  failures: string[];
}

const side = (): Side => ({ first: [], exit: [], rss: [], failures: [] });

function record(s: Side, r: ProbeResult, ok: boolean): void {
  if (!ok) {
    s.failures.push(describeFailure(r));
    return;
  }
  s.first.push(r.firstByteMs);
  s.exit.push(r.exitMs);
  s.rss.push(r.maxRssKiB / 1024);
}

const cleanGuest = (r: ProbeResult) => !r.timedOut && r.exitCode === 0 && r.markerMs >= 0;

/** Bundles load_only.ts into one file (deno bundle fetches esbuild from npm); undefined if that fails. */
async function bundleLoadOnly(ctx: BenchContext): Promise<string | undefined> {
  const out = `${cacheRoot()}/bench-load-only.bundle.js`;
  const here = new URL(".", import.meta.url).pathname;
  const r = await runToEnd(
    [Deno.execPath(), "bundle", "--platform", "deno", "-o", out, `${here}load_only.ts`],
    120_000,
  );
  if (r.code === 0) return out;
  ctx.log(`launch: deno bundle failed, no bundled floor: ${r.stderr.trim().slice(0, 200)}`);
  return undefined;
}

/**
 * `deno task bundle`'s launcher (T:051) against `deno run cli.ts`, booting the same guest, in alternating
 * pairs after one warm-up each (both then start from a warm cache: compiled modules for one, V8's code cache
 * for the other); undefined if the bundle could not be built.
 */
async function bundledAgainstSource(ctx: BenchContext, reps: number) {
  let launcher: string;
  try {
    launcher = await bundle(`${cacheRoot()}/bench-dist`);
  } catch (e) {
    ctx.log(`launch: deno task bundle failed, no bundled launcher: ${String(e).slice(0, 200)}`);
    return undefined;
  }
  const sourceCmd = lguestCommand(ctx, ["128", ctx.tools.guest]);
  const bundledCmd = [launcher, ...BENCH_LAUNCH_OPTIONS, "128", ctx.tools.guest];
  const source = side();
  const bundled = side();
  const boot = async (s: Side, cmd: string[]) => {
    const r = await probeRun(ctx.tools.probe, cmd, { marker: "DONE", timeoutS: 30 });
    record(s, r, cleanGuest(r));
  };
  await probeRun(ctx.tools.probe, sourceCmd, { marker: "DONE", timeoutS: 30 });
  await probeRun(ctx.tools.probe, bundledCmd, { marker: "DONE", timeoutS: 30 });
  await pairs(reps, () => boot(source, sourceCmd), () => boot(bundled, bundledCmd));
  return { reps, source, bundled };
}

async function floors(ctx: BenchContext) {
  const here = new URL(".", import.meta.url).pathname;
  const deno = (file: string) => [Deno.execPath(), "run", "-A", `${here}${file}`];
  const bundle = await bundleLoadOnly(ctx);
  const bundled: number[] = [];
  const empty: number[] = [];
  const emptyRss: number[] = [];
  const load: number[] = [];
  const c: number[] = [];
  const cFirst: number[] = [];
  const phases: Record<string, number[]> = {};
  const note = (r: ProbeResult, extra: Record<string, number> = {}, prefix = "") => {
    try {
      const parsed = { ...JSON.parse(r.output) as Record<string, number>, ...extra };
      if (typeof parsed.ranMs === "number" && typeof parsed.createdMs === "number") {
        parsed.guestMs = parsed.ranMs - parsed.createdMs;
      }
      for (const [k, v] of Object.entries(parsed)) if (typeof v === "number") (phases[prefix + k] ??= []).push(v);
    } catch {
      ctx.log(`launch: phases.ts printed no result: ${describeFailure(r)}`);
    }
  };
  for (let i = 0; i < ctx.repeats; i++) {
    const p = await probeRun(ctx.tools.probe, [...deno("phases.ts"), ctx.tools.guest]);
    note(p, { exitMs: p.exitMs });
    note(await probeRun(ctx.tools.probe, [...deno("phases.ts"), "--bare", ctx.tools.guest]), {}, "bare.");
    note(await probeRun(ctx.tools.probe, [...deno("phases.ts"), "--worker"]));
    const e = await probeRun(ctx.tools.probe, deno("empty.ts"));
    empty.push(e.exitMs);
    emptyRss.push(e.maxRssKiB / 1024);
    load.push((await probeRun(ctx.tools.probe, deno("load_only.ts"))).exitMs);
    if (bundle !== undefined) {
      bundled.push((await probeRun(ctx.tools.probe, [Deno.execPath(), "run", "-A", bundle])).exitMs);
    }
    const k = await probeRun(ctx.tools.probe, [ctx.tools.kvmExit, ctx.tools.guest, "128"], { marker: "DONE" });
    if (cleanGuest(k)) {
      c.push(k.exitMs);
      cFirst.push(k.firstByteMs);
    }
  }
  return {
    empty: median(empty),
    emptyRss: median(emptyRss),
    load: median(load),
    bundled: median(bundled),
    c: median(c),
    cFirst: median(cFirst),
    phase: (k: string) => median(phases[k] ?? []),
  };
}

/** The launch-to-guest benchmark. */
export const launchBenchmark: Benchmark = {
  id: "launch",
  title: "2. Launch to guest (test guest, 128 MiB)",
  async run(ctx: BenchContext): Promise<Section> {
    const guest = ctx.tools.guest;
    const lguestCmd = lguestCommand(ctx, ["128", guest]);
    const qemuCmd = qemuCommand(ctx, 128, guest);
    const l = side();
    const q = side();
    ctx.log(`launch: warming up`);
    const warmL = await probeRun(ctx.tools.probe, lguestCmd, { marker: "DONE", timeoutS: 30 });
    const hvc = (out: string) => /^HVC-INIT: /m.test(out);
    let asymmetry: string | undefined;
    const qemuTimeout = ctx.machine.kvm === "pvm" ? 30 : 10;
    if (ctx.tools.qemu !== undefined) {
      const warm = await probeRun(ctx.tools.probe, qemuCmd, { marker: "DONE", timeoutS: qemuTimeout });
      if (!cleanGuest(warm)) q.failures.push(describeFailure(warm));
      else if (hvc(warmL.output) && !hvc(warm.output)) {
        asymmetry = "Not quite like for like: under lguest the guest also brings up the virtio console lguest " +
          "always adds (QEMU boots it with no devices; see qemuCommand in scripts/bench/run.ts for why).";
      }
    } else q.failures.push("qemu-system-x86_64 is not installed");
    const qemuWorks = q.failures.length === 0;
    const reps = Math.max(ctx.repeats, 9);
    ctx.log(`launch: ${reps} pairs${qemuWorks ? "" : " (lguest only: QEMU did not boot)"}`);
    await pairs(
      reps,
      async () => {
        const r = await probeRun(ctx.tools.probe, lguestCmd, { marker: "DONE", timeoutS: 30 });
        record(l, r, cleanGuest(r));
      },
      async () => {
        if (!qemuWorks) return;
        const r = await probeRun(ctx.tools.probe, qemuCmd, { marker: "DONE", timeoutS: qemuTimeout });
        record(q, r, cleanGuest(r));
      },
    );
    ctx.log(`launch: floors (empty Deno script, module load only, C launcher)`);
    const floor = await floors(ctx);
    ctx.log(`launch: ${reps} pairs, deno task bundle's launcher against deno run cli.ts`);
    const vsBundle = await bundledAgainstSource(ctx, reps);

    const peerName = `QEMU microvm, PVH entry (${ctx.machine.qemu})`;
    const context = contextFor(ctx, peerName);
    const peerOutcome = qemuWorks ? undefined : q.failures[0];
    const opt = peerOutcome === undefined ? {} : { peerOutcome };
    const figures = [
      figure({
        id: "launch.first-byte",
        label: "process start → first serial byte",
        unit: "ms",
        lguest: l.first,
        peer: q.first,
        context,
        ...opt,
      }),
      figure({
        id: "launch.exit",
        label: "process start → clean exit",
        unit: "ms",
        lguest: l.exit,
        peer: q.exit,
        context,
        target: ({ lguest, peer }) => ({
          text: `faster than QEMU and < ${TARGET_MS} ms`,
          met: lguest === null ? null : lguest < TARGET_MS && (peer === null ? null : lguest < peer),
        }),
        ...opt,
      }),
      figure({ id: "launch.rss", label: "peak RSS", unit: "MiB", lguest: l.rss, peer: q.rss, context, ...opt }),
    ];
    const analysis: string[] = [];
    for (const f of l.failures.slice(0, 3)) analysis.push(`lguest run failed: ${f}`);
    if (!qemuWorks) analysis.push(`QEMU did not boot the test guest: ${peerOutcome}`);
    if (asymmetry !== undefined) analysis.push(asymmetry);
    if (vsBundle !== undefined) {
      const { source, bundled } = vsBundle;
      const ms = (xs: number[]) => fmt(median(xs));
      analysis.push(
        `Bundled against unbundled, ${vsBundle.reps} alternating pairs booting the same guest (medians): ` +
          `dist/lguest from deno task bundle (one JavaScript file per isolate) reaches the first serial byte in ` +
          `${ms(bundled.first)} ms and exits in ${ms(bundled.exit)} ms (${ms(bundled.rss)} MiB), ` +
          `deno run cli.ts in ${ms(source.first)} and ${ms(source.exit)} ms (${ms(source.rss)} MiB).` +
          source.failures.slice(0, 1).map((f) => ` An unbundled run failed: ${f}.`).join("") +
          bundled.failures.slice(0, 1).map((f) => ` A bundled run failed: ${f}.`).join(""),
      );
    }
    const exit = figures[1]!.lguest;
    if (exit !== null && floor.empty !== null && floor.load !== null && floor.c !== null) {
      const vm = exit - floor.load;
      analysis.push(
        `Floors in this run: Deno start+exit of an empty script ${fmt(floor.empty)} ms (${fmt(floor.emptyRss)} MiB), ` +
          `loading lguest's module graph without running it ${fmt(floor.load)} ms, ` +
          `bench/kvm_exit.c booting the same guest to exit ${fmt(floor.c)} ms (first byte ${fmt(floor.cFirst)} ms). ` +
          `So of lguest's ${fmt(exit)} ms, ${fmt(floor.empty)} ms is the Deno runtime, ` +
          `${fmt(floor.load - floor.empty)} ms is loading our modules, and ${fmt(vm)} ms is building the VM, ` +
          `starting the vCPU Worker (a second isolate that loads its own modules), running the guest and tearing down; ` +
          `the guest plus KVM setup alone take ${fmt(floor.c)} ms in C.`,
      );
      const ph = floor.phase;
      const step = (a: string, b: string) => {
        const x = ph(a);
        const y = ph(b);
        return x === null || y === null ? null : y - x;
      };
      const consoleCost = step("bare.guestMs", "guestMs");
      analysis.push(
        `Profile of the same boot through the Machine API, with the virtio console the launcher always adds ` +
          `(scripts/bench/phases.ts under the probe, medians, ms since fork): Deno runtime up at ` +
          `${fmt(ph("runtimeMs"))}, module graph loaded at ${fmt(ph("loadedMs"))}, VM built at ` +
          `${fmt(ph("createdMs"))} (${fmt(step("loadedMs", "createdMs"))} ms, which includes spawning the vCPU ` +
          `Worker: new Worker holds the calling thread for ${fmt(ph("workerCtorMs"))} ms while the isolate is ` +
          `built, and the Worker's modules have run ${fmt(ph("workerStartMs"))} ms after the call, meanwhile the ` +
          `VM is built; bench/kvm_exit.c gets from fork to the guest's first serial byte in ${fmt(floor.cFirst)} ` +
          `ms, its KVM setup included), guest done at ${fmt(ph("ranMs"))} (${fmt(ph("guestMs"))} ms; ` +
          `${fmt(ph("bare.guestMs"))} ms without the virtio console, so the guest's bring-up of the console ` +
          `costs ${fmt(consoleCost)} ms), VM closed at ${fmt(ph("closedMs"))} (${fmt(step("ranMs", "closedMs"))} ms, ` +
          `nearly all of it in the kernel: as it frees the in-kernel PIT, KVM waits for SRCU grace periods, ` +
          `from about 1 to 20 ms from one run to the next; bench/kvm_exit.c, which has a PIT too, pays the same ` +
          `at its exit, QEMU's microvm, which has none, does not), process gone at ${fmt(ph("exitMs"))}.`,
      );
      const qemuExit = figures[1]!.peer;
      if (exit >= TARGET_MS || (qemuExit !== null && exit >= qemuExit)) {
        const spawn = ph("workerCtorMs");
        const build = step("loadedMs", "createdMs");
        analysis.push(
          `Gap: lguest needs ${fmt(exit)} ms against ${TARGET_MS} ms` +
            (qemuExit === null ? "" : ` and QEMU's ${fmt(qemuExit)} ms`) +
            `. On this host the C launcher itself needs ${fmt(floor.c)} ms for the same guest` +
            (ctx.machine.kvm === "pvm" ? " (PVM emulates the guest's ring-0 code)" : "") +
            (floor.c >= TARGET_MS ? `, so no launcher can meet ${TARGET_MS} ms here` : "") +
            `. The rest is Deno and the extra device: the runtime (${fmt(floor.empty)} ms for an empty script), ` +
            `our module graph (${fmt(floor.load - floor.empty)} ms more), the vCPU Worker's isolate ` +
            `(${fmt(spawn)} ms during which the main thread waits), the rest of the VM build in JavaScript and ` +
            `FFI (${fmt(build === null || spawn === null ? null : build - spawn)} ms), the guest bringing up ` +
            `the virtio console (${fmt(consoleCost)} ms, which QEMU's run does not do), and closing the VM ` +
            `(${fmt(step("ranMs", "closedMs"))} ms, the in-kernel PIT's teardown). What would close more: one ` +
            `bundled file per isolate` +
            (floor.bundled === null
              ? ""
              : ` (measured here: the module graph bundled by deno bundle loads in ${fmt(floor.bundled)} ms ` +
                `instead of ${fmt(floor.load)} ms, start to exit)`) +
            `; a cheaper virtio bring-up in the test guest, whose driver runs in emulated ring 0; a VM whose ` +
            `teardown does not wait on an in-kernel PIT; and trimming the build itself (libc is opened and its ` +
            `symbols bound once per isolate).`,
        );
      }
    }
    return { id: this.id, title: this.title, status: "measured", figures, analysis };
  },
};
