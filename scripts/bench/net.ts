/*T:774 Benchmark 4, virtio-net. Everything happens inside a network
 * namespace the run creates and deletes, so the taps never touch the host's
 * own network. The test guest's bench.net=N mode (tests/guest/bench_net.c)
 * drives the card from ring 3: guest->host it sends N broadcast frames of
 * an experimental EtherType (the host stack counts and drops them);
 * host->guest it posts receive buffers, says BENCH-NET-READY, and counts
 * what bench/net_host.c sends into lguest's tap through a packet socket
 * (frames the guest cannot take in time are dropped by the tap, as on a
 * real link; the rate is what arrived over the time it took). The host
 * limit is the same program writing frames into a tap of its own, and
 * reading from its own tap what its packet socket sent. 64 KiB TSO needs a
 * TCP stream and the offload features, which the test guest's loop does not
 * negotiate: that line says so instead of showing a number. :*/

import { contextFor, lguestCommand, pairs, runToEnd, runWithMarker } from "./run.ts";
import { figure, fmt } from "./stats.ts";
import type { BenchContext, Benchmark, Figure, Section } from "./types.ts";
import { threadCostPerOp } from "./perf.ts";

const SIZES = [64, 1514] as const;
const FRAMES = { tx: 5000, rx: 20000 } as const;

async function ip(args: string[]): Promise<void> {
  const r = await runToEnd(["ip", ...args], 10_000);
  if (r.code !== 0) throw new Error(`ip ${args.join(" ")}: ${r.stderr.trim()}`);
}

/** Frames per second from the guest's BENCH-NET line, or undefined. */
export function guestRate(stdout: string, tscKhz: number): number | undefined {
  const m = /^BENCH-NET: (tx|rx) (\d+) \d+ (\d+)$/m.exec(stdout);
  if (!m) return undefined;
  const frames = m[1] === "rx" ? Number(m[2]) - 1 : Number(m[2]);
  const s = Number(m[3]) / (tscKhz * 1000);
  return frames > 0 && s > 0 ? frames / s : undefined;
}

function hostRate(stdout: string): number | undefined {
  const m = /^BENCH-NET-HOST: (tx|rx) (\d+) \d+ (\d+)$/m.exec(stdout);
  if (!m) return undefined;
  const frames = m[1] === "rx" ? Number(m[2]) - 1 : Number(m[2]);
  return frames > 0 && Number(m[3]) > 0 ? frames / (Number(m[3]) / 1e9) : undefined;
}

/** Runs the guest's receive loop and, once it is ready, floods its tap. */
async function guestReceive(ctx: BenchContext, ns: string, size: number): Promise<string> {
  const cmd = [
    "ip",
    "netns",
    "exec",
    ns,
    ...lguestCommand(ctx, [
      "--tunnet=10.99.0.1",
      "128",
      ctx.tools.guest,
      `bench.net=${FRAMES.rx}`,
      `bench.net.size=${size}`,
      "bench.net.dir=1",
    ]),
  ];
  const inject = [ctx.tools.netHost, "inject", "tap0", String(FRAMES.rx), String(size)];
  return await runWithMarker(cmd, "BENCH-NET-READY", async () => {
    await runToEnd(["ip", "netns", "exec", ns, ...inject], 60_000);
  }, { timeoutMs: 120_000 });
}

/** The virtio-net benchmark. */
export const netBenchmark: Benchmark = {
  id: "net",
  title: "4. virtio-net throughput (frames/s)",
  async run(ctx: BenchContext): Promise<Section> {
    const base = { id: this.id, title: this.title };
    if (Deno.uid() !== 0) {
      return {
        ...base,
        status: "skipped",
        reason: "needs root (network namespaces and taps)",
        figures: [],
        analysis: [],
      };
    }
    const kvm = await runToEnd([ctx.tools.kvmExit, ctx.tools.guest, "64", "bench.pio=1"], 60_000);
    const khz = Number(/^TSC-KHZ: (\d+)/m.exec(kvm.stderr)?.[1] ?? 0);
    if (khz === 0) return { ...base, status: "failed", reason: "no TSC rate", figures: [], analysis: [] };
    const ns = `lgbench-${Deno.pid}`;
    const figures: Figure[] = [];
    const analysis: string[] = [];
    const context = contextFor(ctx, "bench/net_host.c on a tap of its own, same netns");
    await ip(["netns", "add", ns]);
    try {
      // No IPv6 on the namespace's taps: its neighbour discovery would mix
      // frames of its own into the ones being counted.
      for (const which of ["all", "default"]) {
        await ip(["netns", "exec", ns, "sysctl", "-qw", `net.ipv6.conf.${which}.disable_ipv6=1`]);
      }
      const reps = Math.min(ctx.repeats, 3);
      for (const size of SIZES) {
        for (const dir of ["tx", "rx"] as const) {
          const what = `${size}-byte frames, ${dir === "tx" ? "guest → host" : "host → guest"}`;
          ctx.log(`net: ${what}`);
          const guest: number[] = [];
          const host: number[] = [];
          await pairs(
            reps,
            async () => {
              const out = dir === "tx"
                ? (await runToEnd([
                  ...["ip", "netns", "exec", ns],
                  ...lguestCommand(ctx, [
                    "--tunnet=10.99.0.1",
                    "128",
                    ctx.tools.guest,
                    `bench.net=${FRAMES.tx}`,
                    `bench.net.size=${size}`,
                  ]),
                ], 120_000)).stdout
                : await guestReceive(ctx, ns, size);
              const r = guestRate(out, khz);
              if (r === undefined) analysis.push(`${what}: lguest run gave no rate: ${out.trim().split("\n").at(-1)}`);
              else guest.push(r);
            },
            async () => {
              const mode = dir === "tx" ? "tap-tx" : "tap-rx";
              const r = await runToEnd(
                ["ip", "netns", "exec", ns, ctx.tools.netHost, mode, String(FRAMES[dir]), String(size)],
                60_000,
              );
              const rate = hostRate(r.stdout);
              if (rate !== undefined) host.push(rate);
            },
          );
          const f = figure({
            id: `net.${size}.${dir}`,
            label: what,
            unit: "frames/s",
            better: "higher",
            lguest: guest,
            peer: host,
            context,
          });
          figures.push(f);
          const gbit = (pps: number | null) => pps === null ? null : pps * size * 8 / 1e9;
          analysis.push(`${what}: lguest ${fmt(gbit(f.lguest))} Gbit/s, host ${fmt(gbit(f.peer))} Gbit/s.`);
        }
      }
      const per = await threadCostPerOp((k) => [
        ...["ip", "netns", "exec", ns],
        ...lguestCommand(ctx, ["--tunnet=10.99.0.1", "128", ctx.tools.guest, `bench.net=${k}`, "bench.net.size=1514"]),
      ], FRAMES.tx);
      if (per !== undefined) {
        analysis.push(
          `Profile of 1514-byte frames guest → host (perf record, cpu-clock, CPU µs per frame by thread, a ` +
            `one-frame run subtracted): ${per.map(([c, us]) => `${c} ${fmt(us)}`).join(", ")}. The vCPU Worker ` +
            `spins on the used ring throughout; "deno" is the main thread (event loop and device model), ` +
            `tokio-runtime-w runs the main loop's nonblocking epoll_wait.`,
        );
      }
    } finally {
      await ip(["netns", "del", ns]).catch(() => {});
    }
    analysis.push(
      "64 KiB TSO: not measured; it needs a TCP stream with HOST_TSO4/GUEST_TSO4 negotiated, and the test " +
        "guest's loop sends and receives raw frames without offloads.",
      "Every frame the guest posts rings the doorbell (an MMIO write that traps into the host kernel, which " +
        "signals the ioeventfd), and every completion travels through the main thread's event loop and the tap's " +
        "read or write, one frame per system call; the host limit does only the last step, so the ratio is the " +
        "cost of the rest. What would close it: fewer wake-ups per frame (handling everything the ring holds " +
        "on each wake-up, on the thread that woke), and the offloads (TSO, merged receive buffers) that make " +
        "one frame carry 64 KiB.",
    );
    return { ...base, status: "measured", figures, analysis };
  },
};
