/*T:100 The test guest is built from source by whoever needs it (the tests,
 * the demo, the benchmarks), with the host's gcc, into a cache directory
 * keyed by a hash of the sources and flags, so the build runs once. :*/

import { cacheRoot } from "../../scripts/cache.ts";

const HERE = new URL(".", import.meta.url).pathname;
/** Every source file in this directory: C, assembly, headers, the linker script. */
const SOURCES = [...Deno.readDirSync(HERE)]
  .map((e) => e.name)
  .filter((n) => /\.(c|S|h|ld)$/.test(n))
  .sort();
const CFLAGS = [
  "-O2",
  "-ffreestanding",
  "-fno-builtin",
  "-nostdlib",
  "-nostdinc",
  "-static",
  "-fno-pie",
  "-no-pie",
  "-fno-stack-protector",
  "-fcf-protection=none",
  "-mno-red-zone",
  "-mgeneral-regs-only",
  "-fno-asynchronous-unwind-tables",
  "-Wall",
  "-Werror",
  "-Wl,--build-id=none",
  "-Wl,-z,noexecstack",
  "-Wl,--no-warn-rwx-segments",
];

/** The cache root, re-exported for the scripts that import it from here. */
export { cacheRoot };

/** The first 8 bytes of the SHA-256 of `text`, in hex: a cache key. */
export async function shortHash(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest).slice(0, 8), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function sourceHash(): Promise<string> {
  const parts = [CFLAGS.join(" ")];
  for (const s of SOURCES) parts.push(await Deno.readTextFile(`${HERE}${s}`));
  return await shortHash(parts.join("\0"));
}

/**
 * Runs `gcc args... -o <out>` unless `<dir>/<name>` is already there, and
 * returns that path. The cache key (the directory) must cover everything
 * that goes into the build; the output appears atomically (a temporary
 * file renamed), so a crashed build never leaves half a binary behind.
 * @param dir the cache directory for this build
 * @param name the output file's name
 * @param args gcc's arguments, without -o
 * @returns the path of the built file
 */
export async function gccCached(dir: string, name: string, args: readonly string[]): Promise<string> {
  const out = `${dir}/${name}`;
  try {
    await Deno.stat(out);
    return out;
  } catch {
    // Not built yet.
  }
  await Deno.mkdir(dir, { recursive: true });
  const tmp = `${out}.${Deno.pid}.tmp`;
  const r = await new Deno.Command("gcc", { args: [...args, "-o", tmp], stderr: "piped", stdout: "piped" }).output();
  if (!r.success) throw new Error(`building ${name} failed:\n${new TextDecoder().decode(r.stderr)}`);
  await Deno.rename(tmp, out);
  return out;
}

/**
 * Builds the test guest ELF (once per source change) and returns its path.
 * @returns the path of the built guest.elf
 */
export async function buildTestGuest(): Promise<string> {
  const units = SOURCES.filter((s) => /\.(c|S)$/.test(s)).map((s) => `${HERE}${s}`);
  return await gccCached(`${cacheRoot()}/guest-${await sourceHash()}`, "guest.elf", [
    ...CFLAGS,
    "-T",
    `${HERE}guest.ld`,
    ...units,
  ]);
}

if (import.meta.main) console.log(await buildTestGuest());
