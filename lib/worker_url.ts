/*L:411 Where a Worker's code is. The launcher starts three kinds of Worker
 * by URL: the vCPU's, a disk's queue thread and its I/O helpers. From source
 * (and in a `deno compile` binary, whose modules keep their source URLs)
 * each URL is the .ts file next to the module that spawns it. In a `deno bundle` build
 * (scripts/bundle.ts) every module is inlined into one file per isolate, so
 * `import.meta.url` is that file and the .ts files are not there: each
 * Worker is its own bundle, `<name>.js`, in the same directory. The bundle
 * script marks every file it writes with a global flag on its first line;
 * without the flag nothing changes. :*/

/** The global that scripts/bundle.ts sets on the first line of each bundled file. */
export const BUNDLE_MARK = "__lguestBundled";

/**
 * The URL to give `new Worker` for a Worker module.
 * @param source the Worker's source module, e.g. `new URL("./vcpu.worker.ts", import.meta.url)`
 * @returns `source` itself, or in a bundled build `<name>.js` (the source's file name, `.ts` made
 *   `.js`) next to the running bundle
 */
export function workerUrl(source: URL): string {
  if ((globalThis as Record<string, unknown>)[BUNDLE_MARK] !== true) return source.href;
  // Inlined into a bundle, this module's URL is the bundle's own file.
  return new URL(`./${bundleName(source.pathname)}`, import.meta.url).href;
}

/**
 * The file name a Worker's bundle gets: `lib/vcpu.worker.ts` becomes `vcpu.worker.js`.
 * @param sourcePath the Worker's source path (any directory)
 * @returns the bundle's file name, as {@link workerUrl} looks it up
 */
export function bundleName(sourcePath: string): string {
  return sourcePath.slice(sourcePath.lastIndexOf("/") + 1).replace(/\.ts$/, ".js");
}
