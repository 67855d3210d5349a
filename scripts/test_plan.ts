/*T:011 Where each test file runs. A test file that boots guests says what
 * it needs on its first line: `// lguest-test-needs: kvm` (a /dev/kvm of
 * any kind: the project's own test guest runs at full speed in ring 3 even
 * on PVM) or `// lguest-test-needs: guest-kernel` (guest ring 0 at speed,
 * that is, a real Linux reaching userspace, which PVM cannot give). The
 * plan puts each file on this host when the host can give it what it
 * needs, and in the test VM otherwise, so nothing is skipped for want of
 * KVM on any host. :*/

/** What a test file needs from KVM. */
export type Need = "none" | "kvm" | "guest-kernel";
/** The host's KVM, as `kvmFlavour()` reports it. */
export type Flavour = "hardware" | "pvm" | "none";

/** One test file and where it runs. */
export interface PlannedFile {
  path: string;
  need: Need;
  where: "host" | "vm";
}

const MARKER = /^\/\/ lguest-test-needs: (kvm|guest-kernel)\s*$/;

/** The need a test file declares on its first line. */
export function needOf(source: string): Need {
  const first = source.slice(0, source.indexOf("\n") >>> 0);
  const m = MARKER.exec(first);
  return m ? m[1] as Need : "none";
}

/** Whether a host of this flavour can run a file with this need natively. */
export function runsOnHost(need: Need, flavour: Flavour): boolean {
  if (need === "none") return true;
  if (need === "kvm") return flavour !== "none";
  return flavour === "hardware";
}

async function* testFiles(dir: string): AsyncGenerator<string> {
  const entries = [];
  for await (const e of Deno.readDir(dir)) entries.push(e);
  entries.sort((a, b) => a.name.localeCompare(b.name));
  for (const e of entries) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory) yield* testFiles(path);
    else if (/_test\.ts$/.test(e.name)) yield path;
  }
}

/**
 * Every test file under `root/tests` (or only those under the given
 * paths), with where it runs on a host of `flavour`.
 */
export async function planTests(root: string, flavour: Flavour, only: readonly string[] = []): Promise<PlannedFile[]> {
  const wanted = only.map((p) => p.replace(/^\.\//, "").replace(/\/$/, ""));
  const plan: PlannedFile[] = [];
  for await (const abs of testFiles(`${root}tests`)) {
    const path = abs.slice(root.length);
    if (wanted.length && !wanted.some((w) => path === w || path.startsWith(`${w}/`))) continue;
    const need = needOf(await Deno.readTextFile(abs));
    plan.push({ path, need, where: runsOnHost(need, flavour) ? "host" : "vm" });
  }
  return plan;
}

/** Counts from a `deno test --junit-path` report. */
export interface JunitCounts {
  passed: number;
  failed: number;
  skipped: string[];
}

/** Reads the totals and the names of skipped tests from a JUnit report. */
export function readJunit(xml: string): JunitCounts {
  const top = /<testsuites[^>]*>/.exec(xml)?.[0] ?? "";
  const total = Number(/tests="(\d+)"/.exec(top)?.[1] ?? 0);
  const failed = Number(/failures="(\d+)"/.exec(top)?.[1] ?? 0) + Number(/errors="(\d+)"/.exec(top)?.[1] ?? 0);
  const skipped: string[] = [];
  for (const m of xml.matchAll(/<testcase name="([^"]*)"[^>]*>\s*<skipped/g)) {
    skipped.push(m[1]!.replaceAll("&quot;", '"').replaceAll("&amp;", "&").replaceAll("&lt;", "<"));
  }
  return { passed: Math.max(0, total - failed - skipped.length), failed, skipped };
}
