/*T:052 The bundle (T:051) on a host without KVM. It is built into a
 * temporary directory and run as a bare host would run it: dist/lguest
 * with a cleared environment, deno on PATH, an empty DENO_DIR and a
 * working directory without a deno.json, so anything the bundle still
 * needed from a module graph would fail to load (--no-remote, --no-npm).
 * It prints its help, refuses a bad option with one line and status 1, and
 * reads a YAML config (npm:yaml is inside). The Worker files are checked
 * at run time, not only for existence: a disk's queue thread is spawned
 * before the kernel is looked at, so a run with --block and a file that is
 * not a kernel must print the kernel error and nothing about a module not
 * found; and a small probe, bundled next to them, starts a disk's I/O
 * thread from io_thread.worker.js (the test VM has two cores, too few for
 * the launcher to start any). Last, every Worker the source spawns must go
 * through workerUrl and be in the bundle's list. :*/

import assert from "node:assert/strict";
import { bareOptions } from "./helpers/bare_env.ts";
import { bundle, bundleModule, externalImports, MAIN_BUNDLE, WORKERS } from "../scripts/bundle.ts";
import { BUNDLE_MARK, bundleName } from "../lib/worker_url.ts";

const ROOT = new URL("..", import.meta.url).pathname;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `command` as a host with only deno would: no inherited environment, an empty DENO_DIR. */
async function bare(command: string[], dir: string): Promise<Run> {
  const out = await new Deno.Command(command[0]!, {
    args: command.slice(1),
    ...(await bareOptions(dir)),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

const context = (r: Run) => `status ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;

/** The I/O-thread probe: starts BlockIo with one thread and waits for it to claim jobs. */
const IO_PROBE = `
import { BlockIo } from "${ROOT}lib/virtio/blk/io_threads.ts";
import { close, O, open } from "${ROOT}lib/sys/calls.ts";
const fd = open(Deno.args[0], O.RDWR);
const io = new BlockIo(fd, { slots: 4, maxIovecs: 4, threads: 1, name: "probe" });
const deadline = Date.now() + 20_000;
while (!io.running && io.failure === undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
console.log(io.running ? "io thread running" : \`io thread not running: \${io.failure ?? "timed out"}\`);
io.close();
close(fd);
`;

/** The Worker modules that lib/ spawns through workerUrl, and any `new Worker(` that bypasses it. */
async function spawnedWorkers(): Promise<{ viaWorkerUrl: string[]; bypass: string[] }> {
  const viaWorkerUrl: string[] = [];
  const bypass: string[] = [];
  async function walk(dir: string): Promise<void> {
    for await (const e of Deno.readDir(dir)) {
      const path = `${dir}/${e.name}`;
      if (e.isDirectory) await walk(path);
      else if (e.name.endsWith(".ts")) {
        const text = await Deno.readTextFile(path);
        const rel = path.slice(ROOT.length);
        // A Worker's source is named *.worker.ts and handed over as new URL("./x.worker.ts", import.meta.url),
        // to workerUrl directly or to QueueThread, which passes it to workerUrl.
        const code = text.split("\n").filter((l) => !/^\s*(\*|\/\/|\/\*)/.test(l)).join("\n");
        for (const m of code.matchAll(/new URL\("\.\/([^"]+\.worker\.ts)", import\.meta\.url\)/g)) {
          viaWorkerUrl.push(`${rel.slice(0, rel.lastIndexOf("/") + 1)}${m[1]}`);
        }
        for (const m of text.matchAll(/new Worker\((?!workerUrl\()/g)) bypass.push(`${rel} at ${m.index}`);
      }
    }
  }
  await walk(`${ROOT}lib`);
  return { viaWorkerUrl: viaWorkerUrl.sort(), bypass };
}

Deno.test("deno task bundle: one file per isolate that runs with nothing but deno", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "lguest-bundle-test-" });
  try {
    const dist = `${dir}/dist`;
    const launcher = await bundle(dist);
    const files = [MAIN_BUNDLE, ...WORKERS.map(bundleName)];

    await t.step("writes the main bundle, each Worker's and an executable launcher", async () => {
      assert.equal(launcher, `${dist}/lguest`);
      assert.ok(((await Deno.stat(launcher)).mode ?? 0) & 0o100, "dist/lguest is executable");
      assert.deepEqual([...files].sort(), [
        "data_path.worker.js",
        "io_thread.worker.js",
        "lguest.js",
        "queue_thread.worker.js",
        "vcpu.worker.js",
      ]);
      for (const f of files) {
        const js = await Deno.readTextFile(`${dist}/${f}`);
        assert.equal(js.split("\n")[0], `globalThis.${BUNDLE_MARK} = true;`, `${f} is marked as bundled`);
        assert.deepEqual(externalImports(js), [], `${f} imports nothing but node: built-ins`);
      }
    });

    await t.step("--help, with an empty DENO_DIR", async () => {
      const r = await bare([launcher, "--help"], dir);
      assert.equal(r.code, 0, context(r));
      assert.match(r.stdout, /^Usage: lguest /, context(r));
      assert.equal(r.stderr, "", context(r));
    });

    await t.step("a bad option: one line on stderr, status 1", async () => {
      const r = await bare([launcher, "--bogus", "64", "bzImage"], dir);
      assert.equal(r.code, 1, context(r));
      assert.equal(r.stdout, "", context(r));
      assert.match(r.stderr, /^lguest: Unknown option '--bogus'[^\n]*\n$/, context(r));
    });

    await t.step("a YAML config is parsed offline (npm:yaml is in the bundle)", async () => {
      await Deno.writeTextFile(`${dir}/vm.yaml`, "memory: -5\nkernel: bzImage\n");
      const r = await bare([launcher, `${dir}/vm.yaml`], dir);
      assert.equal(r.code, 1, context(r));
      assert.match(r.stderr, /vm\.yaml:1:9: memory must be a whole number from 1 to 1048576, not -5\n/, context(r));
      assert.doesNotMatch(r.stderr, /error: /, context(r));
    });

    await t.step("a disk's queue thread loads from queue_thread.worker.js", async () => {
      await Deno.writeFile(`${dir}/disk.img`, new Uint8Array(4096));
      await Deno.writeTextFile(`${dir}/notakernel`, "not a kernel\n");
      const r = await bare([launcher, `--block=${dir}/disk.img`, "64", `${dir}/notakernel`], dir);
      assert.equal(r.code, 1, context(r));
      assert.match(r.stderr, /^lguest: [^\n]*notakernel[^\n]*\n$/, context(r));
    });

    await t.step("a disk's I/O thread loads from io_thread.worker.js", async () => {
      await Deno.writeTextFile(`${dir}/io_probe.ts`, IO_PROBE);
      await bundleModule(`${dir}/io_probe.ts`, `${dist}/io_probe.js`);
      const r = await bare(
        ["deno", "run", "--allow-all", "--no-config", `${dist}/io_probe.js`, `${dir}/disk.img`],
        dir,
      );
      assert.equal(r.code, 0, context(r));
      assert.equal(r.stdout, "io thread running\n", context(r));
      assert.equal(r.stderr, "", context(r));
    });

    await t.step("every Worker lib/ spawns goes through workerUrl and is bundled", async () => {
      const { viaWorkerUrl, bypass } = await spawnedWorkers();
      assert.deepEqual(bypass, [], "new Worker without workerUrl: a bundled build could not find it");
      assert.deepEqual(viaWorkerUrl, [...WORKERS].sort());
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
