/*T:705 Medians, not means: one sample taken while another helper's test
 * suite hogs both cores is an outlier the median shrugs off. The ratio is
 * taken pair by pair (lguest and its peer run back to back, alternating who
 * goes first) and then the median of those ratios is reported, so slow
 * drift over the run cancels out. A median alone hides how much the runs
 * disagreed, so every figure also keeps its spread: the sample count, the
 * smallest and the largest, for each side and for the ratios. :*/

import type { Added, Figure, FigureContext, FigureSpread, Spread, Target } from "./types.ts";

/** Median of `xs` (null when empty). */
export function median(xs: readonly number[]): number | null {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return null;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Count, min, median and max of the finite values of `xs` (null when there are none). */
export function spreadOf(xs: readonly number[], unit: string): Spread | null {
  const s = xs.filter((x) => Number.isFinite(x));
  if (s.length === 0) return null;
  return { samples: s.length, min: Math.min(...s), median: median(s)!, max: Math.max(...s), unit };
}

/** The element-wise ratios a[i]/b[i] over the pairs both have. */
export function pairedRatios(a: readonly number[], b: readonly number[]): number[] {
  const rs: number[] = [];
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (b[i]! > 0 && Number.isFinite(a[i]!)) rs.push(a[i]! / b[i]!);
  }
  return rs;
}

/** Median of the element-wise ratios a[i]/b[i] over the pairs both have. */
export function pairedRatio(a: readonly number[], b: readonly number[]): number | null {
  return median(pairedRatios(a, b));
}

/** The element-wise differences a[i] − b[i] over the pairs both have. */
export function pairedDifferences(a: readonly number[], b: readonly number[]): number[] {
  const ds: number[] = [];
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (Number.isFinite(a[i]!) && Number.isFinite(b[i]!)) ds.push(a[i]! - b[i]!);
  }
  return ds;
}

/** The spread of both sides of a figure and of its per-pair ratios. */
export function figureSpread(lguest: readonly number[], peer: readonly number[], unit: string): FigureSpread {
  return {
    lguest: spreadOf(lguest, unit),
    peer: spreadOf(peer, unit),
    ratio: spreadOf(pairedRatios(lguest, peer), "×"),
  };
}

/** The goal for the launcher's own cost per exit, in ns (issue 8). */
export const EXIT_GOAL_NS = 300;

/**
 * "ns added per exit by the launcher over the C loop" for an exit figure in
 * µs/exit: lguest's median minus the C loop's, in ns, with the spread of
 * the per-pair differences and the ≤ 300 ns goal. On PVM an exit costs
 * 10–65 µs in the host kernel, so a 2 µs overhead is a ratio of 1.03 there,
 * yet it would be most of an exit on hardware KVM: the goal is on the
 * difference.
 */
export function addedPerExit(f: Pick<Figure, "unit" | "lguest" | "peer" | "samples">): Added {
  if (f.unit !== "µs/exit") throw new Error(`addedPerExit: expected µs/exit, got ${f.unit}`);
  const ns = (us: number) => us * 1000;
  const value = f.lguest === null || f.peer === null ? null : ns(f.lguest - f.peer);
  return {
    label: "ns added per exit by the launcher over the C loop",
    unit: "ns/exit",
    value,
    pairs: spreadOf(pairedDifferences(f.samples.lguest, f.samples.peer).map(ns), "ns/exit"),
    target: { text: `≤ ${EXIT_GOAL_NS} ns added per exit`, met: value === null ? null : value <= EXIT_GOAL_NS },
  };
}

/**
 * A figure's spread as stored, or, for results written before the spread
 * was recorded, computed from the samples the figure kept (`derived` says
 * which); null when it has neither.
 */
export function spreadFor(f: Figure): { spread: FigureSpread; derived: boolean } | null {
  if (f.spread) return { spread: f.spread, derived: false };
  if (!f.samples) return null;
  return { spread: figureSpread(f.samples.lguest, f.samples.peer, f.unit), derived: true };
}

/** A figure's added cost as stored, or computed from the samples of an older exit figure. */
export function addedFor(f: Figure): Added | undefined {
  if (f.added) return f.added;
  if (f.id.startsWith("exit.") && f.unit === "µs/exit" && f.samples) return addedPerExit(f);
  return undefined;
}

/** Builds a figure from its samples. */
export function figure(
  spec: {
    id: string;
    label: string;
    unit: string;
    better?: "lower" | "higher";
    lguest: number[];
    peer: number[];
    context: FigureContext;
    target?: (f: { lguest: number | null; peer: number | null; ratio: number | null }) => Target;
    peerOutcome?: string;
    note?: string;
  },
): Figure {
  const lguest = median(spec.lguest);
  const peer = median(spec.peer);
  const ratio = pairedRatio(spec.lguest, spec.peer);
  const out: Figure = {
    id: spec.id,
    label: spec.label,
    unit: spec.unit,
    better: spec.better ?? "lower",
    lguest,
    peer,
    ratio,
    samples: { lguest: spec.lguest, peer: spec.peer },
    spread: figureSpread(spec.lguest, spec.peer, spec.unit),
    context: spec.context,
  };
  if (spec.target) out.target = spec.target({ lguest, peer, ratio });
  if (spec.peerOutcome !== undefined) out.peerOutcome = spec.peerOutcome;
  if (spec.note !== undefined) out.note = spec.note;
  return out;
}

/** Rounds for display: 3 significant digits, no exponent. */
export function fmt(x: number | null): string {
  if (x === null) return "—";
  if (x === 0) return "0";
  const digits = Math.max(0, 2 - Math.floor(Math.log10(Math.abs(x))));
  return x.toFixed(Math.min(digits, 3));
}
