/*T:020 Debian packages the tasks need are installed by the tasks, never by
 * hand: we ask dpkg which are missing and apt-get only those, once. Without
 * root we cannot install, so we say what is missing and go on; the tests
 * that need it will skip with their own message. :*/

/** Packages from `wanted` that dpkg does not report as installed. */
export async function missingPackages(wanted: readonly string[]): Promise<string[]> {
  const out = await new Deno.Command("dpkg-query", {
    args: ["-W", "-f", "${Package} ${db:Status-Abbrev}\\n", ...wanted],
    stdout: "piped",
    stderr: "null",
  }).output().catch(() => undefined);
  if (out === undefined) return [...wanted];
  const ok = new Set(
    new TextDecoder().decode(out.stdout).split("\n").filter((l) => / ii\s*$/.test(l)).map((l) => l.split(" ")[0]),
  );
  return wanted.filter((p) => !ok.has(p));
}

/** Installs whichever of `wanted` are missing (root only). Returns what is still missing. */
export async function ensurePackages(wanted: readonly string[]): Promise<string[]> {
  const missing = await missingPackages(wanted);
  if (missing.length === 0) return [];
  if (Deno.uid() !== 0) {
    console.error(`packages: missing ${missing.join(" ")} (not root: install them with apt-get)`);
    return missing;
  }
  console.error(`packages: installing ${missing.join(" ")}`);
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  const apt = (args: string[]) =>
    new Deno.Command("apt-get", { args, env, stdout: "null", stderr: "inherit" }).output();
  await apt(["update", "-q"]);
  const r = await apt(["install", "-y", "-q", "--no-install-recommends", ...missing]);
  if (!r.success) console.error(`packages: apt-get install failed`);
  return await missingPackages(wanted);
}
