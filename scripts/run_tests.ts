/*T:010 `deno task test` is the one command that proves the project on a
 * fresh machine: it installs the system packages the tests need (gcc for the
 * test guest and the layout probe; the kernel build tools for the Linux
 * test; QEMU and Debian's kernel for the test VM), runs the static checks
 * (fmt, lint, types, doc lint), then every test file: on this host when the
 * host can give the file what it needs, in the test VM otherwise (see
 * scripts/test_plan.ts). It ends with one plain "N passed, N failed, N
 * skipped" line that CI reads, after saying where each group ran and naming
 * every skipped test. Arguments narrow the run to some files or folders. :*/

import { ensurePackages } from "./packages.ts";
import { type JunitCounts, planTests, readJunit } from "./test_plan.ts";
import { VM_PACKAGES } from "./vm/image.ts";
import { runInVm } from "./vm/run.ts";
import { kvmFlavour } from "../lib/kvm/kvm.ts";
import { buildTestGuest } from "../tests/guest/build.ts";
import { ensureLinux } from "./linux.ts";
import { ensureDebianGuest } from "./debian/guest.ts";
import { BENCH_PACKAGES, prepareTools } from "./bench/tools.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const VM_TIMEOUT_MS = 50 * 60 * 1000;

async function run(cmd: string, args: string[]): Promise<boolean> {
  const p = new Deno.Command(cmd, { args, cwd: ROOT, stdin: "null", stdout: "inherit", stderr: "inherit" });
  return (await p.output()).success;
}

/*T:012 CI keeps only the end of a long log, so a test run that dies
 * without a verdict (deno test killed by a signal, or ended before it
 * wrote its report) must explain itself there: its output passes through
 * as it comes, and the summary at the end repeats how it ended (the signal
 * by name) and its last lines. :*/

/** How a test run ended, and its last lines of output. */
interface Ended {
  ok: boolean;
  how: string;
  tail: string[];
}

const TAIL_LINES = 40;
/** deno test's colour codes (ESC [ ... m), left out of the summary's copy. */
const COLOUR = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, "g");

/** Runs `cmd`, passing its output through, and keeps its last TAIL_LINES lines. */
async function runKeepingTail(cmd: string, args: string[]): Promise<Ended> {
  const child = new Deno.Command(cmd, { args, cwd: ROOT, stdin: "null", stdout: "piped", stderr: "piped" }).spawn();
  const tail: string[] = [];
  let partial = "";
  const keep = (text: string) => {
    const lines = (partial + text).split("\n");
    partial = lines.pop()!;
    tail.push(...lines.map((l) => l.replace(COLOUR, "")));
    tail.splice(0, Math.max(0, tail.length - TAIL_LINES));
  };
  const pass = async (from: ReadableStream<Uint8Array>, to: typeof Deno.stdout) => {
    const dec = new TextDecoder();
    for await (const chunk of from) {
      await to.write(chunk);
      keep(dec.decode(chunk, { stream: true }));
    }
  };
  await Promise.all([pass(child.stdout, Deno.stdout), pass(child.stderr, Deno.stderr)]);
  const status = await child.status;
  if (partial) keep("\n");
  const how = status.signal ? `killed by ${status.signal}` : `exit status ${status.code}`;
  return { ok: status.success, how, tail };
}

const flavour = kvmFlavour();
const plan = await planTests(ROOT, flavour, Deno.args);
const onHost = plan.filter((f) => f.where === "host").map((f) => f.path);
const inVm = plan.filter((f) => f.where === "vm").map((f) => f.path);

await ensurePackages([
  "acpica-tools",
  "gcc",
  "make",
  "bison",
  "flex",
  "bc",
  "cpio",
  "libelf-dev",
  "busybox-static",
  "linux-source-6.1",
  "iproute2",
  "python3",
  "strace",
  // Debian's kernel (scripts/debian/): depmod for its modules.dep, lz4 for its payload.
  "kmod",
  "lz4",
  // --net=user's backend (lib/virtio/net/passt.ts).
  "passt",
  ...(inVm.length ? VM_PACKAGES : []),
  ...BENCH_PACKAGES,
]);

const deno = Deno.execPath();
console.log("== static checks (deno task check)");
const checked = await run(deno, ["task", "check"]);

const results = await Deno.makeTempDir({ prefix: "lguest-tests-" });
const groups: { name: string; counts: JunitCounts; problem?: string }[] = [];
const hostName = { hardware: "this host (hardware KVM)", pvm: "this host (PVM KVM)", none: "this host (no /dev/kvm)" }[
  flavour
];

if (onHost.length) {
  console.log(`== tests on ${hostName}: ${onHost.length} files`);
  const junit = `${results}/host.xml`;
  const ended = await runKeepingTail(deno, ["test", "-A", `--junit-path=${junit}`, ...onHost]);
  const report = await Deno.readTextFile(junit).catch(() => undefined);
  const counts = readJunit(report ?? "");
  const problem = !ended.ok && counts.failed === 0
    ? `deno test failed without a failing test (${ended.how}${
      report === undefined ? ", no report written" : ""
    }); its last lines:\n${ended.tail.map((l) => `    | ${l}`).join("\n")}`
    : undefined;
  groups.push({ name: hostName, counts, ...(problem ? { problem } : {}) });
}

if (inVm.length) {
  // The VM has no network and emulates every instruction: build what the
  // tests would otherwise build inside it (the test guest, the bench
  // peers, Linux) here first, where it is fast; the VM sees the same cache.
  console.log("== preparing the test VM's inputs on the host");
  await buildTestGuest();
  await prepareTools(ROOT);
  await ensureLinux({ log: (s) => console.log(`linux: ${s}`) });
  await ensureDebianGuest({ log: (s) => console.log(`debian: ${s}`) });
  console.log(`== tests in the test VM (nested KVM under QEMU TCG): ${inVm.join(" ")}`);
  const junit = `${results}/vm.xml`;
  const r = await runInVm([deno, "test", "-A", "--no-check", `--junit-path=${junit}`, ...inVm], {
    cwd: ROOT,
    shares: [ROOT, results],
    timeoutMs: VM_TIMEOUT_MS,
    log: (l) => console.log(`vm: ${l}`),
  });
  console.log(`vm: the tests took ${(r.seconds / 60).toFixed(1)} min in the VM (boot included)`);
  const counts = readJunit(await Deno.readTextFile(junit).catch(() => ""));
  const problem = r.problem ??
    (r.code !== 0 && counts.failed === 0 ? `deno test exited ${r.code} in the VM` : undefined);
  groups.push({ name: "the test VM (nested KVM under QEMU TCG)", counts, ...(problem ? { problem } : {}) });
}
await Deno.remove(results, { recursive: true }).catch(() => {});

let passed = 0, failed = checked ? 0 : 1, skipped = 0;
console.log(`\nstatic checks: ${checked ? "clean" : "FAILED (see above)"}`);
for (const g of groups) {
  const { counts } = g;
  const broken = g.problem ? 1 : 0;
  console.log(`${g.name}: ${counts.passed} passed, ${counts.failed + broken} failed, ${counts.skipped.length} skipped`);
  if (g.problem) console.log(`  ${g.problem}`);
  for (const s of counts.skipped) console.log(`  skipped: ${s}`);
  passed += counts.passed;
  failed += counts.failed + broken;
  skipped += counts.skipped.length;
}
console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
Deno.exit(failed === 0 && passed > 0 ? 0 : 1);
