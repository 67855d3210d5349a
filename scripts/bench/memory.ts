/*T:750 Benchmark 5, memory: what the launcher itself costs in RSS, with
 * guest RAM taken out. The test guest is booted in its echo mode, where it
 * sleeps in hlt waiting for a keystroke; while it waits we read the
 * launcher's /proc/<pid>/smaps, take the guest RAM mapping (lguest: the one
 * mapping exactly the guest's size; QEMU: the smallest anonymous mapping at
 * least that large) and subtract the pages the guest touched from the
 * process total. Then we type 'q' and the guest resets the machine. QEMU
 * booting the same file is measured the same way, for comparison. :*/

import { contextFor, lguestCommand, pairs, qemuCommand, runWithMarker } from "./run.ts";
import { figure, fmt, median } from "./stats.ts";
import type { BenchContext, Benchmark, Figure, Section } from "./types.ts";

/** One mapping from smaps: its size and resident kB, and whether it is anonymous. */
interface Mapping {
  sizeKiB: number;
  rssKiB: number;
  anonymous: boolean;
}

/** Parses /proc/<pid>/smaps into mappings. */
export function parseSmaps(text: string): Mapping[] {
  const out: Mapping[] = [];
  let cur: Mapping | undefined;
  for (const line of text.split("\n")) {
    const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+(?:\s+(.*))?$/.exec(line);
    if (head) {
      cur = { sizeKiB: 0, rssKiB: 0, anonymous: (head[1] ?? "").trim() === "" };
      out.push(cur);
      continue;
    }
    const field = /^(Size|Rss):\s+(\d+) kB/.exec(line);
    if (field && cur) {
      if (field[1] === "Size") cur.sizeKiB = Number(field[2]);
      else cur.rssKiB = Number(field[2]);
    }
  }
  return out;
}

/** Total RSS and the guest RAM mapping's RSS, in KiB. */
export function splitRss(
  maps: readonly Mapping[],
  guestKiB: number,
): { totalKiB: number; guestKiB: number } | undefined {
  const totalKiB = maps.reduce((s, m) => s + m.rssKiB, 0);
  const ram = maps.filter((m) => m.anonymous && m.sizeKiB >= guestKiB).sort((a, b) => a.sizeKiB - b.sizeKiB)[0];
  return ram === undefined ? undefined : { totalKiB, guestKiB: ram.rssKiB };
}

/** Boots `cmd`, waits for the echo prompt, samples smaps, types 'q'. */
async function sample(cmd: readonly string[], guestMiB: number, timeoutMs: number) {
  let result: { totalKiB: number; guestKiB: number } | undefined;
  await runWithMarker(cmd, "ECHO-READY", async (child) => {
    result = splitRss(parseSmaps(await Deno.readTextFile(`/proc/${child.pid}/smaps`)), guestMiB * 1024);
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode("q"));
    await w.close();
  }, { timeoutMs, stdin: true });
  return result;
}

/** The memory benchmark. */
export const memoryBenchmark: Benchmark = {
  id: "memory",
  title: "5. Memory: launcher RSS minus guest pages touched",
  async run(ctx: BenchContext): Promise<Section> {
    const figures: Figure[] = [];
    const analysis: string[] = [];
    for (const mib of [128, 2048]) {
      const lguest: number[] = [];
      const peer: number[] = [];
      const touched: number[] = [];
      const peerTouched: number[] = [];
      let peerOutcome: string | undefined = ctx.tools.qemu === undefined
        ? "qemu-system-x86_64 is not installed"
        : undefined;
      ctx.log(`memory: ${mib} MiB guest`);
      await pairs(
        Math.min(ctx.repeats, 3),
        async () => {
          const r = await sample(lguestCommand(ctx, [String(mib), ctx.tools.guest, "lguest.echo"]), mib, 30_000);
          if (r) {
            lguest.push((r.totalKiB - r.guestKiB) / 1024);
            touched.push(r.guestKiB / 1024);
          } else analysis.push(`lguest ${mib} MiB: no echo prompt or no guest RAM mapping found`);
        },
        async () => {
          if (peerOutcome !== undefined) return;
          const r = await sample(
            qemuCommand(ctx, mib, ctx.tools.guest, { append: "lguest.echo" }),
            mib,
            30_000,
          );
          if (r) {
            peer.push((r.totalKiB - r.guestKiB) / 1024);
            peerTouched.push(r.guestKiB / 1024);
          } else peerOutcome = "QEMU did not reach the echo prompt (or its RAM mapping was not found)";
        },
      );
      const opt = peerOutcome === undefined ? {} : { peerOutcome };
      const f = figure({
        id: `memory.${mib}`,
        label: `${mib} MiB guest: RSS minus guest RAM`,
        unit: "MiB",
        lguest,
        peer,
        context: contextFor(ctx, `QEMU microvm (${ctx.machine.qemu})`),
        ...opt,
      });
      figures.push(f);
      analysis.push(
        `${mib} MiB guest: lguest's own RSS ${fmt(f.lguest)} MiB (guest pages touched: ${fmt(median(touched))} MiB); ` +
          `QEMU's ${fmt(f.peer)} MiB (guest pages touched: ${fmt(median(peerTouched))} MiB).`,
      );
    }
    const [small, big] = figures;
    if (small?.lguest != null && big?.lguest != null) {
      analysis.push(
        `Guest size moves lguest's own RSS by ${fmt(big.lguest - small.lguest)} MiB from 128 MiB to 2 GiB: ` +
          `guest RAM is one MAP_NORESERVE mapping, so untouched guest pages cost nothing; ` +
          `what remains is the Deno runtime with two isolates (main thread and vCPU Worker).`,
      );
    }
    return { id: this.id, title: this.title, status: "measured", figures, analysis };
  },
};
