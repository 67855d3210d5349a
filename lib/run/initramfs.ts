/*L:446 The runner's initramfs, made in memory each time (a few
 * milliseconds: busybox is the only big file, and gzip is fast on it). Its
 * /init mounts what a shell expects, turns off the serial line's newline
 * translation (so the command's output reaches us byte for byte), then
 * either runs the command after a begin marker line and prints the end
 * marker with its status straight after its output or, without a command,
 * gives the console an interactive shell. Either way the machine is
 * rebooted at the end, which every kernel can do without ACPI: the
 * keyboard controller's reset line, or a triple fault, both of which end
 * the run cleanly (L:310). The markers carry a nonce chosen per run, so
 * nothing the command prints can be mistaken for them. :*/

import { type CpioEntry, gzip, newc, S_IFCHR, S_IFDIR, S_IFLNK, S_IFREG } from "../boot/cpio.ts";
import { readStaticBusybox } from "./busybox.ts";

/** What the runner's initramfs does. */
export interface RunInitramfsOptions {
  /** A shell command (sh -c); without one, /init gives the console an interactive shell. */
  command?: string | undefined;
  /** The markers' nonce (letters and digits). */
  nonce: string;
  /** The static busybox to use (default /bin/busybox). */
  busybox?: string | undefined;
}

/** The line before the command's output. */
export function beginMarker(nonce: string): string {
  return `LGUEST-RUN-BEGIN-${nonce}`;
}

/** Printed straight after the command's output (on its line or not), then a space and its exit status. */
export function endMarker(nonce: string): string {
  return `LGUEST-RUN-END-${nonce}`;
}

/** The prompt of the interactive shell. */
export const SHELL_PROMPT = "lguest# ";

const APPLETS = [
  "sh",
  "cat",
  "echo",
  "ls",
  "mount",
  "printf",
  "reboot",
  "poweroff",
  "stty",
  "sync",
  "uname",
  "wc",
  "grep",
  "head",
  "tail",
  "dmesg",
  "ps",
  "sleep",
  "dd",
  "od",
  "true",
  "false",
];

function initScript(nonce: string): string {
  return `#!/bin/sh
export PATH=/bin HOME=/root TERM=dumb PS1='${SHELL_PROMPT}'
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
stty -onlcr -echo 2>/dev/null
cd /root
if [ -f /lguest/command ]; then
	echo ${beginMarker(nonce)}
	sh /lguest/command
	status=$?
	printf '${endMarker(nonce)} %d\\n' "$status"
else
	sh -i
fi
sync
reboot -f
while :; do sleep 3600; done
`;
}

/**
 * Builds the runner's initramfs (a gzip'd newc archive) in memory.
 * @param opts the command and the nonce
 * @returns the archive, ready to be a machine's initrd
 * @throws Error when no static busybox is installed
 */
export async function runInitramfs(opts: RunInitramfsOptions): Promise<Uint8Array> {
  if (!/^[A-Za-z0-9]+$/.test(opts.nonce)) throw new Error(`run: bad nonce ${JSON.stringify(opts.nonce)}`);
  const text = new TextEncoder();
  const entries: CpioEntry[] = [];
  for (const d of ["bin", "dev", "proc", "sys", "tmp", "root", "lguest"]) {
    entries.push({ name: d, mode: S_IFDIR | 0o755 });
  }
  entries.push({ name: "dev/console", mode: S_IFCHR | 0o600, rdev: [5, 1] });
  entries.push({ name: "bin/busybox", mode: S_IFREG | 0o755, data: await readStaticBusybox(opts.busybox) });
  for (const applet of APPLETS) {
    entries.push({ name: `bin/${applet}`, mode: S_IFLNK | 0o777, data: text.encode("busybox") });
  }
  entries.push({ name: "init", mode: S_IFREG | 0o755, data: text.encode(initScript(opts.nonce)) });
  if (opts.command !== undefined) {
    entries.push({ name: "lguest/command", mode: S_IFREG | 0o644, data: text.encode(`${opts.command}\n`) });
  }
  return await gzip(newc(entries));
}
