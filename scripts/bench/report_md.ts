/*T:780 The Markdown the README embeds: one table with every figure of the
 * run (lguest, its peer, the ratio, the target and whether it was met), a
 * line naming the machine, commit and peers, and under it what the run
 * found about each section: the floors and profiles that explain a gap,
 * or why a section was skipped. Nothing in it is typed in by hand. :*/

import { fmt } from "./stats.ts";
import type { Figure, MachineInfo, Section } from "./types.ts";

/** Everything results.json holds. */
export interface Results {
  /** ISO time the run finished. */
  generatedAt: string;
  /** Seconds the run took. */
  durationS: number;
  /** Pairs per figure. */
  repeats: number;
  /** Where it ran. */
  machine: MachineInfo;
  /** The sections, in issue order. */
  sections: Section[];
}

function metCell(f: Figure): string {
  if (!f.target) return "";
  if (f.target.met === null) return "?";
  return f.target.met ? "yes" : "**no**";
}

function row(f: Figure): string {
  const peer = f.peer === null && f.peerOutcome ? "did not run¹" : fmt(f.peer);
  const ratio = f.ratio === null ? "—" : fmt(f.ratio);
  return `| ${f.label} | ${f.unit} | ${fmt(f.lguest)} | ${peer} | ${ratio} | ${f.target?.text ?? ""} | ${metCell(f)} |`;
}

/** Renders the results as Markdown. */
export function renderMarkdown(r: Results): string {
  const m = r.machine;
  const out: string[] = [
    `Measured by \`deno task bench\` on ${r.generatedAt.slice(0, 16).replace("T", " ")} UTC: ${m.cpu} ` +
    `(${m.cpus} CPUs), KVM **${m.kvm}**, host Linux ${m.hostKernel}, commit \`${m.commit}\`, Deno ${m.deno}, ` +
    `${m.qemu}, ${m.gcc}. Load average ${fmt(m.loadAverage)} at the start. Each figure is the median of ` +
    `${r.repeats}+ runs per side; the ratio is the median of lguest/peer over pairs run back to back.`,
    "",
    "| Figure | unit | lguest | peer | lguest/peer | target | met |",
    "| --- | --- | ---: | ---: | ---: | --- | --- |",
  ];
  const failures: string[] = [];
  const peers = new Set<string>();
  const tag = (s: Section) => `(${s.title.split(".")[0]})`;
  for (const s of r.sections) {
    out.push(`| **${s.title}** | | | | | | |`);
    if (s.status !== "measured") {
      out.push(`| ${s.status.replace("-", " ")} (see below) | | | | | | |`);
      continue;
    }
    for (const f of s.figures) {
      out.push(row(f));
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
