/*T:796 The benchmarks never report emulated timings: inside the test VM
 * (which the runner marks in the environment and on the VM kernel's command
 * line) `deno task bench` refuses in one line and measures nothing. What
 * needs no KVM is checked here on the host: the medians, ratios and spreads
 * of fixed samples, the smaps parsing, and the report rendered from a small
 * results object: every cell shows its median, min, max and n, the exit
 * figure shows the ns the launcher adds per exit, and the header's sample
 * counts are the ones in the data. Results written before spreads were
 * recorded still render, with spreads computed from their stored samples,
 * or "n/a" where they have none. :*/

import assert from "node:assert/strict";
import { addedPerExit, figure, median, pairedRatio, spreadOf } from "../scripts/bench/stats.ts";
import { parseSmaps, splitRss } from "../scripts/bench/memory.ts";
import { cyclesPerExit } from "../scripts/bench/exit.ts";
import { renderMarkdown, type Results } from "../scripts/bench/report_md.ts";
import { renderSvg } from "../scripts/bench/report_svg.ts";
import { buildPeer } from "../scripts/bench/tools.ts";
import { runToEnd } from "../scripts/bench/run.ts";

const ROOT = new URL("..", import.meta.url).pathname;

Deno.test("bench: refuses to measure inside the test VM, in one line, writing nothing", async () => {
  const before = await Deno.stat(`${ROOT}bench/results.json`);
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}scripts/bench.ts`, "--only=exit"],
    env: { LGUEST_TEST_VM: "tcg" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr).trim();
  assert.equal(out.code, 1);
  assert.equal(stderr.split("\n").length, 1, stderr);
  assert.match(stderr, /^bench: refusing to measure inside the test VM: .*timings mean nothing/);
  assert.equal((await Deno.stat(`${ROOT}bench/results.json`)).mtime?.getTime(), before.mtime?.getTime());
});

Deno.test("bench: medians, paired ratios and spreads", () => {
  assert.equal(median([]), null);
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.equal(median([1, NaN, 3]), 2, "non-numbers are dropped");
  assert.equal(pairedRatio([2, 4, 9], [1, 2, 3]), 2, "median of 2, 2, 3");
  assert.equal(pairedRatio([1, 2], [0, 0]), null, "no usable pair");
  assert.deepEqual(spreadOf([5, NaN, 1, 3], "ms"), { samples: 3, min: 1, median: 3, max: 5, unit: "ms" });
  assert.equal(spreadOf([], "ms"), null);
  assert.equal(cyclesPerExit("BENCH-PIO: 0 5 cpl 3\n"), undefined);
  assert.equal(cyclesPerExit("x\nBENCH-PIO: 4 100 cpl 0\n"), 25);
});

Deno.test("bench: smaps parsing separates guest RAM from the launcher's own pages", () => {
  const smaps = [
    "55d0c0000000-55d0c0100000 r-xp 00000000 08:01 123 /usr/bin/deno",
    "Size:               1024 kB",
    "Rss:                 800 kB",
    "7f0000000000-7f0008000000 rw-p 00000000 00:00 0 ",
    "Size:             131072 kB",
    "Rss:                 300 kB",
    "7f1000000000-7f1010000000 rw-p 00000000 00:00 0",
    "Size:             262144 kB",
    "Rss:                  50 kB",
    "7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]",
    "Size:                132 kB",
    "Rss:                  12 kB",
  ].join("\n");
  const maps = parseSmaps(smaps);
  assert.equal(maps.length, 4);
  assert.deepEqual(maps.map((m) => m.anonymous), [false, true, true, false]);
  assert.deepEqual(splitRss(maps, 131072), { totalKiB: 1162, guestKiB: 300 }, "the smallest anonymous fit");
  assert.equal(splitRss(maps, 1 << 20), undefined, "no mapping that large");
});

Deno.test("bench: the host disk peer starts its threads, then its clock, and finishes every request", async () => {
  const peer = await buildPeer(ROOT, "blk_host");
  const disk = await Deno.makeTempFile({ prefix: "lguest-bench-host-" });
  try {
    await Deno.writeFile(disk, new Uint8Array(1024 * 1024).fill(0x5a));
    for (const [qd, op] of [["1", "w"], ["32", "r"]] as const) {
      const r = await runToEnd([peer, disk, "64", "16", qd, op, "rand", "cache"], 30_000);
      assert.equal(r.timedOut, false, `qd ${qd}: every thread passed both gates`);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^BENCH-BLK-HOST: 64 [1-9]\d* 0$/m, `qd ${qd}: 64 requests, none failed`);
    }
  } finally {
    await Deno.remove(disk);
  }
});

/** A run of two sections: 3 exit pairs and 2 disk pairs, though 7 were asked for. */
function sampleResults(): Results {
  const context = { cpu: "Test CPU", kvm: "pvm", commit: "abc", peer: "C peer" };
  const exit = figure({
    id: "exit.ring3",
    label: "ring 3",
    unit: "µs/exit",
    lguest: [11, 12, 13],
    peer: [10, 10.5, 10],
    context,
    target: ({ ratio }) => ({ text: "ratio ≤ 1.10", met: ratio !== null && ratio <= 1.1 }),
  });
  exit.added = addedPerExit(exit);
  const blk = figure({
    id: "blk.4k",
    label: "4 KiB reads",
    unit: "MiB/s",
    better: "higher",
    lguest: [100, 200],
    peer: [400, 300],
    context,
  });
  return {
    generatedAt: "2026-01-02T03:04:05.000Z",
    durationS: 1,
    repeats: 7,
    machine: {
      cpu: "Test CPU",
      cpus: 2,
      kvm: "pvm",
      hostKernel: "6.1",
      commit: "abc",
      deno: "2.9.6",
      qemu: "QEMU 7.2",
      gcc: "gcc 12",
      loadAverage: 0.5,
    },
    sections: [
      { id: "exit", title: "1. Exit", status: "measured", analysis: ["found something"], figures: [exit] },
      { id: "launch", title: "2. Launch", status: "not-measured", reason: "no QEMU", figures: [], analysis: [] },
      { id: "blk", title: "3. blk", status: "measured", analysis: [], figures: [blk] },
    ],
  };
}

const EXIT_ROW =
  /^\| ring 3 \| µs\/exit \| 12\.0 \(11\.0–13\.0, n=3\) \| 10\.0 \(10\.0–10\.5, n=3\) \| 1\.14 \(1\.10–1\.30, n=3\) \| ratio ≤ 1\.10 \| \*\*no\*\* \|$/m;
const ADDED_ROW =
  /^\| ↳ ns added per exit by the launcher over the C loop \| ns\/exit \| 2000 \(per pair 1000–3000, n=3\) \| \| \| ≤ 300 ns added per exit \| \*\*no\*\* \|$/m;
const BLK_ROW =
  /^\| 4 KiB reads \| MiB\/s \| 150 \(100–200, n=2\) \| 350 \(300–400, n=2\) \| 0\.458 \(0\.250–0\.667, n=2\) \|\s+\|\s+\|$/m;

Deno.test("bench: results.json records each figure's samples, spread and the ns added per exit", () => {
  const stored = JSON.parse(JSON.stringify(sampleResults())) as Results;
  const exit = stored.sections[0]!.figures[0]!;
  assert.deepEqual(exit.spread?.lguest, { samples: 3, min: 11, median: 12, max: 13, unit: "µs/exit" });
  assert.deepEqual(exit.spread?.peer, { samples: 3, min: 10, median: 10, max: 10.5, unit: "µs/exit" });
  assert.equal(exit.spread?.ratio?.samples, 3);
  assert.equal(exit.added?.value, 2000, "lguest's median minus the C loop's, in ns");
  assert.deepEqual(exit.added?.pairs, { samples: 3, min: 1000, median: 1500, max: 3000, unit: "ns/exit" });
  assert.deepEqual(exit.added?.target, { text: "≤ 300 ns added per exit", met: false });
});

Deno.test("bench: the Markdown shows n, min, median and max of every figure, and the header counts from the data", () => {
  const md = renderMarkdown(JSON.parse(JSON.stringify(sampleResults())) as Results);
  assert.match(md, EXIT_ROW);
  assert.match(md, ADDED_ROW);
  assert.match(md, BLK_ROW);
  const header = md.slice(0, md.indexOf("\n\n"));
  assert.match(header, /Samples per side: \(1\) 3, \(3\) 2 \(`--repeats=7` asked for\)\./);
  assert.match(header, /The ns added per exit is lguest's median minus the C loop's/);
  assert.doesNotMatch(header, /7\+ runs|did not record|n\/a/);
  assert.match(md, /^\| not measured \(see below\) \|/m);
  assert.match(md, /^- \(2\) not measured: no QEMU$/m);
  assert.match(md, /^- \(1\) found something$/m);
  assert.match(md, /Test CPU \(2 CPUs\), KVM \*\*pvm\*\*/);
  const svg = renderSvg(sampleResults());
  assert.match(svg, /^<svg /);
  assert.match(svg, />1\.14×</);
  assert.equal((svg.match(/<rect /g) ?? []).length, 3, "background and two bars");
});

Deno.test("bench: results stored before spreads were recorded still render, from their samples or as n/a", () => {
  const old = sampleResults();
  for (const s of old.sections) {
    for (const f of s.figures) {
      delete f.spread;
      delete f.added;
    }
  }
  const md = renderMarkdown(old);
  assert.match(md, EXIT_ROW, "the spread computed from the stored samples");
  assert.match(md, ADDED_ROW, "and the ns added per exit");
  assert.match(
    md,
    /Sections \(1\), \(3\) come from the run at commit `abc` \(2026-01-02 03:04 UTC\), which did not record/,
  );
  const blk = old.sections[2]!.figures[0]!;
  delete (blk as Partial<typeof blk>).samples;
  const bare = renderMarkdown(old);
  assert.match(bare, /^\| 4 KiB reads \| MiB\/s \| 150 \(n\/a\) \| 350 \(n\/a\) \| 0\.458 \(n\/a\) \|\s+\|\s+\|$/m);
  assert.match(bare, /Samples per side: \(1\) 3 \(/, "a section with no counts is left out");
  assert.match(bare, /"n\/a": the results hold neither the spread nor the samples/);
});
