/** How the bundle tests run a program as a host with only deno would: no inherited environment, an empty DENO_DIR. */

const DENO_BIN_DIR = Deno.execPath().slice(0, Deno.execPath().lastIndexOf("/"));

/**
 * Deno.Command options for a bare run in `dir`: a fresh DENO_DIR inside it, HOME there, PATH with deno and /bin only.
 * @param dir a temporary directory the caller removes
 */
export async function bareOptions(dir: string): Promise<{ cwd: string; clearEnv: true; env: Record<string, string> }> {
  const denoDir = await Deno.makeTempDir({ dir, prefix: "deno-dir-" });
  return { cwd: dir, clearEnv: true, env: { PATH: `${DENO_BIN_DIR}:/usr/bin:/bin`, DENO_DIR: denoDir, HOME: dir } };
}
