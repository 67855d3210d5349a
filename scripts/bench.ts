/*T:790 `deno task bench`: the whole benchmark suite in one run. It installs
 * what it needs (gcc, QEMU), builds the test guest and the C peers from
 * source, notes the machine, runs each benchmark with lguest and its peer
 * side by side, and writes bench/results.json, bench/results.md (the table
 * the README embeds) and bench/results.svg. Options:
 *
 *   --repeats=N    pairs per figure (default 7; the blk, net and memory
 *                  sections take at most 3, launch at least 9: the header
 *                  of results.md gives the counts each section really took)
 *   --only=a,b     run only these sections (exit, launch, blk, net, memory, linux);
 *                  the other sections of an existing results.json are kept
 *   --no-write     print the table, leave bench/ alone
 *   --render       only re-render results.md and results.svg from results.json
 *
 * A full run takes a few minutes on a two-core machine. It refuses, in one
 * line, to run where its figures would mean nothing: on a host without
 * /dev/kvm and inside the test VM. :*/

import { parseArgs } from "node:util";
import { exitBenchmark } from "./bench/exit.ts";
import { launchBenchmark } from "./bench/launch.ts";
import { blkBenchmark } from "./bench/blk.ts";
import { netBenchmark } from "./bench/net.ts";
import { memoryBenchmark } from "./bench/memory.ts";
import { linuxBenchmark } from "./bench/linux_boot.ts";
import { benchHostProblem, machineInfo } from "./bench/machine.ts";
import { prepareTools } from "./bench/tools.ts";
import { renderMarkdown, type Results } from "./bench/report_md.ts";
import { renderSvg } from "./bench/report_svg.ts";
import type { BenchContext, Benchmark, Section } from "./bench/types.ts";

const ROOT = new URL("..", import.meta.url).pathname;

/** Every benchmark, in the order. */
export const BENCHMARKS: readonly Benchmark[] = [
  exitBenchmark,
  launchBenchmark,
  blkBenchmark,
  netBenchmark,
  memoryBenchmark,
  linuxBenchmark,
];

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      repeats: { type: "string" },
      only: { type: "string" },
      "no-write": { type: "boolean" },
      render: { type: "boolean" },
    },
  });
  if (values.render) {
    await writeResults(JSON.parse(await Deno.readTextFile(`${ROOT}bench/results.json`)) as Results);
    return 0;
  }
  const repeats = Number(values.repeats ?? 7);
  if (!Number.isInteger(repeats) || repeats < 1) throw new Error(`--repeats must be a positive integer`);
  const only = values.only?.split(",").filter((s) => s.length > 0);
  const unknown = only?.filter((id) => !BENCHMARKS.some((b) => b.id === id)) ?? [];
  if (unknown.length > 0) throw new Error(`unknown benchmark ${unknown.join(", ")}`);

  const log = (line: string) => console.error(`bench: ${line}`);
  const problem = benchHostProblem();
  if (problem !== undefined) {
    log(problem);
    return 1;
  }
  const started = performance.now();
  log("preparing tools");
  const tools = await prepareTools(ROOT);
  const machine = await machineInfo(ROOT, tools.qemu);
  log(`${machine.cpu}, KVM ${machine.kvm}, commit ${machine.commit}, load ${machine.loadAverage}`);
  const ctx: BenchContext = { root: ROOT, machine, tools, repeats, log };

  const sections: Section[] = [];
  for (const b of BENCHMARKS) {
    if (only && !only.includes(b.id)) continue;
    const t0 = performance.now();
    try {
      sections.push(await b.run(ctx));
    } catch (e) {
      const reason = e instanceof Error ? e.message : String(e);
      sections.push({ id: b.id, title: b.title, status: "failed", reason, figures: [], analysis: [] });
    }
    // With --only, sections of different runs share one results.json.
    sections.at(-1)!.measuredAt = new Date().toISOString();
    log(`${b.id}: ${sections.at(-1)!.status} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  const results: Results = {
    generatedAt: new Date().toISOString(),
    durationS: Math.round((performance.now() - started) / 100) / 10,
    repeats,
    machine,
    sections: only ? await mergeSections(sections) : sections,
  };
  console.log(renderMarkdown(results));
  if (!values["no-write"]) {
    await writeResults(results);
    log(`wrote bench/results.json, bench/results.md, bench/results.svg (${results.durationS} s)`);
  }
  return sections.some((s) => s.status === "failed") ? 1 : 0;
}

/**
 * With --only, the sections just measured replace their namesakes in the
 * existing results.json and the others are kept (each figure still names
 * the commit it was measured at).
 */
async function mergeSections(fresh: Section[]): Promise<Section[]> {
  let old: Section[] = [];
  try {
    old = (JSON.parse(await Deno.readTextFile(`${ROOT}bench/results.json`)) as Results).sections;
  } catch {
    return fresh;
  }
  return BENCHMARKS.map((b) => fresh.find((s) => s.id === b.id) ?? old.find((s) => s.id === b.id))
    .filter((s): s is Section => s !== undefined);
}

/** Writes results.json and renders results.md and results.svg from it. */
async function writeResults(results: Results): Promise<void> {
  await Deno.mkdir(`${ROOT}bench`, { recursive: true });
  await Deno.writeTextFile(`${ROOT}bench/results.json`, JSON.stringify(results, null, 2) + "\n");
  await Deno.writeTextFile(`${ROOT}bench/results.md`, renderMarkdown(results));
  await Deno.writeTextFile(`${ROOT}bench/results.svg`, renderSvg(results));
  await embedInReadme(renderMarkdown(results));
  // The repository's `deno fmt --check` covers these files too.
  const files = [...["md", "svg", "json"].map((x) => `${ROOT}bench/results.${x}`), `${ROOT}README.md`];
  await new Deno.Command(Deno.execPath(), { args: ["fmt", "-q", ...files], stdout: "null", stderr: "inherit" })
    .output();
}

const README_START = "<!-- bench:start";
const README_END = "<!-- bench:end -->";

/**
 * The README shows the latest table: everything of results.md before its
 * "What the run found" notes replaces what stands between the README's
 * bench markers, so the two can never disagree.
 */
async function embedInReadme(markdown: string): Promise<void> {
  const path = `${ROOT}README.md`;
  const readme = await Deno.readTextFile(path);
  const start = readme.indexOf(README_START);
  const end = readme.indexOf(README_END);
  if (start < 0 || end < start) return;
  const open = readme.indexOf("\n", start) + 1;
  const cut = markdown.indexOf("What the run found");
  const table = (cut < 0 ? markdown : markdown.slice(0, cut)).trimEnd();
  await Deno.writeTextFile(path, readme.slice(0, open) + table + "\n\n" + readme.slice(end));
}

if (import.meta.main) Deno.exit(await main(Deno.args));
