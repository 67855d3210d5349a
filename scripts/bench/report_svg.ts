/*T:785 The chart: one bar per figure that has a ratio, lguest's value as a
 * multiple of its peer's, with the 1.0 line (as fast as the peer) drawn
 * across. Bars are green where the target is met (or, with no target,
 * where lguest is no worse than its peer) and orange otherwise. Plain SVG,
 * written by hand, no library. :*/

import { fmt } from "./stats.ts";
import type { Results } from "./report_md.ts";

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/** Renders the ratio chart. */
export function renderSvg(r: Results): string {
  const rows = r.sections.flatMap((s) => s.figures.filter((f) => f.ratio !== null).map((f) => ({ s, f })));
  const labelW = 380;
  const barW = 320;
  const rowH = 24;
  const top = 40;
  const width = labelW + barW + 70;
  const height = top + rows.length * rowH + 40;
  const max = Math.max(2, ...rows.map(({ f }) => Math.min(f.ratio!, 10)));
  const x = (v: number) => labelW + (Math.min(v, max) / max) * barW;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="10" y="20" font-size="14" font-weight="bold">lguest ÷ peer (1.0 = parity; times and sizes: lower is better; MiB/s: higher is better)</text>`,
    `<text x="10" y="34" fill="#555">${
      esc(`${r.machine.cpu}, KVM ${r.machine.kvm}, commit ${r.machine.commit}`)
    }</text>`,
  ];
  rows.forEach(({ s, f }, i) => {
    const y = top + i * rowH;
    const good = f.target?.met ?? (f.better === "lower" ? f.ratio! <= 1 : f.ratio! >= 1);
    parts.push(
      `<text x="${labelW - 8}" y="${y + 16}" text-anchor="end">${esc(`${s.title.split(" ")[0]} ${f.label}`)}</text>`,
      `<rect x="${labelW}" y="${y + 4}" width="${(x(f.ratio!) - labelW).toFixed(1)}" height="${rowH - 8}" ` +
        `fill="${good ? "#4caf50" : "#ff9800"}"/>`,
      `<text x="${(x(f.ratio!) + 4).toFixed(1)}" y="${y + 16}">${fmt(f.ratio)}×</text>`,
    );
  });
  const one = x(1).toFixed(1);
  parts.push(
    `<line x1="${one}" y1="${top - 2}" x2="${one}" y2="${
      top + rows.length * rowH + 2
    }" stroke="#000" stroke-dasharray="4 3"/>`,
    `<text x="${one}" y="${top + rows.length * rowH + 16}" text-anchor="middle">1.0 = peer</text>`,
    `</svg>`,
  );
  return parts.join("\n") + "\n";
}
