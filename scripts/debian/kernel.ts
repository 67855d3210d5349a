/*L:920 The distribution's own kernel. Everything in scripts/linux.ts is a
 * kernel built for the launcher; a user's first try is the one Debian ships.
 * So the tests fetch it exactly as a user would get it: the package that
 * `linux-image-cloud-amd64` depends on, downloaded with apt-get (never
 * installed on this host: it would add a kernel to /boot and run update-grub)
 * and unpacked with dpkg-deb into lguest's cache, one directory per package
 * version, so a second run costs two apt-cache queries and a stat. :*/

import { cacheRoot } from "../cache.ts";
import { extractVmlinux } from "./vmlinux.ts";

/** The metapackage that always names the current cloud kernel. */
export const DEBIAN_METAPACKAGE = "linux-image-cloud-amd64";

/** One of Debian's kernel packages, unpacked in the cache. */
export interface DebianKernel {
  /** The binary package, e.g. `linux-image-6.1.0-57-cloud-amd64`. */
  package: string;
  /** The package version, e.g. `6.1.192-3`. */
  packageVersion: string;
  /** The kernel release (`uname -r`), e.g. `6.1.0-57-cloud-amd64`. */
  release: string;
  /** Debian's bzImage, `/boot/vmlinuz-<release>` from the package, unmodified. */
  bzImage: string;
  /** The ELF vmlinux that bzImage's payload carries, decompressed. */
  vmlinux: string;
  /** `/lib/modules/<release>` from the package. */
  modulesDir: string;
  /** The package's unpacked tree (`<cache>/debian-<package>_<version>`). */
  root: string;
}

/** Options for {@link ensureDebianKernel}. */
export interface EnsureDebianKernelOptions {
  /** Receives one line per slow step; defaults to stderr. */
  log?: (line: string) => void;
}

/*L:921 Which package. `apt-cache depends` on the metapackage names the
 * versioned image package; `apt-cache show` gives its candidate version.
 * Both read apt's local lists, so they work without network (in the test
 * VM, which sees this host's root); only when apt knows neither do we run
 * `apt-get update`, once. :*/
async function resolve(log: (line: string) => void): Promise<{ pkg: string; version: string }> {
  for (let attempt = 0;; attempt++) {
    const dep = /Depends: (linux-image-[^\s]+)/.exec(
      await output("apt-cache", ["depends", DEBIAN_METAPACKAGE]).catch(() => ""),
    );
    const pkg = dep?.[1];
    const version = pkg
      ? /^Version: (\S+)$/m.exec(await output("apt-cache", ["show", "--no-all-versions", pkg]).catch(() => ""))?.[1]
      : undefined;
    if (pkg && version) return { pkg, version };
    if (attempt > 0) throw new Error(`debian: apt knows no ${DEBIAN_METAPACKAGE} even after apt-get update`);
    log("apt-get update");
    await output("apt-get", ["update", "-q"]);
  }
}

/**
 * Returns Debian's current cloud kernel, unpacked in the cache, downloading
 * and unpacking it first if this version is not there yet.
 * @param opts where progress goes
 * @returns paths to the bzImage, the extracted vmlinux and the modules
 */
export async function ensureDebianKernel(opts: EnsureDebianKernelOptions = {}): Promise<DebianKernel> {
  const log = opts.log ?? ((s: string) => console.error(`[debian] ${s}`));
  const { pkg, version } = await resolve(log);
  const root = `${cacheRoot()}/debian-${pkg}_${version}`;
  const done = await readDone(root, pkg, version);
  if (done) return done;

  await Deno.mkdir(cacheRoot(), { recursive: true });
  const tmp = `${root}.${Deno.pid}.tmp`;
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
  await Deno.mkdir(`${tmp}/deb`, { recursive: true });
  try {
    log(`apt-get download ${pkg}=${version}`);
    await output("apt-get", ["download", "-q", `${pkg}=${version}`], `${tmp}/deb`);
    const debs = [...Deno.readDirSync(`${tmp}/deb`)].filter((e) => e.name.endsWith(".deb"));
    if (debs.length !== 1) throw new Error(`debian: apt-get download left ${debs.length} .deb files`);
    log(`dpkg-deb -x ${debs[0]!.name}`);
    await output("dpkg-deb", ["-x", `${tmp}/deb/${debs[0]!.name}`, `${tmp}/tree`]);
    const release = await findRelease(`${tmp}/tree`);
    // modules.dep is not in the package: its postinst runs depmod. We run
    // the same depmod on the unpacked tree, against the package's System.map.
    log(`depmod ${release}`);
    await output("depmod", ["-b", `${tmp}/tree`, "-F", `${tmp}/tree/boot/System.map-${release}`, release]);
    log(`extracting vmlinux from vmlinuz-${release}`);
    await extractVmlinux(`${tmp}/tree/boot/vmlinuz-${release}`, `${tmp}/tree/vmlinux`);
    await Deno.remove(`${tmp}/deb`, { recursive: true });
    await Deno.writeTextFile(`${tmp}/tree/lguest-release`, `${release}\n`);
    await Deno.rename(`${tmp}/tree`, root).catch(async (e) => {
      // Another process may have finished the same version first.
      if (!(await readDone(root, pkg, version))) throw e;
    });
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
  const ready = await readDone(root, pkg, version);
  if (!ready) throw new Error(`debian: ${root} incomplete after unpacking`);
  return ready;
}

/** The release is the suffix of the one `boot/vmlinuz-*` the package holds. */
async function findRelease(tree: string): Promise<string> {
  const found: string[] = [];
  for await (const e of Deno.readDir(`${tree}/boot`)) {
    const m = /^vmlinuz-(.+)$/.exec(e.name);
    if (m) found.push(m[1]!);
  }
  if (found.length !== 1) throw new Error(`debian: expected one boot/vmlinuz-* in the package, found ${found.length}`);
  return found[0]!;
}

/*L:922 The release file is written last, before the rename that makes the
 * directory visible, so a directory that has it is complete. :*/
async function readDone(root: string, pkg: string, version: string): Promise<DebianKernel | null> {
  let release: string;
  try {
    release = (await Deno.readTextFile(`${root}/lguest-release`)).trim();
  } catch {
    return null;
  }
  return {
    package: pkg,
    packageVersion: version,
    release,
    bzImage: `${root}/boot/vmlinuz-${release}`,
    vmlinux: `${root}/vmlinux`,
    modulesDir: `${root}/lib/modules/${release}`,
    root,
  };
}

async function output(cmd: string, args: string[], cwd?: string): Promise<string> {
  const r = await new Deno.Command(cmd, {
    args,
    ...(cwd ? { cwd } : {}),
    env: { DEBIAN_FRONTEND: "noninteractive" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  if (!r.success) throw new Error(`debian: ${cmd} ${args.join(" ")} failed: ${dec.decode(r.stderr).trim()}`);
  return dec.decode(r.stdout);
}
