/*T:010 `deno task test` is the one command that proves the project on a
 * fresh machine: it installs the system packages the tests need (gcc for the
 * test guest and the layout probe; the kernel build tools for the Linux
 * test), runs the static checks (fmt, lint, types, doc lint), then every test
 * file, and ends with one plain "N passed, N failed, N skipped" line that CI
 * reads. Tests that cannot run on this host say why and count as skipped. :*/

import { ensurePackages } from "./packages.ts";

const ROOT = new URL("..", import.meta.url).pathname;

async function run(cmd: string, args: string[], env: Record<string, string> = {}): Promise<boolean> {
  const p = new Deno.Command(cmd, { args, cwd: ROOT, env, stdin: "null", stdout: "inherit", stderr: "inherit" });
  return (await p.output()).success;
}

await ensurePackages([
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
]);

const deno = Deno.execPath();
console.log("== static checks (deno task check)");
const checked = await run(deno, ["task", "check"]);

const junit = await Deno.makeTempFile({ suffix: ".xml" });
console.log("== tests");
const filter = Deno.args;
await run(deno, ["test", "-A", "--junit-path=" + junit, ...(filter.length ? filter : ["tests/"])]);
const xml = await Deno.readTextFile(junit).catch(() => "");
await Deno.remove(junit).catch(() => {});

const top = /<testsuites[^>]*>/.exec(xml)?.[0] ?? "";
const total = Number(/tests="(\d+)"/.exec(top)?.[1] ?? 0);
const failed = Number(/failures="(\d+)"/.exec(top)?.[1] ?? 0) + Number(/errors="(\d+)"/.exec(top)?.[1] ?? 0);
const skipped = xml.match(/<skipped/g)?.length ?? 0;
const passed = Math.max(0, total - failed - skipped);
const checkFailed = checked ? 0 : 1;
console.log(`\nstatic checks: ${checked ? "clean" : "FAILED (see above)"}`);
console.log(`tests: ${passed} passed, ${failed + checkFailed} failed, ${skipped} skipped`);
Deno.exit(failed + checkFailed === 0 && total > 0 ? 0 : 1);
