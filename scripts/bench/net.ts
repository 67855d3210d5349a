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
 * reading from its own tap what its packet socket sent.
 *
 * With bench.net.tso=1 the same loops move 64 KiB TCP/IPv4 segments with
 * the offloads negotiated (T:777). Guest->host, net_host greets the guest
 * (which learns the tap's MAC from it) and counts, with a packet socket on
 * lguest's tap, the segments the host stack takes in; its host limit
 * writes the same segments into a tap of its own and counts them the same
 * way. Host->guest, net_host sends them into lguest's tap with a
 * virtio_net_hdr asking for the cut, and the guest counts those that arrive
 * whole; its host limit reads them from a tap of its own that has the same
 * offloads switched on. :*/

import { contextFor, lguestCommand, pairs, runToEnd, runWithMarker } from "./run.ts";
import { figure, fmt } from "./stats.ts";
import type { BenchContext, Benchmark, Figure, Section } from "./types.ts";
import { threadCostPerOp } from "./perf.ts";

const SIZES = [64, 1514] as const;
const FRAMES = { tx: 5000, rx: 20000 } as const;
/** 64 KiB segments per run, each way. */
const TSO_SEGMENTS = 3000;
/** A segment's TCP payload (45 x 1448) and the Ethernet frame around it. */
const TSO_PAYLOAD = 65160;
const TSO_FRAME = TSO_PAYLOAD + 54;

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

/**
 * Segments per second counted by net_host's packet socket (its "sink" line), or
 * why there is no rate. Every segment must have arrived whole (TSO_FRAME bytes).
 */
export function sinkRate(stdout: string): number | string {
  const m = /^BENCH-NET-HOST: sink (\d+) (\d+) (\d+)$/m.exec(stdout);
  if (!m) return `no sink line: ${stdout.trim().split("\n").at(-1) ?? ""}`;
  const [frames, bytes, ns] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (frames < 2 || ns === 0) return `the host counted ${frames} segments`;
  if (bytes !== frames * TSO_FRAME) return `${frames} segments of ${bytes / frames} bytes on average, not ${TSO_FRAME}`;
  return (frames - 1) / (ns / 1e9);
}

/** Runs the guest and, once it says BENCH-NET-READY, net_host with the arguments `host`, in the namespace. */
async function guestWithPeer(
  ctx: BenchContext,
  ns: string,
  guestArgs: string[],
  host: string[],
): Promise<{ guest: string; host: string }> {
  const cmd = [
    ...["ip", "netns", "exec", ns],
    ...lguestCommand(ctx, ["--tunnet=10.99.0.1", "128", ctx.tools.guest, ...guestArgs]),
  ];
  let hostOut = "";
  const guest = await runWithMarker(cmd, "BENCH-NET-READY", async () => {
    hostOut = (await runToEnd(["ip", "netns", "exec", ns, ctx.tools.netHost, ...host], 60_000)).stdout;
  }, { timeoutMs: 120_000 });
  return { guest, host: hostOut };
}

/** Runs the guest's receive loop and, once it is ready, floods its tap. */
async function guestReceive(ctx: BenchContext, ns: string, size: number): Promise<string> {
  const args = [`bench.net=${FRAMES.rx}`, `bench.net.size=${size}`, "bench.net.dir=1"];
  return (await guestWithPeer(ctx, ns, args, ["inject", "tap0", String(FRAMES.rx), String(size)])).guest;
}

/** The 64 KiB TSO figures, both ways (T:777), each paired with its host limit. */
async function tsoFigures(
  ctx: BenchContext,
  ns: string,
  khz: number,
  context: Figure["context"],
  analysis: string[],
): Promise<Figure[]> {
  const figures: Figure[] = [];
  const n = String(TSO_SEGMENTS);
  for (const dir of ["tx", "rx"] as const) {
    const what = `64 KiB TSO segments, ${dir === "tx" ? "guest → host" : "host → guest"}`;
    ctx.log(`net: ${what}`);
    const guest: number[] = [];
    const host: number[] = [];
    const failures = new Set<string>();
    await pairs(
      Math.min(ctx.repeats, 3),
      async () => {
        const args = [`bench.net=${n}`, "bench.net.tso=1", ...(dir === "rx" ? ["bench.net.dir=1"] : [])];
        const peer = dir === "tx" ? ["tso-sink", "tap0", n] : ["tso-inject", "tap0", n];
        const out = await guestWithPeer(ctx, ns, args, peer);
        const r = dir === "tx" ? sinkRate(out.host) : guestRate(out.guest, khz) ?? "";
        if (typeof r === "number") guest.push(r);
        else failures.add(`lguest gave no rate: ${r || out.guest.trim().split("\n").at(-1)}`);
      },
      async () => {
        const r = await runToEnd(["ip", "netns", "exec", ns, ctx.tools.netHost, `tso-${dir}`, n], 60_000);
        const rate = dir === "tx" ? sinkRate(r.stdout) : hostRate(r.stdout) ?? "no rate";
        if (typeof rate === "number") host.push(rate);
        else failures.add(`the host limit gave no rate: ${rate} ${r.stderr.trim()}`);
      },
    );
    const f = figure({
      id: `net.tso.${dir}`,
      label: what,
      unit: "segments/s",
      better: "higher",
      lguest: guest,
      peer: host,
      context,
    });
    figures.push(f);
    const gbit = (sps: number | null) => sps === null ? null : sps * TSO_PAYLOAD * 8 / 1e9;
    analysis.push(
      `${what} (${TSO_PAYLOAD} bytes of TCP payload each, cut at MSS 1448): lguest ${fmt(gbit(f.lguest))} Gbit/s, ` +
        `host ${fmt(gbit(f.peer))} Gbit/s of payload.`,
      ...[...failures].map((why) => `${what}: ${why}`),
    );
  }
  return figures;
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
      figures.push(...await tsoFigures(ctx, ns, khz, context, analysis));
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
      "64 KiB TSO: guest → host, the guest negotiates CSUM and HOST_TSO4 and sends each segment as one frame " +
        "with a virtio_net_hdr asking for the TCP checksum and the cut (GSO_TCPV4, 1448); lguest writes it to the " +
        "tap as is, and the host stack takes it in whole (it is addressed to the tap's own address, so nothing " +
        "cuts it; TCP answers each with a reset, there being no socket); net_host counts the segments with a " +
        "packet socket on the tap. Host → guest, the guest negotiates GUEST_CSUM, GUEST_TSO4 and MRG_RXBUF and " +
        "posts 16 KiB buffers, and each segment reaches it uncut, spread over four of them.",
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
