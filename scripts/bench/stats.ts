/*T:705 Medians, not means: one sample taken while another helper's test
 * suite hogs both cores is an outlier the median shrugs off. The ratio is
 * taken pair by pair (lguest and its peer run back to back, alternating who
 * goes first) and then the median of those ratios is reported, so slow
 * drift over the run cancels out. :*/

import type { Figure, FigureContext, Target } from "./types.ts";

/** Median of `xs` (null when empty). */
export function median(xs: readonly number[]): number | null {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return null;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Median of the element-wise ratios a[i]/b[i] over the pairs both have. */
export function pairedRatio(a: readonly number[], b: readonly number[]): number | null {
  const rs: number[] = [];
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (b[i]! > 0 && Number.isFinite(a[i]!)) rs.push(a[i]! / b[i]!);
  }
  return median(rs);
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
