/*T:820 The config tests work in a directory of their own with real files
 * in it (a "kernel", an initrd, disks, a directory where a disk should be),
 * because a config's paths are checked against the file system, relative
 * to the config file; nothing outside it is touched, and it is removed
 * whatever happens. :*/

/** A scratch directory with the files config tests point at. */
export interface Fixture extends AsyncDisposable {
  /** The directory (absolute). */
  dir: string;
  /** Writes `text` (or bytes) to `name` in the directory and returns its absolute path. */
  write(name: string, text: string | Uint8Array): Promise<string>;
}

/** Makes the scratch directory: `k` and `k2` (kernels), `i` (initrd), `d.img`, `sub/e.img`, and a directory `dir`. */
export async function fixture(): Promise<Fixture> {
  const dir = await Deno.makeTempDir({ prefix: "lguest-config-test-" });
  const write = async (name: string, text: string | Uint8Array) => {
    const path = `${dir}/${name}`;
    await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    if (typeof text === "string") await Deno.writeTextFile(path, text);
    else await Deno.writeFile(path, text);
    return path;
  };
  for (const name of ["k", "k2", "i", "d.img", "sub/e.img", "x.img"]) await write(name, "not really a kernel\n");
  await Deno.mkdir(`${dir}/dir`);
  return {
    dir,
    write,
    async [Symbol.asyncDispose]() {
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Every key of the file set to something other than its default: the config the round-trip tests start from. */
export const FULL_YAML = `memory: 96
kernel: k
initrd: i
cmdline: [console=ttyS0, "root=/dev/vda", quiet]
cpus: 3
acpi: false
entry: linux64
disks:
  - path: d.img
    readonly: true
  - path: sub/e.img
networks:
  - tunnet: 10.1.2.3
  - tunnet: bridge:br0
  - net: user,hostfwd=tcp:8080-:80
rng: true
verbose: true
timings: true
`;
