/** Where lguest keeps what it builds or downloads once: kernels, the test guest, VM images, benchmark files. */

/**
 * The root of lguest's cache: `$LGUEST_CACHE`, else `$XDG_CACHE_HOME/lguest`,
 * else `~/.cache/lguest`. It lives outside the repository on purpose, so a
 * clean checkout does not throw away a kernel that took minutes to build.
 * @returns the directory (not created here)
 */
export function cacheRoot(): string {
  const explicit = Deno.env.get("LGUEST_CACHE");
  if (explicit) return explicit;
  const xdg = Deno.env.get("XDG_CACHE_HOME");
  if (xdg) return `${xdg}/lguest`;
  const home = Deno.env.get("HOME") ?? "/root";
  return `${home}/.cache/lguest`;
}
