/*L:907 The initramfs is written here rather than with cpio(1) so that it
 * needs no staging directory and no root: /dev/console must be a character
 * device node in the archive (the kernel opens it for PID 1's stdio before
 * /init can mount devtmpfs), and only root may mknod. The newc format is
 * simple: per entry a 110-byte ASCII header of hex fields, the NUL-ended
 * name, the data, each padded to 4 bytes; a "TRAILER!!!" entry ends it.
 * Timestamps are zero, so the same inputs give the same bytes. :*/
/** One file, directory, symlink or device node of a newc archive. */
export interface CpioEntry {
  name: string;
  mode: number;
  data?: Uint8Array;
  rdev?: [number, number];
}

/** File type bits of a cpio entry's mode, as in stat(2). */
export const S_IFDIR = 0o040000;
/** Regular file. */
export const S_IFREG = 0o100000;
/** Symbolic link (the data is the target). */
export const S_IFLNK = 0o120000;
/** Character device (rdev gives major, minor). */
export const S_IFCHR = 0o020000;

/** The entries as one newc cpio archive, ending with its TRAILER!!! entry. */
export function newc(entries: CpioEntry[]): Uint8Array {
  const text = new TextEncoder();
  const parts: Uint8Array[] = [];
  let size = 0;
  const push = (b: Uint8Array) => {
    parts.push(b);
    size += b.length;
    const pad = (4 - (size % 4)) % 4;
    if (pad) {
      parts.push(new Uint8Array(pad));
      size += pad;
    }
  };
  const hex = (n: number) => n.toString(16).padStart(8, "0");
  const all = [...entries, { name: "TRAILER!!!", mode: 0 }];
  all.forEach((e: CpioEntry, i) => {
    const data = e.data ?? new Uint8Array(0);
    const name = text.encode(`${e.name}\0`);
    const fields = [
      e.name === "TRAILER!!!" ? 0 : i + 1, // ino
      e.mode,
      0, // uid
      0, // gid
      (e.mode & S_IFDIR) === S_IFDIR ? 2 : 1, // nlink
      0, // mtime
      data.length,
      0, // devmajor
      0, // devminor
      e.rdev?.[0] ?? 0,
      e.rdev?.[1] ?? 0,
      name.length,
      0, // check
    ];
    // The header is 110 bytes, so header + name is padded as one unit.
    const head = text.encode(`070701${fields.map(hex).join("")}`);
    const hn = new Uint8Array(head.length + name.length);
    hn.set(head);
    hn.set(name, head.length);
    push(hn);
    if (data.length) push(data);
  });
  const out = new Uint8Array(size);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** gzip-compresses bytes (the kernel unpacks a gzip'd initramfs). */
export async function gzip(data: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([data as Uint8Array<ArrayBuffer>]).stream()
    .pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}
