/*T:227 Counting what a process holds, from /proc/self/fd. A listing
 * names each descriptor with what it points at ("12=/tmp/disk.img",
 * "13=anon_inode:[eventfd]"); two listings are compared by their targets
 * as multisets, since numbers are reused in another order. A Worker's
 * runtime gives its own descriptors back a moment after the Worker is
 * ended, on its own thread, so a listing taken to look for leaks is taken
 * once nothing is left over, or after a deadline, whichever comes first. :*/

/** The open descriptors, with what they point at, in fd order ("<fd>=<target> ..."). */
export function openFds(): string {
  const fds: string[] = [];
  for (const e of Deno.readDirSync("/proc/self/fd")) {
    try {
      fds.push(`${e.name}=${Deno.readLinkSync(`/proc/self/fd/${e.name}`)}`);
    } catch {
      // The descriptor readDirSync itself used, gone by now.
    }
  }
  return fds.sort((a, b) => parseInt(a) - parseInt(b)).join(" ");
}

/** What the descriptors in a listing point at, without their numbers, sorted (fd numbers get reused in another order). */
export function fdTargets(listing: string): string {
  return listing.split(" ").map((f) => f.slice(f.indexOf("=") + 1)).sort().join(" ");
}

/**
 * The targets in listing `after` that are not in `before` (as multisets): descriptors left open.
 * Fewer is fine: a Worker's runtime ended earlier may give its descriptors back late.
 */
export function leftOpen(before: string, after: string): string[] {
  const pool = fdTargets(before).split(" ");
  const extra: string[] = [];
  for (const t of fdTargets(after).split(" ")) {
    const i = pool.indexOf(t);
    if (i >= 0) pool.splice(i, 1);
    else extra.push(t);
  }
  return extra;
}

/** The open descriptors once none is open that was not open in `before`, or as they are after `ms`. */
export async function settledFds(before: string, ms: number): Promise<string> {
  const deadline = performance.now() + ms;
  let now = openFds();
  while (leftOpen(before, now).length > 0 && performance.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    now = openFds();
  }
  return now;
}
