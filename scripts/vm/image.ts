/*T:061 What the test VM boots: Debian's own kernel (`linux-image-amd64`,
 * whatever version the package installed) and a small initramfs we make
 * from it. The initramfs holds a static busybox, our init script and the
 * handful of modules the VM needs, copied from that kernel's module tree in
 * the order modules.dep gives: virtio-pci and virtio-console to see QEMU's
 * devices, 9p and overlay to mount the host's root, and kvm, kvm_amd, tun,
 * bridge and veth for the tests. It is built once per kernel and init script
 * and kept in lguest's cache. :*/

import { linuxCacheDir } from "../linux.ts";
import { ensurePackages } from "../packages.ts";
import { shortHash } from "../../tests/guest/build.ts";

/** Debian packages the test VM needs on the host. */
export const VM_PACKAGES = ["qemu-system-x86", "linux-image-amd64", "busybox-static", "cpio", "gzip"] as const;

/** The modules the VM's init loads, by name; their dependencies come along. */
export const VM_MODULES = [
  "virtio_pci",
  "virtio_console",
  "9pnet_virtio",
  "9p",
  "overlay",
  "kvm_amd",
  "tun",
  "bridge",
  "veth",
] as const;

/** A kernel and initramfs ready to boot. */
export interface VmImage {
  kernel: string;
  initramfs: string;
  release: string;
}

const HERE = new URL(".", import.meta.url).pathname;

/** The newest `/boot/vmlinuz-*` whose module tree has every module we need. */
async function findKernel(): Promise<{ kernel: string; release: string; deps: Map<string, string[]> }> {
  const releases: string[] = [];
  for await (const e of Deno.readDir("/boot")) {
    const m = /^vmlinuz-(.+)$/.exec(e.name);
    if (m) releases.push(m[1]!);
  }
  releases.sort((a, b) => b.localeCompare(a, undefined, { numeric: true }));
  const problems: string[] = [];
  for (const release of releases) {
    const deps = await readModulesDep(release).catch(() => undefined);
    if (!deps) {
      problems.push(`${release}: no modules.dep`);
      continue;
    }
    const missing = VM_MODULES.filter((m) => !findModule(deps, m));
    if (missing.length) {
      problems.push(`${release}: lacks ${missing.join(", ")}`);
      continue;
    }
    return { kernel: `/boot/vmlinuz-${release}`, release, deps };
  }
  throw new Error(`vm: no usable kernel in /boot (${problems.join("; ") || "none installed"})`);
}

/** modules.dep as a map from relative path to the relative paths it needs. */
async function readModulesDep(release: string): Promise<Map<string, string[]>> {
  const text = await Deno.readTextFile(`/lib/modules/${release}/modules.dep`);
  const deps = new Map<string, string[]>();
  for (const line of text.split("\n")) {
    const [path, rest] = line.split(":");
    if (!path || rest === undefined) continue;
    deps.set(path, rest.trim().split(/\s+/).filter(Boolean));
  }
  return deps;
}

/** The module file for a name (`kvm_amd` is `kvm-amd.ko`: dashes and underscores are one). */
function findModule(deps: Map<string, string[]>, name: string): string | undefined {
  const want = name.replaceAll("-", "_");
  for (const path of deps.keys()) {
    const base = path.slice(path.lastIndexOf("/") + 1).replace(/\.ko(\.[a-z]+)?$/, "");
    if (base.replaceAll("-", "_") === want) return path;
  }
  return undefined;
}

/** Every module `names` need, dependencies before their users. */
export function loadOrder(deps: Map<string, string[]>, names: readonly string[]): string[] {
  const order: string[] = [];
  const seen = new Set<string>();
  const visit = (path: string) => {
    if (seen.has(path)) return;
    seen.add(path);
    for (const d of deps.get(path) ?? []) visit(d);
    order.push(path);
  };
  for (const n of names) {
    const path = findModule(deps, n);
    if (!path) throw new Error(`vm: module ${n} not found`);
    visit(path);
  }
  return order;
}

async function sh(cmd: string[], cwd = "/"): Promise<void> {
  const out = await new Deno.Command(cmd[0]!, { args: cmd.slice(1), cwd, stdout: "null", stderr: "piped" }).output();
  if (!out.success) throw new Error(`vm: ${cmd.join(" ")} failed: ${new TextDecoder().decode(out.stderr).trim()}`);
}

/**
 * Returns the VM's kernel and initramfs, installing the packages and
 * building the initramfs first when needed.
 */
export async function ensureVmImage(log: (line: string) => void = () => {}): Promise<VmImage> {
  const missing = await ensurePackages(VM_PACKAGES);
  if (missing.length) throw new Error(`vm: missing packages: ${missing.join(" ")}`);
  const { kernel, release, deps } = await findKernel();
  const modules = loadOrder(deps, VM_MODULES);
  const init = await Deno.readTextFile(`${HERE}init`);
  const key = await shortHash([release, init, ...modules].join("\0"));
  const dir = `${linuxCacheDir()}/vm-${key}`;
  const initramfs = `${dir}/initramfs.cpio.gz`;
  try {
    await Deno.stat(initramfs);
    return { kernel, initramfs, release };
  } catch {
    // Not built yet.
  }
  log(`building the test VM's initramfs for ${release}`);
  await Deno.mkdir(dir, { recursive: true });
  const tree = await Deno.makeTempDir({ dir, prefix: "tree-" });
  try {
    for (const d of ["bin", "dev", "proc", "sys", "modules", "lower", "upper", "newroot"]) {
      await Deno.mkdir(`${tree}/${d}`);
    }
    await Deno.copyFile("/bin/busybox", `${tree}/bin/busybox`);
    await Deno.chmod(`${tree}/bin/busybox`, 0o755);
    await Deno.symlink("busybox", `${tree}/bin/sh`);
    await Deno.writeTextFile(`${tree}/init`, init, { mode: 0o755 });
    const names: string[] = [];
    for (const m of modules) {
      const name = m.slice(m.lastIndexOf("/") + 1);
      if (name.endsWith(".xz")) {
        await sh(["sh", "-c", `xz -dc '/lib/modules/${release}/${m}' > '${tree}/modules/${name.slice(0, -3)}'`]);
        names.push(name.slice(0, -3));
      } else {
        await Deno.copyFile(`/lib/modules/${release}/${m}`, `${tree}/modules/${name}`);
        names.push(name);
      }
    }
    await Deno.writeTextFile(`${tree}/modules/order`, names.join("\n") + "\n");
    const tmp = `${initramfs}.${Deno.pid}.tmp`;
    await sh(["sh", "-c", `find . | cpio -o -H newc --quiet | gzip -1 > '${tmp}'`], tree);
    await Deno.rename(tmp, initramfs);
  } finally {
    await Deno.remove(tree, { recursive: true });
  }
  return { kernel, initramfs, release };
}
