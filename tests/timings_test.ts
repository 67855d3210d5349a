/*T:810 --timings' bookkeeping, on the host: the process's start read from
 * /proc/self/stat (the command name may hold spaces and parentheses), the
 * clock every thread marks on, marks made once however many threads race
 * for them, a Worker's marks seen by the main thread on the same clock, a
 * bound on the boot-timer writes kept, and the table printed at exit: in
 * the order things happened, phases never reached last, dropped writes
 * counted. Never an absolute duration: only orders and differences. :*/

import assert from "node:assert/strict";
import {
  BOOT_TIMER_KEPT,
  bootClockMs,
  bootTimerLine,
  BootTimings,
  formatTimings,
  parseBootTimerLines,
  PHASES,
  processStartMs,
  TIMINGS_HEADING,
  type TimingsReport,
} from "../lib/timings.ts";

Deno.test("timings: the start time is field 22 of /proc/<pid>/stat, after the last ')'", () => {
  const fields = Array.from({ length: 30 }, (_, i) => String(i + 3)); // fields 3.. hold their own numbers
  fields[19] = "12345"; // field 22: starttime, in 1/100 s
  assert.equal(processStartMs(`77 (a) (b c) ${fields.join(" ")}`), 123450);
  assert.throws(() => processStartMs("77 (deno) S 1"), /no start time/);
});

Deno.test("timings: this process started before its runtime did, on the clock marks are read from", () => {
  const start = processStartMs();
  const now = bootClockMs();
  // performance.now() counts from the main isolate's origin, which comes after the process's start.
  assert.ok(now - start >= performance.now(), `start ${start} now ${now} isolate age ${performance.now()}`);
  const later = bootClockMs();
  assert.ok(later >= now, "the clock does not go back");
});

Deno.test("timings: a phase is marked once; the report is in ms since the start", () => {
  const t = BootTimings.start(1000);
  assert.equal(t.originMs, 1000);
  assert.equal(t.marked("VM built"), false);
  assert.equal(t.mark("VM built", 1040.5), true);
  assert.equal(t.mark("VM built", 2000), false, "a second mark does not move the first");
  assert.equal(t.marked("VM built"), true);
  const r = t.report();
  assert.deepEqual(r.phases.map((p) => p.phase), [...PHASES]);
  assert.equal(r.phases.find((p) => p.phase === "VM built")?.ms, 40.5);
  assert.equal(r.phases.filter((p) => p.ms !== null).length, 1);
  assert.throws(() => BootTimings.attach(new SharedArrayBuffer(64)), RangeError);
});

Deno.test("timings: the first BOOT_TIMER_KEPT boot-timer writes are kept, the rest only counted", () => {
  const t = BootTimings.start(0);
  for (let i = 0; i < 100; i++) assert.equal(t.bootTimer(i & 0xff, 10 + i), i < BOOT_TIMER_KEPT);
  const r = t.report();
  assert.equal(r.bootTimerWrites, 100);
  assert.equal(r.bootTimer.length, BOOT_TIMER_KEPT);
  assert.deepEqual(r.bootTimer[3], { ms: 13, value: 3 });
});

Deno.test("timings: a Worker's marks reach the main thread, once, on the same clock", async () => {
  const t = BootTimings.start();
  const before = bootClockMs() - t.originMs;
  const worker = new Worker(new URL("./helpers/timings_worker.ts", import.meta.url).href, { type: "module" });
  try {
    const answer = await new Promise<{ entered: boolean; again: boolean; kept: boolean }>((resolve, reject) => {
      worker.onmessage = (ev) => resolve(ev.data);
      worker.onerror = (ev) => reject(new Error(ev.message));
      worker.postMessage(t.shared);
    });
    const after = bootClockMs() - t.originMs;
    assert.deepEqual(answer, { entered: true, again: false, kept: true });
    assert.equal(t.mark("kernel entered"), false, "the Worker's mark holds on this thread too");
    const r = t.report();
    const entered = r.phases.find((p) => p.phase === "kernel entered")?.ms ?? NaN;
    assert.ok(before <= entered && entered <= after, `${before} <= ${entered} <= ${after}`);
    assert.equal(r.bootTimer.length, 1);
    assert.equal(r.bootTimer[0]!.value, 42);
    assert.ok(entered <= r.bootTimer[0]!.ms && r.bootTimer[0]!.ms <= after);
  } finally {
    worker.terminate();
  }
});

Deno.test("timings: the table is in time order, unreached phases and dropped writes last", () => {
  const report: TimingsReport = {
    phases: PHASES.map((phase, i) => ({
      phase,
      ms: phase === "first console byte" ? null : [5, 60, 40, 41, 0, 300, 310][i]!,
    })),
    bootTimer: [{ ms: 200.04, value: 123 }],
    bootTimerWrites: 3,
  };
  assert.deepEqual(formatTimings(report), [
    TIMINGS_HEADING,
    "       5.0  runtime up",
    "      40.0  VM built",
    "      41.0  kernel entered",
    "      60.0  modules loaded",
    "     200.0  boot timer (value 123)",
    "     300.0  guest stopped",
    "     310.0  torn down",
    "         -  first console byte (not reached)",
    "         -  boot timer: 2 later writes not kept",
  ]);
});

Deno.test("timings: a boot-timer line parses back", () => {
  const text = `lguest: x\nlguest: ${bootTimerLine(412.46, 123)}\nlguest: ${bootTimerLine(1000, 7)}\n`;
  assert.equal(bootTimerLine(412.46, 123), "boot timer: 412.5 ms since the launcher started (value 123)");
  assert.deepEqual(parseBootTimerLines(text), [{ ms: 412.5, value: 123 }, { ms: 1000, value: 7 }]);
  assert.deepEqual(parseBootTimerLines("nothing here"), []);
});
