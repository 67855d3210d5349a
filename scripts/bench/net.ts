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
 * offloads switched on.
 *
 * Every figure runs three ways side by side, order rotating: lguest, QEMU's
 * microvm with its userspace virtio-net on a tap of the same kind (and with
 * vhost-net, where the host has /dev/vhost-net), and the host's own limit;
 * so each direction and size gives two figures, lguest against the host
 * and lguest against QEMU, each with the issue's goal (T:778 has the
 * runs). --net=user adds lguest against QEMU, each on its own passt. :*/

import { contextFor } from "./run.ts";
import { figure, fmt } from "./stats.ts";
import type { BenchContext, Benchmark, Figure, Section, Target } from "./types.ts";
import { threadCostPerOp } from "./perf.ts";
import {
  type Backend,
  type GuestRun,
  haveVhostNet,
  hostLimit,
  type Launcher,
  runGuest,
  TAP_IP,
  withRoute,
} from "./net_runs.ts";
import { lguestCommand, runToEnd } from "./run.ts";

const SIZES = [64, 1514] as const;
/**
 * Frames per run. Enough for a steady state: the first few thousand frames run through code the data-path
 * thread's JIT has not compiled yet (5,000 frames measured 0.3 M/s where 200,000 measured 1.1 M/s).
 */
const FRAMES = { tx: 200_000, rx: 100_000 } as const;
/** 64 KiB segments per run, each way. */
const TSO_SEGMENTS = 20_000;
/** A segment's TCP payload (45 x 1448) and the Ethernet frame around it. */
const TSO_PAYLOAD = 65160;
const TSO_FRAME = TSO_PAYLOAD + 54;

/** The issue's goals: against QEMU's userspace virtio-net, and as a share of the host's own limit. */
const GOAL_VS_QEMU = 1;
const GOAL_64_OF_HOST = 0.25;
const GOAL_TSO_OF_HOST = 0.8;

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

/** One direction and frame size: how to run the guest, its host peer and the host's limit, and where rates come from. */
interface Case {
  id: string;
  label: string;
  unit: string;
  /** Bytes of payload per frame or segment, for Gbit/s. */
  bytes: number;
  guestArgs: string[];
  /** net_host's arguments while the guest runs (started at its ready line), if any. */
  peer?: string[];
  /** The rate of a guest run. */
  rate(run: GuestRun, khz: number): number | string;
  /** net_host's arguments alone: the host's limit. */
  limitArgs: string[];
  limitRate(out: string): number | string;
  /** The goal as a share of the host's limit, if the issue sets one. */
  goalOfHost?: number;
}

function cases(): Case[] {
  const out: Case[] = [];
  const noRate = (run: GuestRun) => `no rate: ${run.guest.trim().split("\n").at(-1) ?? ""}`;
  for (const size of SIZES) {
    for (const dir of ["tx", "rx"] as const) {
      const n = String(FRAMES[dir]);
      out.push({
        id: `net.${size}.${dir}`,
        label: `${size}-byte frames, ${dir === "tx" ? "guest → host" : "host → guest"}`,
        unit: "frames/s",
        bytes: size,
        guestArgs: [`bench.net=${n}`, `bench.net.size=${size}`, ...(dir === "rx" ? ["bench.net.dir=1"] : [])],
        ...(dir === "rx" ? { peer: ["inject", "tap0", n, String(size)] } : {}),
        rate: (run, khz) => guestRate(run.guest, khz) ?? noRate(run),
        limitArgs: [dir === "tx" ? "tap-tx" : "tap-rx", n, String(size)],
        limitRate: (o) => hostRate(o) ?? `no rate: ${o.trim().split("\n").at(-1) ?? ""}`,
        ...(size === 64 ? { goalOfHost: GOAL_64_OF_HOST } : {}),
      });
    }
  }
  const n = String(TSO_SEGMENTS);
  for (const dir of ["tx", "rx"] as const) {
    out.push({
      id: `net.tso.${dir}`,
      label: `64 KiB TSO segments, ${dir === "tx" ? "guest → host" : "host → guest"}`,
      unit: "segments/s",
      bytes: TSO_PAYLOAD,
      guestArgs: [`bench.net=${n}`, "bench.net.tso=1", ...(dir === "rx" ? ["bench.net.dir=1"] : [])],
      peer: dir === "tx" ? ["tso-sink", "tap0", n] : ["tso-inject", "tap0", n],
      rate: (run, khz) => dir === "tx" ? sinkRate(run.host) : guestRate(run.guest, khz) ?? noRate(run),
      limitArgs: [`tso-${dir}`, n],
      limitRate: (o) => dir === "tx" ? sinkRate(o) : hostRate(o) ?? "no rate",
      goalOfHost: GOAL_TSO_OF_HOST,
    });
  }
  return out;
}

/** Runs each side `reps` times, rotating which goes first, so that none always gets the warmer cache. */
async function rounds(reps: number, sides: ReadonlyArray<() => Promise<void>>): Promise<void> {
  for (let i = 0; i < reps; i++) {
    for (let k = 0; k < sides.length; k++) await sides[(i + k) % sides.length]!();
  }
}

const atLeast = (goal: number, what: string) => (f: { ratio: number | null }): Target => ({
  text: `${what} ≥ ${goal}`,
  met: f.ratio === null ? null : f.ratio >= goal,
});

/** Figures for one case: lguest against the host's limit and against each QEMU. */
async function caseFigures(
  ctx: BenchContext,
  ns: string,
  khz: number,
  c: Case,
  qemus: ReadonlyArray<{ backend: Backend; peer: string }>,
  analysis: string[],
): Promise<Figure[]> {
  ctx.log(`net: ${c.label}`);
  const reps = Math.min(ctx.repeats, 3);
  const lguest: number[] = [];
  const host: number[] = [];
  const qemu = qemus.map(() => [] as number[]);
  const failures = new Set<string>();
  const take = (into: number[], who: string, r: number | string) => {
    if (typeof r === "number") into.push(r);
    else {
      into.push(NaN);
      failures.add(`${who}: ${r}`);
    }
  };
  const guest = (launcher: Launcher, backend: Backend, into: number[], who: string) => async () =>
    take(into, who, c.rate(await runGuest(ctx, ns, launcher, backend, c.guestArgs, c.peer), khz));
  await rounds(reps, [
    guest("lguest", { kind: "tap", vhost: false }, lguest, "lguest"),
    async () => take(host, "the host's limit", c.limitRate(await hostLimit(ctx, ns, c.limitArgs))),
    ...qemus.map((q, i) => guest("qemu", q.backend, qemu[i]!, q.peer)),
  ]);
  const figures = [figure({
    id: c.id,
    label: c.label,
    unit: c.unit,
    better: "higher",
    lguest,
    peer: host,
    context: contextFor(ctx, "bench/net_host.c on a tap of its own, same netns"),
    ...(c.goalOfHost === undefined ? {} : { target: atLeast(c.goalOfHost, "share of the host's limit") }),
  })];
  qemus.forEach((q, i) =>
    figures.push(figure({
      id: `${c.id}.${q.backend.kind === "tap" && q.backend.vhost ? "qemu-vhost" : "qemu"}`,
      label: `↳ against ${q.peer}`,
      unit: c.unit,
      better: "higher",
      lguest,
      peer: qemu[i]!,
      context: contextFor(ctx, `${ctx.machine.qemu}, ${q.peer}`),
      target: atLeast(GOAL_VS_QEMU, "lguest/QEMU"),
    }))
  );
  const gbit = (rate: number | null) => rate === null ? null : rate * c.bytes * 8 / 1e9;
  analysis.push(
    `${c.label}: lguest ${fmt(gbit(figures[0]!.lguest))} Gbit/s, host ${fmt(gbit(figures[0]!.peer))} Gbit/s` +
      qemus.map((q, i) => `, ${q.peer} ${fmt(gbit(figures[i + 1]!.peer))} Gbit/s`).join("") + ".",
    ...[...failures].map((why) => `${c.label}: ${why}`),
  );
  return figures;
}

/** --net=user: lguest and QEMU, each on its own passt, guest → passt, 1514-byte frames (T:778). */
async function userNetFigure(ctx: BenchContext, ns: string, khz: number, analysis: string[]): Promise<Figure> {
  const what = "--net=user (passt), 1514-byte frames, guest → passt";
  ctx.log(`net: ${what}`);
  const args = [`bench.net=${FRAMES.tx}`, "bench.net.size=1514"];
  const lguest: number[] = [];
  const qemu: number[] = [];
  const failures = new Set<string>();
  const side = (launcher: Launcher, into: number[]) => async () => {
    const run = await runGuest(ctx, ns, launcher, { kind: "user" }, args);
    const r = guestRate(run.guest, khz);
    into.push(r ?? NaN);
    if (r === undefined) failures.add(`${launcher} gave no rate: ${run.guest.trim().split("\n").at(-1) ?? ""}`);
  };
  await rounds(Math.min(ctx.repeats, 3), [side("lguest", lguest), side("qemu", qemu)]);
  analysis.push(
    `${what}: the guest's broadcast frames of an experimental EtherType cross the UNIX socket in the stream ` +
      "framing and passt drops them; the rate is how fast each launcher takes them off the ring and writes them.",
    ...[...failures].map((why) => `${what}: ${why}`),
  );
  return figure({
    id: "net.user.1514.tx",
    label: what,
    unit: "frames/s",
    better: "higher",
    lguest,
    peer: qemu,
    context: contextFor(ctx, `${ctx.machine.qemu}, virtio-net-device on -netdev stream to passt`),
    target: atLeast(GOAL_VS_QEMU, "lguest/QEMU"),
  });
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
    const qemus: Array<{ backend: Backend; peer: string }> = [];
    if (ctx.tools.qemu !== undefined) {
      qemus.push({
        backend: { kind: "tap", vhost: false },
        peer: "QEMU microvm, virtio-net-device on a tap, vhost off",
      });
      if (await haveVhostNet()) {
        qemus.push({
          backend: { kind: "tap", vhost: true },
          peer: "QEMU microvm, virtio-net-device on a tap, vhost on",
        });
      } else analysis.push("No /dev/vhost-net on this host: QEMU ran with its userspace virtio-net only.");
    }
    await runToEnd(["ip", "netns", "add", ns], 10_000);
    try {
      // No IPv6 on the namespace's taps: its neighbour discovery would mix
      // frames of its own into the ones being counted.
      for (const which of ["all", "default"]) {
        await runToEnd(["ip", "netns", "exec", ns, "sysctl", "-qw", `net.ipv6.conf.${which}.disable_ipv6=1`], 10_000);
      }
      for (const c of cases()) figures.push(...await caseFigures(ctx, ns, khz, c, qemus, analysis));
      if (await havePasst()) figures.push(await withRoute(ns, () => userNetFigure(ctx, ns, khz, analysis)));
      else analysis.push("--net=user not measured: passt is not installed (apt-get install passt).");
      const per = await threadCostPerOp((k) => [
        ...["ip", "netns", "exec", ns],
        ...lguestCommand(ctx, [`--tunnet=${TAP_IP}`, "128", ctx.tools.guest, `bench.net=${k}`, "bench.net.size=1514"]),
      ], FRAMES.tx);
      if (per !== undefined) {
        analysis.push(
          `Profile of 1514-byte frames guest → host (perf record, cpu-clock, CPU µs per frame by thread, a ` +
            `one-frame run subtracted): ${per.map(([c, us]) => `${c} ${fmt(us)}`).join(", ")}. Deno numbers its ` +
            `Workers in the order they start: worker-1 is the card's data path (the card is opened first), ` +
            `worker-2 the vCPU. The vCPU spins on the used ring throughout, and the data path watches the ` +
            `rings for 50 µs after each turn before it sleeps, so both count time spent waiting for the other; ` +
            `"deno" is the main thread, which takes no part in moving frames.`,
        );
      }
      const rx = await threadCostPerOp(
        (k) =>
          withPeerUnderPerf(ctx, ns, [`bench.net=${k}`, "bench.net.size=1514", "bench.net.dir=1"], [
            ...["inject", "tap0", String(k), "1514"],
          ]),
        FRAMES.rx,
      );
      if (rx !== undefined) {
        analysis.push(
          `Profile of 1514-byte frames host → guest (the same, per frame net_host injected, the injector ` +
            `included; worker-1 the data path, worker-2 the vCPU): ${
              rx.map(([c, us]) => `${c} ${fmt(us)}`).join(", ")
            }. ` +
            `On two cores the injector, the vCPU's polling loop and the data path share two CPUs, so a frame the ` +
            `data path has no time for waits in the tap's queue and, past its 1000 frames, is dropped by the ` +
            `kernel as a real link would.`,
        );
      }
      for (const dir of ["tx", "rx"] as const) {
        const tso = await threadCostPerOp(
          (k) =>
            withPeerUnderPerf(ctx, ns, [
              `bench.net=${k}`,
              "bench.net.tso=1",
              ...(dir === "rx" ? ["bench.net.dir=1"] : []),
            ], [
              ...(dir === "tx" ? ["tso-sink", "tap0"] : ["tso-inject", "tap0"]),
              String(k),
            ]),
          TSO_SEGMENTS,
        );
        if (tso === undefined) continue;
        analysis.push(
          `Profile of 64 KiB TSO segments ${dir === "tx" ? "guest → host" : "host → guest"} (the same, per ` +
            `segment, net_host included; worker-1 the data path, worker-2 the vCPU): ${
              tso.map(([c, us]) => `${c} ${fmt(us)}`).join(", ")
            }. Each segment is ` +
            `one ${dir === "tx" ? "writev" : "readv"} of 64 KiB on the data-path thread, and the host kernel's ` +
            `copy between the tap and guest memory runs inside that call, so it counts on that thread.`,
        );
      }
    } finally {
      await runToEnd(["ip", "netns", "del", ns], 10_000).catch(() => {});
    }
    analysis.push(
      "64 KiB TSO: guest → host, the guest negotiates CSUM and HOST_TSO4 and sends each segment as one frame " +
        "with a virtio_net_hdr asking for the TCP checksum and the cut (GSO_TCPV4, 1448); the launcher writes it " +
        "to the tap as is, and the host stack takes it in whole (it is addressed to the tap's own address, so " +
        "nothing cuts it; TCP answers each with a reset, there being no socket); net_host counts the segments " +
        "with a packet socket on the tap. Host → guest, the guest negotiates GUEST_CSUM, GUEST_TSO4 and " +
        "MRG_RXBUF and posts 16 KiB buffers, and each segment reaches it uncut, spread over four of them.",
      "The guest's driver loop runs in ring 3 with the card's interrupt masked, polls the used rings, and rings " +
        "a doorbell only when the device asks for one (VRING_USED_F_NO_NOTIFY clear), as Linux's driver does. " +
        "lguest serves both queues on the card's own data-path thread (doorbells and the tap in one poll, " +
        "readv/writev straight between the tap and guest memory, a budget per direction per turn); the host " +
        "limit does only the tap's read or write, so its ratio is the cost of everything else.",
    );
    return { ...base, status: "measured", figures, analysis };
  },
};

async function havePasst(): Promise<boolean> {
  return (await runToEnd(["sh", "-c", "command -v passt"], 10_000)).code === 0;
}

/**
 * One guest run with its host peer as a single command, for perf to follow with its children: the guest under
 * lguest with `guestArgs`, and net_host `peer` once the guest says it is ready.
 */
function withPeerUnderPerf(ctx: BenchContext, ns: string, guestArgs: string[], peer: string[]): string[] {
  const guest = lguestCommand(ctx, [`--tunnet=${TAP_IP}`, "128", ctx.tools.guest, ...guestArgs]);
  const q = (args: string[]) => args.map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(" ");
  const script = [
    `out=$(mktemp)`,
    `ip netns exec ${q([ns])} ${q(guest)} > "$out" 2>/dev/null & guest=$!`,
    `i=0; until grep -q BENCH-NET-READY "$out" || [ $i -ge 6000 ]; do sleep 0.01; i=$((i+1)); done`,
    `ip netns exec ${q([ns])} ${q([ctx.tools.netHost, ...peer])} > /dev/null`,
    `wait $guest; rm -f "$out"`,
  ].join("\n");
  return ["sh", "-c", script];
}
