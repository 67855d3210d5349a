/*T:051 `deno task bundle` makes lguest for a host that has the deno
 * binary and nothing else: no checkout, no DENO_DIR cache, no network.
 * `deno run cli.ts` would fetch and compile a module graph of some 150
 * files (and npm:yaml) first; `deno compile` (T:050) needs its denort
 * base. Here `deno bundle` turns each isolate's graph into one JavaScript
 * file: dist/lguest.js for the main thread and one file per Worker, since
 * a Worker is a separate isolate that loads its own module by URL. Every
 * file's first line sets the global that lib/worker_url.ts reads (L:411),
 * so the bundled launcher spawns dist/<name>.js instead of the .ts files
 * that are not there. The lazy imports in cli.ts (the config parser and
 * npm:yaml, the disk, the network) are inlined too, so `--config` works
 * offline. dist/lguest is a sh script that runs the bundle with flags
 * that keep it from reading a deno.json or lockfile in the current
 * directory and from fetching anything. The build fails if any output
 * still imports something other than a node: builtin. :*/

import { BUNDLE_MARK, bundleName } from "../lib/worker_url.ts";

const ROOT = new URL("..", import.meta.url).pathname;

/** The Worker modules the launcher spawns by URL (the same list scripts/compile.ts passes to --include). */
export const WORKERS: readonly string[] = [
  "lib/vcpu.worker.ts",
  "lib/virtio/blk/queue_thread.worker.ts",
  "lib/virtio/blk/io_thread.worker.ts",
  "lib/virtio/net/data_path.worker.ts",
];

/** The bundle of the main thread's module graph, cli.ts. */
export const MAIN_BUNDLE = "lguest.js";

/** How dist/lguest runs the bundle (see T:051): nothing to fetch and no project config to pick up. */
export const RUN_FLAGS: readonly string[] = [
  "--allow-all",
  "--no-config",
  "--no-lock",
  "--no-remote",
  "--no-npm",
  "--quiet",
];

const LAUNCHER = `#!/bin/sh
# lguest, made by \`deno task bundle\`: needs only the deno binary (on PATH).
here=$(dirname "$(readlink -f "$0")")
exec deno run ${RUN_FLAGS.join(" ")} "$here/${MAIN_BUNDLE}" "$@"
`;

/** Import specifiers a bundle may keep: Deno's Node built-ins, which need nothing fetched. */
const KEPT = /^node:/;

/**
 * The import specifiers in a bundle that would need a module graph: all but node: built-ins.
 * @param js a bundle's text
 * @returns each `from "..."`, `import "..."` or `import("...")` specifier that is not `node:...`
 */
export function externalImports(js: string): string[] {
  const found = new Set<string>();
  for (const m of js.matchAll(/(?:\bfrom|\bimport)\s*\(?\s*["']([^"']+)["']/g)) {
    if (!KEPT.test(m[1]!)) found.add(m[1]!);
  }
  return [...found];
}

/**
 * Bundles one isolate's module graph into one marked file (see T:051).
 * @param source the entry module's path
 * @param out the file to write
 */
export async function bundleModule(source: string, out: string): Promise<void> {
  const args = [
    "bundle",
    "--platform",
    "deno",
    "--config",
    `${ROOT}deno.json`,
    "--quiet",
    "-o",
    out,
    source,
  ];
  const r = await new Deno.Command(Deno.execPath(), { args, stdout: "piped", stderr: "piped" }).output();
  if (!r.success) {
    const why = new TextDecoder().decode(r.stderr).trim();
    throw new Error(`deno ${args.join(" ")} failed (the first run fetches esbuild from npm): ${why}`);
  }
  const js = await Deno.readTextFile(out);
  const external = externalImports(js);
  if (external.length) throw new Error(`${out} still imports ${external.join(", ")}: not self-contained`);
  // An expression before the import declarations is valid: those are hoisted, and the mark is only read later.
  await Deno.writeTextFile(out, `globalThis.${BUNDLE_MARK} = true;\n${js}`);
}

/**
 * Writes the bundles and the dist/lguest launcher script into `outDir`.
 * @param outDir where to write (created if missing)
 * @returns the launcher script's path
 */
export async function bundle(outDir: string): Promise<string> {
  await Deno.mkdir(outDir, { recursive: true });
  const jobs = [["cli.ts", MAIN_BUNDLE], ...WORKERS.map((w) => [w, bundleName(w)])] as const;
  // The first deno bundle on a machine fetches esbuild into DENO_DIR; several at once race over that copy
  // (seen on a fresh machine: "failed to copy esbuild binary"), so one goes first, then the rest together.
  const [first, ...rest] = jobs;
  await bundleModule(`${ROOT}${first[0]}`, `${outDir}/${first[1]}`);
  await Promise.all(rest.map(([source, name]) => bundleModule(`${ROOT}${source}`, `${outDir}/${name}`)));
  const launcher = `${outDir}/lguest`;
  await Deno.writeTextFile(launcher, LAUNCHER);
  await Deno.chmod(launcher, 0o755);
  return launcher;
}

if (import.meta.main) {
  const out = Deno.args[0] ?? `${ROOT}dist`;
  try {
    const launcher = await bundle(out);
    console.error(`bundle: wrote ${launcher}, ${MAIN_BUNDLE} and ${WORKERS.map(bundleName).join(", ")} in ${out}`);
  } catch (e) {
    console.error(`bundle: ${e instanceof Error ? e.message : e}`);
    Deno.exit(1);
  }
}
