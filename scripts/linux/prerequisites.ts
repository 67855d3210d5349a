/** What building the guest kernel needs on the host, and installing it when it is missing (see L:902, L:904). */

import { BUSYBOX, isStaticElf } from "../../lib/run/busybox.ts";

export { BUSYBOX };

/** Debian's kernel source, as the linux-source-6.1 package installs it. */
export const SOURCE_TARBALL = "/usr/src/linux-source-6.1.tar.xz";

/*L:902 The build needs a compiler and the usual kernel build tools, the
 * libelf headers (objtool links against libelf), lz4 for the kernel image
 * compression we pick in guest.config, the source tarball itself and a
 * *static* busybox (the dynamic one from the `busybox` package would need a
 * libc inside the initramfs). When anything is missing we install the whole
 * set with apt in one go; on a machine that has them this costs a few stat
 * calls. :*/
const APT_PACKAGES = [
  "linux-source-6.1",
  "bison",
  "flex",
  "libelf-dev",
  "bc",
  "cpio",
  "busybox-static",
  "build-essential",
  "lz4",
  "xz-utils",
];
const TOOLS = [
  "gcc",
  "make",
  "bison",
  "flex",
  "bc",
  "cpio",
  "lz4",
  "xz",
  "tar",
  "perl",
  "bash",
];

/*L:904 Package check. `which` is not used: we look along PATH ourselves, and
 * we check that /bin/busybox has no program interpreter (PT_INTERP), which
 * is what "static" means to the kernel's ELF loader. apt-get update runs at
 * most once per process; its output goes to stderr so that the CLI's stdout
 * stays pure JSON. :*/
let aptUpdated = false;

function missingTools(): string[] {
  const missing: string[] = [];
  if (!exists(SOURCE_TARBALL)) missing.push(SOURCE_TARBALL);
  const path = (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":");
  for (const tool of TOOLS) {
    if (!path.some((dir) => isFile(`${dir}/${tool}`))) missing.push(tool);
  }
  if (!exists("/usr/include/libelf.h") && !exists("/usr/include/gelf.h")) {
    missing.push("/usr/include/libelf.h");
  }
  if (!exists(BUSYBOX)) missing.push(BUSYBOX);
  else if (!isStaticElf(BUSYBOX)) missing.push(`${BUSYBOX} (static)`);
  return missing;
}

export async function ensureBuildInputs(log: (s: string) => void): Promise<void> {
  const missing = missingTools();
  if (missing.length === 0) return;
  log(`missing build inputs: ${missing.join(", ")}`);
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  if (!aptUpdated) {
    log("running apt-get update");
    await runToStderr("apt-get update", "apt-get", ["update"], env);
    aptUpdated = true;
  }
  log(`running apt-get install ${APT_PACKAGES.join(" ")}`);
  await runToStderr("apt-get install", "apt-get", [
    "install",
    "-y",
    "--no-install-recommends",
    ...APT_PACKAGES,
  ], env);
  const still = missingTools();
  if (still.length > 0) {
    throw new Error(`linux: still missing after apt-get: ${still.join(", ")}`);
  }
}

/** Runs a step with its output on stderr; throws naming the step on failure. */
async function runToStderr(
  step: string,
  cmd: string,
  args: string[],
  env: Record<string, string>,
): Promise<void> {
  const child = new Deno.Command(cmd, {
    args,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  await child.stdout.pipeTo(Deno.stderr.writable, { preventClose: true });
  const { code } = await child.status;
  if (code !== 0) {
    throw new Error(`linux: step "${step}" failed (exit code ${code})`);
  }
}

export function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

export function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}
