/*T:760 Benchmark 6, booting Linux: process start to the initramfs's
 * LGUEST-INIT-OK marker and to the clean exit after /init reboots, for the
 * kernel scripts/linux.ts builds, loaded by lguest as an ELF vmlinux and as
 * a bzImage, against QEMU's microvm booting the bzImage (and the vmlinux
 * too when it carries a PVH note). lguest runs with --timings, and its
 * own clock adds a figure QEMU has no counterpart for: process start to
 * /init's write to the boot timer (L:340), the moment userspace began,
 * without the console in the way. Only on hardware KVM: on PVM guest
 * kernel code is emulated and Linux does not reach userspace at all (see
 * tests/linux_boot_test.ts), so the section says so instead of timing it. :*/

import { ensureLinux } from "../linux.ts";
import { describeFailure, type ProbeResult, probeRun } from "./probe.ts";
import { contextFor, lguestCommand, pairs, qemuCommand } from "./run.ts";
import { figure } from "./stats.ts";
import { BOOT_TIMER_MAGIC } from "../../lib/devices/boot_timer.ts";
import { parseBootTimerLines } from "../../lib/timings.ts";
import type { BenchContext, Benchmark, Figure, Section } from "./types.ts";

const CMDLINE = ["console=ttyS0", "lguest.exit=reboot", "reboot=k", "quiet"];
const MARKER = "LGUEST-INIT-OK";

async function hasPvhNote(vmlinux: string): Promise<boolean> {
  const out = await new Deno.Command("readelf", { args: ["-n", vmlinux], stdout: "piped", stderr: "null" }).output()
    .catch(() => undefined);
  return out !== undefined &&
    /Xen\s+0x[0-9a-f]+\s+.*(0x00000012|PHYS32_ENTRY)/.test(new TextDecoder().decode(out.stdout));
}

const booted = (r: ProbeResult) => r.markerMs >= 0 && !r.timedOut && r.exitCode === 0;

/** The Linux boot benchmark. */
export const linuxBenchmark: Benchmark = {
  id: "linux",
  title: "6. Linux boot to the initramfs marker",
  async run(ctx: BenchContext): Promise<Section> {
    const base = { id: this.id, title: this.title, figures: [] as Figure[], analysis: [] as string[] };
    if (ctx.machine.kvm !== "hardware") {
      return {
        ...base,
        status: "skipped",
        reason: `needs hardware KVM; this host's KVM is ${ctx.machine.kvm}, where guest kernel code is emulated ` +
          `and Linux does not reach userspace (tests/linux_boot_test.ts shows how far it gets)`,
      };
    }
    ctx.log("linux: ensuring the kernel and initramfs are built (minutes the first time)");
    const linux = await ensureLinux({ log: (s) => ctx.log(`linux: ${s}`) });
    const figures: Figure[] = [];
    const analysis: string[] = [];
    const qemuPvh = await hasPvhNote(linux.vmlinux);
    for (const [kind, kernel] of [["vmlinux", linux.vmlinux], ["bzImage", linux.bzImage]] as const) {
      const l = { marker: [] as number[], exit: [] as number[], timer: [] as number[] };
      const q = { marker: [] as number[], exit: [] as number[] };
      let peerOutcome: string | undefined = ctx.tools.qemu === undefined
        ? "qemu-system-x86_64 is not installed"
        : undefined;
      if (kind === "vmlinux" && !qemuPvh) peerOutcome = "QEMU cannot boot this vmlinux: it has no PVH ELF note";
      const lCmd = lguestCommand(ctx, ["--timings", `--initrd=${linux.initramfs}`, "256", kernel, ...CMDLINE]);
      const qCmd = qemuCommand(ctx, 256, kernel, { initrd: linux.initramfs, append: CMDLINE.join(" ") });
      ctx.log(`linux: ${kind}, ${ctx.repeats} pairs`);
      await pairs(
        ctx.repeats,
        async () => {
          const r = await probeRun(ctx.tools.probe, lCmd, { marker: MARKER, timeoutS: 60 });
          if (booted(r)) {
            l.marker.push(r.markerMs);
            l.exit.push(r.exitMs);
            const timer = parseBootTimerLines(r.stderr).find((t) => t.value === BOOT_TIMER_MAGIC);
            if (timer !== undefined) l.timer.push(timer.ms);
            else analysis.push(`lguest ${kind}: /init's boot-timer write was not reported`);
          } else analysis.push(`lguest ${kind}: ${describeFailure(r)}`);
        },
        async () => {
          if (peerOutcome !== undefined) return;
          const r = await probeRun(ctx.tools.probe, qCmd, { marker: MARKER, timeoutS: 60 });
          if (booted(r)) {
            q.marker.push(r.markerMs);
            q.exit.push(r.exitMs);
          } else peerOutcome = describeFailure(r);
        },
      );
      const opt = peerOutcome === undefined ? {} : { peerOutcome };
      const context = contextFor(ctx, `QEMU microvm (${ctx.machine.qemu}), same ${kind}`);
      figures.push(
        figure({
          id: `linux.${kind}.marker`,
          label: `${kind}: start → ${MARKER}`,
          unit: "ms",
          lguest: l.marker,
          peer: q.marker,
          context,
          ...opt,
        }),
        figure({
          id: `linux.${kind}.bootTimer`,
          label: `${kind}: start → /init's boot-timer write (lguest's clock)`,
          unit: "ms",
          lguest: l.timer,
          peer: [],
          context,
          peerOutcome: "QEMU has no boot-timer device; lguest's own --timings figure",
        }),
        figure({
          id: `linux.${kind}.exit`,
          label: `${kind}: start → clean exit`,
          unit: "ms",
          lguest: l.exit,
          peer: q.exit,
          context,
          ...opt,
        }),
      );
    }
    analysis.push(`Kernel ${linux.version} from ${linux.cacheDir}.`);
    return { ...base, status: "measured", figures, analysis };
  },
};
