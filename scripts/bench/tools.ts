/*T:715 The peers are built from source in the run, like the test guest:
 * the C programs in bench/ are compiled with the host's gcc into the cache,
 * keyed by a hash of their source, and QEMU comes from Debian's package,
 * installed by the script itself when missing. :*/

import { buildTestGuest, cacheRoot, gccCached, shortHash } from "../../tests/guest/build.ts";
import { ensurePackages } from "../packages.ts";
import type { Tools } from "./types.ts";

/** Debian packages the benchmarks use. */
export const BENCH_PACKAGES = [
  "gcc",
  "libc6-dev",
  "linux-libc-dev",
  "qemu-system-x86",
  "git",
  "linux-perf",
  "iproute2",
] as const;

/**
 * Compiles `bench/<name>.c` (once per change to it or to a header in bench/) and returns the binary.
 * @param root repository root, with a trailing slash
 * @param name the source's base name
 */
export async function buildPeer(root: string, name: string): Promise<string> {
  const src = `${root}bench/${name}.c`;
  const flags = ["-O2", "-Wall", "-Werror", "-pthread"];
  // The headers next to the peers count too: a change to one rebuilds every peer.
  const headers = [...Deno.readDirSync(`${root}bench`)].map((e) => e.name).filter((n) => n.endsWith(".h")).sort();
  const texts = await Promise.all([src, ...headers.map((h) => `${root}bench/${h}`)].map((f) => Deno.readTextFile(f)));
  const dir = `${cacheRoot()}/bench-${await shortHash(flags.join(" ") + texts.join("\0"))}`;
  return await gccCached(dir, name, [...flags, src]);
}

/** Finds an executable on PATH. */
export function which(name: string): string | undefined {
  for (const dir of (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":")) {
    try {
      const p = `${dir}/${name}`;
      if (Deno.statSync(p).isFile) return p;
    } catch {
      // Not in this directory.
    }
  }
  return undefined;
}

/**
 * Installs what is missing, then builds the test guest and the C peers.
 * @param root repository root, with a trailing slash
 */
export async function prepareTools(root: string): Promise<Tools> {
  const missing = await ensurePackages(BENCH_PACKAGES);
  if (missing.length > 0) console.error(`bench: still missing ${missing.join(" ")}; dependent figures will say so`);
  return {
    guest: await buildTestGuest(),
    kvmExit: await buildPeer(root, "kvm_exit"),
    probe: await buildPeer(root, "launch_probe"),
    blkHost: await buildPeer(root, "blk_host"),
    netHost: await buildPeer(root, "net_host"),
    qemu: which("qemu-system-x86_64"),
  };
}
