/*L:909 The project's guest initramfs: busybox, a link per applet, and
 * scripts/linux/init as /init, written as a newc archive in memory
 * (lib/boot/cpio.ts, L:907) and gzip'd. :*/

import { type CpioEntry, gzip, newc, S_IFCHR, S_IFDIR, S_IFLNK, S_IFREG } from "../../lib/boot/cpio.ts";
import { BUSYBOX } from "./prerequisites.ts";

/** The /init script (part of the cache key, L:901). */
export const INIT_URL = new URL("./init", import.meta.url);

/** Busybox applets linked into /bin of the initramfs: what /init uses, plus
 * a few for poking around by hand. */
export const APPLETS = [
  "sh",
  "ash",
  "blockdev",
  "cat",
  "dd",
  "devmem",
  "dmesg",
  "echo",
  "grep",
  "head",
  "ip",
  "ls",
  "mkdir",
  "mount",
  "od",
  "ping",
  "poweroff",
  "reboot",
  "sleep",
  "sync",
  "timeout",
  "tr",
  "umount",
  "uname",
  "wc",
];

/** The initramfs archive, gzip'd. */
export async function buildInitramfs(): Promise<Uint8Array> {
  const text = new TextEncoder();
  const entries: CpioEntry[] = [];
  for (const d of ["bin", "dev", "proc", "sys", "tmp", "root"]) {
    entries.push({ name: d, mode: S_IFDIR | 0o755 });
  }
  entries.push({ name: "dev/console", mode: S_IFCHR | 0o600, rdev: [5, 1] });
  entries.push({
    name: "bin/busybox",
    mode: S_IFREG | 0o755,
    data: await Deno.readFile(BUSYBOX),
  });
  for (const applet of APPLETS) {
    entries.push({
      name: `bin/${applet}`,
      mode: S_IFLNK | 0o777,
      data: text.encode("busybox"),
    });
  }
  entries.push({
    name: "init",
    mode: S_IFREG | 0o755,
    data: await Deno.readFile(INIT_URL),
  });
  return await gzip(newc(entries));
}
