/*T:780 The Markdown the README embeds: one table with every figure of the
 * run (lguest, its peer, the ratio, the target and whether it was met), a
 * header naming the machine, commit and peers, and under it what the run
 * found about each section: the floors and profiles that explain a gap,
 * or why a section was skipped. Nothing in it is typed in by hand: each
 * cell shows its median with the smallest and largest sample and how many
 * there were, and the header's sample counts are read from the figures
 * themselves, so it cannot claim more runs than a section really took. :*/

import { addedFor, fmt, spreadFor } from "./stats.ts";
import type { Added, Figure, MachineInfo, Section, Spread } from "./types.ts";

/** Everything results.json holds. */
export interface Results {
  /** ISO time the run finished. */
  generatedAt: string;
  /** Seconds the run took. */
  durationS: number;
  /** Pairs per figure asked for with --repeats (sections may take fewer or more). */
  repeats: number;
  /** Where it ran. */
  machine: MachineInfo;
  /** The sections, in issue order. */
  sections: Section[];
}

const when = (iso: string) => `${iso.slice(0, 16).replace("T", " ")} UTC`;
const tag = (s: Section) => `(${s.title.split(".")[0]})`;

/** "(1)–(3), (5)": the sections' tags, runs of consecutive numbers joined. */
function tags(sections: readonly Section[]): string {
  const runs: Array<[Section, Section]> = [];
  for (const s of sections) {
    const last = runs.at(-1);
    if (last && Number(s.title.split(".")[0]) === Number(last[1].title.split(".")[0]) + 1) last[1] = s;
    else runs.push([s, s]);
  }
  return runs.map(([a, b]) => a === b ? tag(a) : `${tag(a)}–${tag(b)}`).join(", ");
}

/** "median (min–max, n=N)"; "n/a" for the spread when the results hold none. */
function cell(value: number | null, s: Spread | null | undefined, range = ""): string {
  if (value === null) return "—";
  if (!s) return `${fmt(value)} (n/a)`;
  return `${fmt(value)} (${range}${fmt(s.min)}–${fmt(s.max)}, n=${s.samples})`;
}

function metCell(target: Figure["target"]): string {
  if (!target) return "";
  if (target.met === null) return "?";
  return target.met ? "yes" : "**no**";
}

function row(f: Figure): string {
  const s = spreadFor(f)?.spread;
  const peer = f.peer === null && f.peerOutcome ? "did not run¹" : cell(f.peer, s?.peer);
  return `| ${f.label} | ${f.unit} | ${cell(f.lguest, s?.lguest)} | ${peer} | ${cell(f.ratio, s?.ratio)} | ` +
    `${f.target?.text ?? ""} | ${metCell(f.target)} |`;
}

function addedRow(a: Added): string {
  return `| ↳ ${a.label} | ${a.unit} | ${cell(a.value, a.pairs, "per pair ")} | | | ${a.target.text} | ` +
    `${metCell(a.target)} |`;
}

/** "7", or "3–9" when the figures of a section took different numbers of samples. */
function counts(s: Section): string | undefined {
  const ns = s.figures.flatMap((f) => {
    const sp = spreadFor(f)?.spread;
    return [sp?.lguest?.samples, sp?.peer?.samples].filter((n): n is number => n !== undefined);
  });
  if (ns.length === 0) return undefined;
  const lo = Math.min(...ns);
  const hi = Math.max(...ns);
  return lo === hi ? `${lo}` : `${lo}–${hi}`;
}

/** The header's sentences about samples, spreads and where each section's figures come from. */
function sampleLines(r: Results): string[] {
  const measured = r.sections.filter((s) => s.status === "measured" && s.figures.length > 0);
  const perSection = measured.map((s) => [s, counts(s)] as const).filter(([, n]) => n !== undefined)
    .map(([s, n]) => `${tag(s)} ${n}`);
  const lines = [
    `Each cell reads median (min–max, n=samples): lguest and the peer over their own runs, lguest/peer over ` +
    `the ratios of pairs run back to back. Samples per side: ${perSection.join(", ") || "none"} ` +
    `(\`--repeats=${r.repeats}\` asked for).`,
  ];
  if (measured.some((s) => s.figures.some((f) => addedFor(f) !== undefined))) {
    lines.push(
      `The ns added per exit is lguest's median minus the C loop's, with the range of the pair-by-pair ` +
        `differences.`,
    );
  }
  const derived = measured.filter((s) => s.figures.some((f) => spreadFor(f)?.derived));
  if (derived.length > 0) {
    const commits = [...new Set(derived.flatMap((s) => s.figures.map((f) => f.context.commit)))];
    lines.push(
      `${derived.length > 1 ? "Sections" : "Section"} ${tags(derived)} ` +
        `${derived.length > 1 ? "come" : "comes"} from the run at commit ${commits.map((c) => `\`${c}\``).join(", ")}` +
        `${
          commits.length === 1 && commits[0] === r.machine.commit ? ` (${when(r.generatedAt)})` : ""
        }, which did not ` +
        `record spreads: their min, max and n are computed here from the samples that run stored.`,
    );
  }
  if (measured.some((s) => s.figures.some((f) => spreadFor(f) === null))) {
    lines.push(`"n/a": the results hold neither the spread nor the samples of that figure.`);
  }
  const older = measured.filter((s) => s.figures.some((f) => f.context.commit !== r.machine.commit));
  for (const s of older) {
    const commits = [...new Set(s.figures.map((f) => `\`${f.context.commit}\``))].join(", ");
    lines.push(
      `${tag(s)} was measured by an earlier run, at commit ${commits}` +
        `${s.measuredAt ? ` on ${when(s.measuredAt)}` : ""}.`,
    );
  }
  return lines;
}

/** Renders the results as Markdown. */
export function renderMarkdown(r: Results): string {
  const m = r.machine;
  const out: string[] = [
    [
      `Measured by \`deno task bench\` on ${when(r.generatedAt)}: ${m.cpu} (${m.cpus} CPUs), KVM **${m.kvm}**, ` +
      `host Linux ${m.hostKernel}, commit \`${m.commit}\`, Deno ${m.deno}, ${m.qemu}, ${m.gcc}. ` +
      `Load average ${fmt(m.loadAverage)} at the start.`,
      ...sampleLines(r),
    ].join(" "),
    "",
    "| Figure | unit | lguest | peer | lguest/peer | target | met |",
    "| --- | --- | ---: | ---: | ---: | --- | --- |",
  ];
  const failures: string[] = [];
  const peers = new Set<string>();
  for (const s of r.sections) {
    out.push(`| **${s.title}** | | | | | | |`);
    if (s.status !== "measured") {
      out.push(`| ${s.status.replace("-", " ")} (see below) | | | | | | |`);
      continue;
    }
    for (const f of s.figures) {
      out.push(row(f));
      const added = addedFor(f);
      if (added) out.push(addedRow(added));
      peers.add(`- ${tag(s)} ${f.context.peer}`);
      if (f.peer === null && f.peerOutcome) failures.push(`${f.label}: ${f.peerOutcome}`);
    }
  }
  out.push("", "Peers:", "", ...peers);
  if (failures.length > 0) out.push("", ...[...new Set(failures)].map((f) => `¹ ${f}`));
  out.push("", "What the run found:", "");
  for (const s of r.sections) {
    if (s.status !== "measured") out.push(`- ${tag(s)} ${s.status.replace("-", " ")}: ${s.reason ?? ""}`);
    for (const a of s.analysis) out.push(`- ${tag(s)} ${a}`);
  }
  return out.join("\n") + "\n";
}
