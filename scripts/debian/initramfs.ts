/*L:925 Debian's kernel builds virtio as modules, and its own initrd
 * (initramfs-tools) would need udev and a root filesystem to do anything
 * visible. For the tests we pack a small one instead: the static busybox,
 * scripts/debian/init, and exactly the modules for the launcher's devices,
 * virtio_mmio, virtio_blk, virtio_net, virtio_console and virtio_rng, with
 * everything modules.dep says they need, in load order. The modules are the
 * package's own files; only a compressed one (`.ko.xz`, `.ko.zst`) is
 * unpacked here, so busybox's insmod needs no decompressor. The archive is
 * written with scripts/linux.ts's newc writer and kept next to the unpacked
 * package, named after a hash of what went into it. :*/

import { loadOrder } from "../vm/image.ts";
import { type CpioEntry, gzip, newc, S_IFCHR, S_IFDIR, S_IFLNK, S_IFREG } from "../../lib/boot/cpio.ts";
import { shortHash } from "../../tests/guest/build.ts";
import type { DebianKernel } from "./kernel.ts";

/** The modules /init loads, by name; their dependencies come along. */
export const DEBIAN_MODULES = ["virtio_mmio", "virtio_blk", "virtio_net", "virtio_console", "virtio_rng"] as const;

const INIT_URL = new URL("./init", import.meta.url);
const BUSYBOX = "/bin/busybox";

/** modules.dep (written by depmod when the package was unpacked) as a map from path to the paths it needs. */
async function readModulesDep(modulesDir: string): Promise<Map<string, string[]>> {
  const deps = new Map<string, string[]>();
  for (const line of (await Deno.readTextFile(`${modulesDir}/modules.dep`)).split("\n")) {
    const [path, rest] = line.split(":");
    if (path && rest !== undefined) deps.set(path, rest.trim().split(/\s+/).filter(Boolean));
  }
  return deps;
}

/** A module's bytes as insmod wants them: uncompressed. */
async function moduleBytes(path: string): Promise<Uint8Array> {
  const tool = path.endsWith(".xz") ? "xz" : path.endsWith(".zst") ? "zstd" : path.endsWith(".gz") ? "gzip" : "";
  if (!tool) return await Deno.readFile(path);
  const out = await new Deno.Command(tool, { args: ["-dc", path], stdout: "piped", stderr: "piped" }).output();
  if (!out.success) throw new Error(`debian: ${tool} -dc ${path}: ${new TextDecoder().decode(out.stderr).trim()}`);
  return out.stdout;
}

/**
 * Returns a gzip'd newc initramfs for `kernel`, building it first if the
 * cache has none for this kernel, init script and busybox.
 * @param kernel an unpacked Debian kernel from ensureDebianKernel()
 * @returns the initramfs path and the module files in the order /init loads them
 */
export async function ensureDebianInitramfs(
  kernel: DebianKernel,
): Promise<{ initramfs: string; modules: string[] }> {
  const order = loadOrder(await readModulesDep(kernel.modulesDir), DEBIAN_MODULES);
  const init = await Deno.readFile(INIT_URL);
  const bb = await Deno.stat(BUSYBOX);
  const key = await shortHash(
    [kernel.release, kernel.packageVersion, new TextDecoder().decode(init), bb.size, bb.mtime?.getTime(), ...order]
      .join("\0"),
  );
  const path = `${kernel.root}/lguest-initramfs-${key}.cpio.gz`;
  const names = order.map((m) => m.slice(m.lastIndexOf("/") + 1).replace(/\.(xz|zst|gz)$/, ""));
  try {
    await Deno.stat(path);
    return { initramfs: path, modules: names };
  } catch {
    // Not built yet.
  }
  const text = new TextEncoder();
  const entries: CpioEntry[] = ["bin", "dev", "proc", "sys", "tmp", "modules"].map((name) => ({
    name,
    mode: S_IFDIR | 0o755,
  }));
  entries.push({ name: "dev/console", mode: S_IFCHR | 0o600, rdev: [5, 1] });
  entries.push({ name: "bin/busybox", mode: S_IFREG | 0o755, data: await Deno.readFile(BUSYBOX) });
  entries.push({ name: "bin/sh", mode: S_IFLNK | 0o777, data: text.encode("busybox") });
  entries.push({ name: "init", mode: S_IFREG | 0o755, data: init });
  for (const [i, m] of order.entries()) {
    entries.push({
      name: `modules/${names[i]}`,
      mode: S_IFREG | 0o644,
      data: await moduleBytes(`${kernel.modulesDir}/${m}`),
    });
  }
  entries.push({ name: "modules/order", mode: S_IFREG | 0o644, data: text.encode(names.join("\n") + "\n") });
  const tmp = `${path}.${Deno.pid}.tmp`;
  await Deno.writeFile(tmp, await gzip(newc(entries)));
  await Deno.rename(tmp, path);
  return { initramfs: path, modules: names };
}
