/*T:221 A machine owns everything it builds, and a failed create() gives
 * it all back. These tests need no /dev/kvm: create() is pointed at one
 * that does not exist, so it fails after checking the kernel and spawning
 * the vCPU's Worker, with devices of every kind already handed over. Each
 * run is a separate process (T:222) that does not call Deno.exit, so a
 * device thread or a Worker left behind would keep it alive; it must end
 * within 2 s of its last line, and the descriptors it holds after a failed
 * create() must point at what they pointed at before (compared on the
 * second round, after Deno's once-per-process set-up). The launcher is
 * held to the same, and a file that is not a kernel must be refused before
 * /dev/kvm is even opened (strace watches every openat). :*/

import assert from "node:assert/strict";
import { buildTestGuest } from "./guest/build.ts";
import { fdTargets } from "./helpers/fd_census.ts";
import { runLauncher } from "./helpers/launcher.ts";
import { NetNs, netnsProblem } from "./virtio/net/netns.ts";

const HELPER = new URL("./helpers/failed_create.ts", import.meta.url).pathname;
const CLI = new URL("../cli.ts", import.meta.url).pathname;
const EXIT_WITHIN_MS = 2000;

interface HelperRun {
  code: number;
  lines: Map<string, string>;
  /** Milliseconds from the helper's last line to its exit, as seen from here. */
  lingerMs: number;
  stdout: string;
  stderr: string;
}

async function runHelper(kinds: string[], wrap: string[] = []): Promise<HelperRun> {
  const guest = await buildTestGuest();
  const dir = await Deno.makeTempDir();
  const disk = `${dir}/disk.img`;
  await Deno.writeFile(disk, new Uint8Array(1024 * 1024));
  try {
    const argv = [...wrap, Deno.execPath(), "run", "-A", HELPER, guest, disk, ...kinds];
    const child = new Deno.Command(argv[0]!, { args: argv.slice(1), stdin: "null", stdout: "piped", stderr: "piped" })
      .spawn();
    const killer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    const out = await child.output();
    const exitedAt = Date.now();
    clearTimeout(killer);
    const stdout = new TextDecoder().decode(out.stdout);
    const lines = new Map<string, string>();
    for (const line of stdout.split("\n")) {
      const m = /^(ROUND \d \w+|DONE-AT) (.*)$/.exec(line);
      if (m) lines.set(m[1]!, m[2]!);
    }
    const done = Number(lines.get("DONE-AT") ?? NaN);
    return {
      code: out.code,
      lines,
      lingerMs: exitedAt - done,
      stdout,
      stderr: new TextDecoder().decode(out.stderr),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function assertReleased(r: HelperRun, what: string): void {
  const context = `${what}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
  assert.equal(r.code, 0, context);
  for (const round of [1, 2]) {
    assert.match(r.lines.get(`ROUND ${round} ERROR`) ?? "", /\/nonexistent\/kvm does not exist/, context);
  }
  assert.ok(r.lingerMs < EXIT_WITHIN_MS, `${what}: the process lived ${r.lingerMs} ms after create() failed`);
  const after1 = r.lines.get("ROUND 1 AFTER") ?? "";
  assert.doesNotMatch(after1, /disk\.img|\/dev\/net\/tun|kvm/, `${what}: a device or KVM descriptor outlived create()`);
  assert.equal(
    fdTargets(r.lines.get("ROUND 2 AFTER") ?? ""),
    fdTargets(r.lines.get("ROUND 2 BEFORE") ?? ""),
    `${what}: descriptors before and after a failed create() differ`,
  );
}

for (
  const kinds of [["block"], ["console"], ["rng"], ["block", "block", "console", "rng"], ["script-console", "block"]]
) {
  Deno.test(`failed create with ${kinds.join(", ")}: everything released, the process ends by itself`, async () => {
    assertReleased(await runHelper(kinds), kinds.join(", "));
  });
}

const netProblem = await netnsProblem();
Deno.test({
  name: `failed create with a tap (net): everything released, the process ends by itself${
    netProblem ? ` (skipped: ${netProblem})` : ""
  }`,
  ignore: netProblem !== undefined,
  async fn() {
    await NetNs.use(async (ns) => {
      const r = await runHelper(["net", "block", "rng"], ["ip", "netns", "exec", ns.name]);
      assertReleased(r, "net, block, rng");
      // The tap went with the device: nothing but lo is left in the namespace.
      assert.doesNotMatch(await ns.ip("-o", "link", "show"), /tap/);
    });
  },
});

Deno.test("cli: a failed create() with disks and an entropy device exits 1 promptly, one line", async () => {
  const guest = await buildTestGuest();
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/disk.img`, new Uint8Array(1024 * 1024));
    const t0 = performance.now();
    const r = await runLauncher(
      [`--block=${dir}/disk.img`, `--block=${dir}/disk.img,ro`, "--rng", "64", guest],
      { env: { LGUEST_KVM: "/nonexistent/kvm" }, timeoutMs: 20_000 },
    );
    const ms = performance.now() - t0;
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^lguest: \/nonexistent\/kvm does not exist[^\n]*\n$/);
    assert.ok(ms < 10_000, `the launcher took ${ms} ms to give up`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli: --block=<directory> is refused with one line", async () => {
  const guest = await buildTestGuest();
  const dir = await Deno.makeTempDir();
  try {
    const r = await runLauncher([`--block=${dir}`, "64", guest], { timeoutMs: 20_000 });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^lguest: block device file '.*' is not a regular file\n$/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** The paths the launcher opened (strace -f -e trace=openat), its status and stderr. */
async function openedPaths(args: string[], env: Record<string, string>): Promise<{ code: number; trace: string }> {
  const trace = await Deno.makeTempFile();
  try {
    const out = await new Deno.Command("strace", {
      args: ["-f", "-qq", "-e", "trace=openat", "-o", trace, Deno.execPath(), "run", "-A", CLI, ...args],
      env,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).output();
    return { code: out.code, trace: await Deno.readTextFile(trace) };
  } finally {
    await Deno.remove(trace);
  }
}

const haveStrace = await new Deno.Command("strace", { args: ["-V"], stdout: "null", stderr: "null" }).output()
  .then((o) => o.success, () => false);

Deno.test({
  name: `cli: a file that is not a kernel is refused before /dev/kvm is opened${haveStrace ? "" : " (no strace)"}`,
  ignore: !haveStrace,
  async fn() {
    const guest = await buildTestGuest();
    const dir = await Deno.makeTempDir();
    try {
      const text = `${dir}/notes.txt`;
      await Deno.writeTextFile(text, "this is not a kernel\n".repeat(100));
      const marker = `${dir}/kvm-marker`;
      const bad = await openedPaths(["64", text], { LGUEST_KVM: marker });
      assert.equal(bad.code, 1);
      assert.ok(!bad.trace.includes(marker), "the KVM device was opened for a file that is not a kernel");
      assert.ok(bad.trace.includes("notes.txt"), "the kernel file was read");
      // The control: with a real kernel the same marker path is tried (and fails), so the trace would show it.
      const good = await openedPaths(["64", guest], { LGUEST_KVM: marker });
      assert.equal(good.code, 1);
      assert.ok(good.trace.includes(marker), "strace did not see the KVM device being opened");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
