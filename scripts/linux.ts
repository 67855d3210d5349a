/*L:900 A real guest to boot. Everything up to here ran hand-written test
 * guests; to show the launcher can carry Linux we need a kernel and a tiny
 * userspace, and we cannot download either (no kernel.org, no GitHub). What
 * we can reach is Debian: its linux-source-6.1 package ships the kernel
 * source as a tarball, and busybox-static ships a single static binary that
 * is a whole userspace. So this module builds, on demand:
 *
 *   - bzImage   the kernel in the x86 boot protocol format, what
 *               the launcher loads;
 *   - vmlinux   the same kernel as a plain ELF, for symbols (and for loading
 *               without the decompressor if we ever want to);
 *   - initramfs a gzip'd newc cpio holding busybox and scripts/linux/init,
 *               which prints LGUEST-*-OK markers the tests grep for.
 *
 * The build takes minutes, so the results live in a cache outside the repo,
 * under a directory named after a hash of everything that went into them.
 * Running `deno run -A scripts/linux.ts` builds (if needed) and prints the
 * paths as JSON. :*/

import { cacheRoot } from "./cache.ts";
import { BUSYBOX, ensureBuildInputs, exists, SOURCE_TARBALL } from "./linux/prerequisites.ts";
import { APPLETS, buildInitramfs, INIT_URL } from "./linux/initramfs.ts";

/** Paths to a built guest kernel and initramfs, all inside the cache. */
export interface LinuxArtifacts {
  /** The kernel in x86 boot protocol format (starts with "MZ", "HdrS" at 0x202). */
  bzImage: string;
  /** The uncompressed kernel as an ELF64 x86_64 file, with symbols. */
  vmlinux: string;
  /** A gzip-compressed newc cpio archive: busybox plus `/init`. */
  initramfs: string;
  /** The kernel release string, what `uname -r` prints in the guest. */
  version: string;
  /** The directory holding the three files above (`<cache>/linux-<hash16>`). */
  cacheDir: string;
}

/** Options for {@link ensureLinux}. */
export interface EnsureLinuxOptions {
  /** Receives one line per step; defaults to writing to stderr. */
  log?: (s: string) => void;
}

/*L:901 Every input that changes the output goes into the cache key. The
 * fragment and the init script are read as text; the source tarball and the
 * busybox binary are too big to hash on every call, so their size and mtime
 * stand in (a Debian upgrade rewrites both). The applet list and a format
 * version cover decisions made in this file: bump FORMAT_VERSION when
 * changing how things are built. :*/
const FORMAT_VERSION = 1;
const SOURCE_TOPDIR = "linux-source-6.1";
const FRAGMENT_URL = new URL("./linux/guest.config", import.meta.url);

/** The root of lguest's cache; kept under this name for the scripts that import it from here. */
export { cacheRoot as linuxCacheDir } from "./cache.ts";

/**
 * Returns a guest kernel and initramfs, building them first if the cache has
 * none for the current inputs (several minutes; later calls take
 * milliseconds). Installs missing build tools with apt. Safe to call from
 * several processes at once: a lock file makes all but one wait.
 */
export async function ensureLinux(
  opts: EnsureLinuxOptions = {},
): Promise<LinuxArtifacts> {
  const log = opts.log ?? ((s: string) => console.error(`[linux] ${s}`));
  const cache = cacheRoot();

  // Fast path: everything is already built.
  if (!exists(SOURCE_TARBALL) || !exists(BUSYBOX)) {
    await ensureBuildInputs(log);
  }
  const key = await cacheKey();
  const done = await readDone(cache, key);
  if (done) return done;

  await ensureBuildInputs(log);
  await Deno.mkdir(cache, { recursive: true });
  const lock = await Deno.open(`${cache}/linux.lock`, {
    read: true,
    write: true,
    create: true,
  });
  try {
    log(`waiting for the build lock ${cache}/linux.lock`);
    await lock.lock(true);
    // Someone else may have finished the build while we waited.
    return (await readDone(cache, key)) ?? await build(cache, key, log);
  } finally {
    lock.close(); // also releases the lock
  }
}

/*L:903 The fast path must stay well under 100 ms, since every test that
 * boots Linux calls ensureLinux(): two small reads, two stats and one
 * SHA-256. The version file is written before the final rename, so if the
 * directory exists at all it is complete. :*/
async function cacheKey(): Promise<string> {
  const tar = Deno.statSync(SOURCE_TARBALL);
  const bb = Deno.statSync(BUSYBOX);
  const material = JSON.stringify({
    format: FORMAT_VERSION,
    fragment: await Deno.readTextFile(FRAGMENT_URL),
    init: await Deno.readTextFile(INIT_URL),
    tarball: [tar.size, tar.mtime?.getTime() ?? 0],
    busybox: [bb.size, bb.mtime?.getTime() ?? 0],
    applets: APPLETS,
  });
  return (await sha256(material)).slice(0, 16);
}

async function readDone(
  cache: string,
  key: string,
): Promise<LinuxArtifacts | null> {
  const dir = `${cache}/linux-${key}`;
  const a = {
    bzImage: `${dir}/bzImage`,
    vmlinux: `${dir}/vmlinux`,
    initramfs: `${dir}/initramfs.cpio.gz`,
  };
  if (!exists(a.bzImage) || !exists(a.vmlinux) || !exists(a.initramfs)) {
    return null;
  }
  let version: string;
  try {
    version = (await Deno.readTextFile(`${dir}/version`)).trim();
  } catch {
    return null;
  }
  return { ...a, version, cacheDir: dir };
}

/*L:905 The slow path, run under the lock. The source tree is keyed only by
 * the tarball, so editing guest.config does not re-extract 1.4 GB; the
 * kernel is built out of tree (make O=) in a scratch directory next to the
 * final one, and the finished outputs are moved into place with one
 * rename(2). A crash leaves only a ".tmp" directory, which the next build
 * throws away. :*/
async function build(
  cache: string,
  key: string,
  log: (s: string) => void,
): Promise<LinuxArtifacts> {
  const started = performance.now();
  const tmp = `${cache}/linux-${key}.tmp`;
  // We hold the lock, so any ".tmp" directory is left over from a build that
  // failed or was killed (kept until now for its build.log).
  for await (const e of Deno.readDir(cache)) {
    if (/^linux-[0-9a-f]{16}\.tmp$/.test(e.name)) {
      await Deno.remove(`${cache}/${e.name}`, { recursive: true });
    }
  }
  const kbuild = `${tmp}/kbuild`;
  const out = `${tmp}/out`;
  await Deno.mkdir(kbuild, { recursive: true });
  await Deno.mkdir(out, { recursive: true });
  const logPath = `${tmp}/build.log`;
  const logFile = await Deno.open(logPath, {
    write: true,
    create: true,
    append: true,
  });
  log(`building Linux into ${tmp} (log: ${logPath})`);
  try {
    const src = await ensureSource(cache, logFile, logPath, log);
    const fragment = fromFileUrl(FRAGMENT_URL);
    const make = (step: string, ...targets: string[]) =>
      run(step, "make", [
        "-C",
        src,
        `O=${kbuild}`,
        "ARCH=x86_64",
        ...targets,
      ], { logFile, logPath });

    await timed(log, "make tinyconfig", () => make("tinyconfig", "tinyconfig"));
    await timed(log, "merge guest.config", () =>
      run("merge_config", "bash", [
        `${src}/scripts/kconfig/merge_config.sh`,
        "-m",
        ".config",
        fragment,
      ], { cwd: kbuild, logFile, logPath }));
    await timed(
      log,
      "make olddefconfig",
      () => make("olddefconfig", "olddefconfig"),
    );
    await verifyConfig(
      await Deno.readTextFile(fragment),
      await Deno.readTextFile(`${kbuild}/.config`),
    );
    const jobs = String(navigator.hardwareConcurrency || 1);
    await timed(
      log,
      `make -j${jobs} bzImage vmlinux`,
      () => make("make bzImage vmlinux", `-j${jobs}`, "bzImage", "vmlinux"),
    );

    const version = (await Deno.readTextFile(`${kbuild}/include/config/kernel.release`))
      .trim();
    await Deno.copyFile(`${kbuild}/arch/x86/boot/bzImage`, `${out}/bzImage`);
    await Deno.copyFile(`${kbuild}/vmlinux`, `${out}/vmlinux`);
    await Deno.copyFile(`${kbuild}/.config`, `${out}/config`);
    await timed(
      log,
      "initramfs",
      async () =>
        await Deno.writeFile(
          `${out}/initramfs.cpio.gz`,
          await buildInitramfs(),
        ),
    );
    await Deno.writeTextFile(`${out}/version`, `${version}\n`);
  } catch (e) {
    logFile.close();
    await printTail(logPath, log);
    throw e;
  }
  logFile.close();
  await Deno.rename(logPath, `${out}/build.log`);

  const dir = `${cache}/linux-${key}`;
  await Deno.rename(out, dir);
  await Deno.remove(tmp, { recursive: true });
  const secs = ((performance.now() - started) / 1000).toFixed(1);
  log(`Linux built in ${secs}s: ${dir}`);
  const done = await readDone(cache, key);
  if (!done) throw new Error(`linux: ${dir} incomplete after build`);
  return done;
}

async function ensureSource(
  cache: string,
  logFile: Deno.FsFile,
  logPath: string,
  log: (s: string) => void,
): Promise<string> {
  const tar = Deno.statSync(SOURCE_TARBALL);
  const key = (await sha256(
    JSON.stringify([SOURCE_TARBALL, tar.size, tar.mtime?.getTime() ?? 0]),
  )).slice(0, 16);
  const dir = `${cache}/src-${key}`;
  const tree = `${dir}/${SOURCE_TOPDIR}`;
  if (exists(`${tree}/Makefile`)) return tree;

  // A new tarball: the old extracted trees are dead weight (~1.4 GB each).
  for await (const e of Deno.readDir(cache)) {
    if (e.isDirectory && e.name.startsWith("src-")) {
      log(`removing stale source tree ${cache}/${e.name}`);
      await Deno.remove(`${cache}/${e.name}`, { recursive: true });
    }
  }
  const tmp = `${dir}.tmp`;
  await Deno.mkdir(tmp, { recursive: true });
  await timed(
    log,
    `extract ${SOURCE_TARBALL}`,
    () =>
      run("extract source", "tar", ["-xf", SOURCE_TARBALL, "-C", tmp], {
        logFile,
        logPath,
      }),
  );
  await Deno.rename(tmp, dir);
  return tree;
}

/*L:906 merge_config.sh and olddefconfig never complain about an option they
 * could not set: a misspelt name, or one whose dependencies are off, simply
 * vanishes. So after the merge we hold .config against the fragment: every
 * `=y` (or `=<value>`) line must be there verbatim, and every "is not set" must not have come
 * back as `=y` (as KERNEL_XZ would if KERNEL_LZ4 failed to stick). :*/
function verifyConfig(fragment: string, config: string): void {
  const have = new Set(config.split("\n").map((l) => l.trim()));
  const problems: string[] = [];
  for (const raw of fragment.split("\n")) {
    const line = raw.trim();
    const set = /^(CONFIG_[A-Za-z0-9_]+)=(.+)$/.exec(line);
    if (set && !have.has(line)) {
      const got = [...have].find((l) => l.startsWith(`${set[1]}=`));
      problems.push(`${line} (got ${got ?? "unset"})`);
    }
    const off = /^# (CONFIG_[A-Za-z0-9_]+) is not set$/.exec(line);
    if (off && have.has(`${off[1]}=y`)) problems.push(`${off[1]} still =y`);
  }
  if (problems.length > 0) {
    throw new Error(
      `linux: step "verify config" failed: guest.config options did not ` +
        `stick: ${problems.join(", ")}`,
    );
  }
}

/*L:908 Build steps run with their output appended to build.log, not to our
 * terminal: a kernel build prints thousands of lines. When a step fails we
 * show the last lines of the log and throw an error naming the step, which
 * is usually all one needs to see. :*/
async function run(
  step: string,
  cmd: string,
  args: string[],
  o: { cwd?: string; logFile: Deno.FsFile; logPath: string },
): Promise<void> {
  const header = `\n### ${step}: ${cmd} ${args.join(" ")}\n`;
  await o.logFile.write(new TextEncoder().encode(header));
  const child = new Deno.Command(cmd, {
    args,
    ...(o.cwd ? { cwd: o.cwd } : {}),
    env: { KBUILD_BUILD_USER: "lguest", KBUILD_BUILD_HOST: "lguest" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const drain = async (s: ReadableStream<Uint8Array>) => {
    for await (const chunk of s) await o.logFile.write(chunk);
  };
  await Promise.all([drain(child.stdout), drain(child.stderr)]);
  const { code } = await child.status;
  if (code !== 0) {
    throw new Error(
      `linux: step "${step}" failed (exit code ${code}); log: ${o.logPath}`,
    );
  }
}

async function printTail(path: string, log: (s: string) => void) {
  try {
    const lines = (await Deno.readTextFile(path)).trimEnd().split("\n");
    log(`last lines of ${path}:\n${lines.slice(-40).join("\n")}`);
  } catch {
    // No log yet: the error itself says what failed.
  }
}

async function timed<T>(
  log: (s: string) => void,
  what: string,
  fn: () => Promise<T>,
): Promise<T> {
  const t0 = performance.now();
  log(`${what} ...`);
  const r = await fn();
  log(`${what} done in ${((performance.now() - t0) / 1000).toFixed(1)}s`);
  return r;
}

async function sha256(s: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(s));
  return Array.from(new Uint8Array(d), (b) => b.toString(16).padStart(2, "0"))
    .join("");
}

function fromFileUrl(url: URL): string {
  if (url.protocol !== "file:") {
    throw new Error(`linux: ${url} is not a local file`);
  }
  return decodeURIComponent(url.pathname);
}

if (import.meta.main) {
  try {
    console.log(JSON.stringify(await ensureLinux(), null, 2));
  } catch (e) {
    console.error(e instanceof Error ? e.message : e);
    Deno.exit(1);
  }
}
