// lguest-test-needs: kvm
/*T:223 stop() and close() are safe at any time, from any state, twice.
 * The table below is every state a Machine can be in (before run(), while
 * the guest runs, after run() ended, twice in a row, after a failed run(),
 * after close()) crossed with both calls, and `await using`; one loop runs
 * each row in a process of its own (T:224) that never calls Deno.exit.
 * Every row must end with the outcome it names (in the order the STEP
 * lines came), no descriptor open that was not open before the machine
 * was built, and no Worker or device thread left: the process must end by
 * itself within 2 s of its last line, and nothing may crash (stop() after
 * close() used to write into an unmapped kvm_run page). :*/

import assert from "node:assert/strict";
import { buildTestGuest } from "./guest/build.ts";
import { HAVE_KVM } from "./helpers/launcher.ts";
import { type ProbeRun, runProbe } from "./helpers/probe_run.ts";
import { leftOpen } from "./helpers/fd_census.ts";

if (!HAVE_KVM) console.log("machine_lifecycle_test: /dev/kvm cannot be opened here; skipping");

const PROBE = new URL("./helpers/lifecycle_probe.ts", import.meta.url).pathname;
const BOOT_MS = 120_000;
const EXIT_WITHIN_MS = 2000;
const STOPPED = String.raw`run ended \{"end":"stopped","clean":true,"reason":"stopped"[^\n]*`;
const REFUSED = "run failed: machine already ran or was closed";

interface Row {
  state: string;
  call: "stop" | "close" | "dispose";
  /** The guest must boot before the probe goes on (the test then says "go"). */
  guest: boolean;
  /** What must happen: the probe's STEP lines, in this order, with nothing else between them. */
  steps: string[];
}

const TABLE: Row[] = [
  { state: "before-run", call: "stop", guest: true, steps: ["stop returned", STOPPED] },
  { state: "before-run", call: "close", guest: false, steps: ["close same true", "close resolved", REFUSED] },
  { state: "during-run", call: "stop", guest: true, steps: ["stop returned", STOPPED] },
  { state: "during-run", call: "close", guest: true, steps: ["close same true", STOPPED, "close resolved"] },
  { state: "after-run", call: "stop", guest: true, steps: [STOPPED, "stop returned"] },
  { state: "after-run", call: "close", guest: true, steps: [STOPPED, "close same true", "close resolved"] },
  { state: "twice", call: "stop", guest: true, steps: ["stop returned", "stop returned", STOPPED] },
  {
    state: "twice",
    call: "close",
    guest: true,
    steps: ["close same true", "close same true", STOPPED, "close resolved", "close resolved"],
  },
  { state: "after-failed-run", call: "stop", guest: false, steps: ["run failed: [^\n]*", "stop returned"] },
  {
    state: "after-failed-run",
    call: "close",
    guest: false,
    steps: ["run failed: [^\n]*", "close same true", "close resolved"],
  },
  { state: "after-close", call: "stop", guest: true, steps: [STOPPED, "closed", "stop returned"] },
  {
    state: "after-close",
    call: "close",
    guest: true,
    steps: [STOPPED, "closed", "close same true", "close resolved"],
  },
  { state: "await-using", call: "dispose", guest: true, steps: [STOPPED, "disposed"] },
];

async function probe(row: Row): Promise<ProbeRun> {
  const guest = await buildTestGuest();
  const dir = await Deno.makeTempDir();
  await Deno.writeFile(`${dir}/disk.img`, new Uint8Array(1024 * 1024));
  try {
    return await runProbe([PROBE, row.state, row.call, guest, `${dir}/disk.img`], row.guest, BOOT_MS);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

for (const row of TABLE) {
  Deno.test({
    name: `machine lifecycle: ${row.call}() ${row.state}`,
    ignore: !HAVE_KVM,
    async fn() {
      const r = await probe(row);
      const context = `${row.state} × ${row.call}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
      assert.equal(r.code, 0, context);
      assert.equal(r.signal, null, context);
      const steps = r.stdout.split("\n").filter((l) => l.startsWith("STEP ")).map((l) => l.slice(5));
      assert.equal(steps.length, row.steps.length, `steps ${JSON.stringify(steps)}\n${context}`);
      row.steps.forEach((want, i) => assert.match(steps[i]!, new RegExp(`^${want}$`), context));
      const field = (key: string) => new RegExp(`^${key} (.*)$`, "m").exec(r.stdout)?.[1] ?? "";
      const left = leftOpen(field("FDS-BEFORE"), field("FDS-AFTER"));
      assert.deepEqual(left, [], `left open after close(): ${left.join(" ")}\n${context}`);
      assert.ok(r.lingerMs < EXIT_WITHIN_MS, `the process lived ${r.lingerMs} ms after its last line\n${context}`);
      assert.doesNotMatch(r.stderr, /did not stop|error/i, context);
    },
  });
}
