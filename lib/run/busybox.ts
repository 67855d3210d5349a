/*L:445 The one-shot runner's userspace is busybox: one static binary
 * that is every command a shell script needs, so an initramfs of a few
 * files boots any kernel with a serial console. Static matters: the
 * initramfs has no C library, so a busybox with a program interpreter
 * (PT_INTERP, the dynamic loader) would fail to start as /init. Debian's
 * busybox-static is one; its plain busybox package is not. :*/

/** Where Debian's busybox-static installs it. */
export const BUSYBOX = "/bin/busybox";

/** True for an ELF64 file without a PT_INTERP program header. */
export function isStaticElf(path: string): boolean {
  let f: Deno.FsFile | undefined;
  try {
    f = Deno.openSync(path);
    const buf = new Uint8Array(64 * 1024);
    const n = f.readSync(buf) ?? 0;
    const v = new DataView(buf.buffer, 0, n);
    if (n < 64 || v.getUint32(0) !== 0x7f454c46 || buf[4] !== 2) return false;
    const phoff = Number(v.getBigUint64(32, true));
    const phentsize = v.getUint16(54, true);
    const phnum = v.getUint16(56, true);
    for (let i = 0; i < phnum; i++) {
      const at = phoff + i * phentsize;
      if (at + 4 > n) return false;
      if (v.getUint32(at, true) === 3) return false; // PT_INTERP
    }
    return true;
  } catch {
    return false;
  } finally {
    f?.close();
  }
}

/**
 * The static busybox to put in an initramfs.
 * @param path where to look (default {@link BUSYBOX})
 * @returns its bytes
 * @throws Error with the package to install when it is missing or not static
 */
export async function readStaticBusybox(path: string = BUSYBOX): Promise<Uint8Array> {
  if (!isStaticElf(path)) {
    throw new Error(`${path} is missing or not a static binary: install Debian's busybox-static`);
  }
  return await Deno.readFile(path);
}
