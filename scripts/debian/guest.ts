/*L:926 One call for the tests and for `deno run -A scripts/debian/guest.ts`
 * (which prints the paths as JSON): Debian's cloud kernel, fetched and
 * unpacked, plus the initramfs that loads its virtio modules. Both are
 * cached, so scripts/run_tests.ts calls this on the host before the test VM
 * starts (the VM has no network) and the test's own call inside the VM
 * finds everything in place. :*/

import { type DebianKernel, ensureDebianKernel, type EnsureDebianKernelOptions } from "./kernel.ts";
import { ensureDebianInitramfs } from "./initramfs.ts";
import { pvhEntry } from "./vmlinux.ts";

/** Debian's kernel and an initramfs for it. */
export interface DebianGuest extends DebianKernel {
  /** The busybox initramfs with the virtio modules and scripts/debian/init. */
  initramfs: string;
  /** Module files in the order /init loads them. */
  modules: string[];
  /** The vmlinux's XEN_ELFNOTE_PHYS32_ENTRY address as readelf reports it, if it has one. */
  pvhEntry: number | undefined;
}

/**
 * Fetches (once) Debian's cloud kernel and builds (once) its test initramfs.
 * @param opts where progress goes
 * @returns every path the tests need
 */
export async function ensureDebianGuest(opts: EnsureDebianKernelOptions = {}): Promise<DebianGuest> {
  const kernel = await ensureDebianKernel(opts);
  const { initramfs, modules } = await ensureDebianInitramfs(kernel);
  return { ...kernel, initramfs, modules, pvhEntry: await pvhEntry(kernel.vmlinux) };
}

if (import.meta.main) {
  try {
    console.log(JSON.stringify(await ensureDebianGuest(), null, 2));
  } catch (e) {
    console.error(e instanceof Error ? e.message : e);
    Deno.exit(1);
  }
}
