/*T:747 The PVH structs against their C header, with gcc, the way
 * tests/kvm/layout_test.ts checks KVM's (T:110, T:111). The header is Xen's
 * public start_info.h as Linux carries it (include/xen/interface/hvm/), which
 * no Debian -dev package installs; it comes from the Linux source the
 * project already uses: the tree scripts/linux.ts unpacked into the cache if
 * there is one, else just this one file taken out of Debian's
 * linux-source-6.1 tarball (about 15 s of xz). Without gcc or the tarball the
 * test is skipped, loudly. :*/

import assert from "node:assert/strict";
import { HVM_START_MAGIC, PVH_LAYOUTS, XEN_HVM_MEMMAP_TYPE } from "../../lib/boot/pvh.ts";
import { cacheRoot } from "../../scripts/cache.ts";
import { type Check, hasGcc, layoutChecks, macroChecks, runProbe } from "../kvm/layout_probe.ts";

const TARBALL = "/usr/src/linux-source-6.1.tar.xz";
const MEMBER = "linux-source-6.1/include/xen/interface/hvm/start_info.h";

function exists(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/** The header from an unpacked tree in the cache, or extracted into `scratch`; undefined if neither is possible. */
async function findHeader(scratch: string): Promise<string | undefined> {
  try {
    for await (const e of Deno.readDir(cacheRoot())) {
      const path = `${cacheRoot()}/${e.name}/${MEMBER}`;
      if (e.isDirectory && /^src-[0-9a-f]+$/.test(e.name) && exists(path)) return path;
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  if (!exists(TARBALL)) return undefined;
  const tar = await new Deno.Command("tar", { args: ["-xJf", TARBALL, "-C", scratch, MEMBER], stderr: "piped" })
    .output();
  assert.ok(tar.success, `tar could not extract ${MEMBER}: ${new TextDecoder().decode(tar.stderr)}`);
  return `${scratch}/${MEMBER}`;
}

const gcc = await hasGcc();

Deno.test({
  name: "pvh layout: hvm_start_info, hvm_modlist_entry, hvm_memmap_table_entry and the constants match start_info.h",
  ignore: !gcc,
  async fn() {
    const scratch = await Deno.makeTempDir({ prefix: "lguest-pvh-header-" });
    try {
      const header = await findHeader(scratch);
      if (header === undefined) {
        console.warn(`pvh layout: neither an unpacked Linux tree nor ${TARBALL}: skipping the C layout check`);
        return;
      }
      const checks: Check[] = [
        ...PVH_LAYOUTS.flatMap(layoutChecks),
        ...macroChecks("XEN_HVM_MEMMAP_TYPE_", XEN_HVM_MEMMAP_TYPE),
        { name: "XEN_HVM_START_MAGIC_VALUE", expected: HVM_START_MAGIC, expr: "XEN_HVM_START_MAGIC_VALUE" },
      ];
      const { problems, compared } = await runProbe(["stdint.h", header], checks);
      assert.deepEqual(problems, [], `PVH layouts differ from ${header}:\n  ${problems.join("\n  ")}`);
      assert.equal(compared, checks.length);
      assert.ok(compared >= 3 + 10 + 4 + 4 + 7, `only ${compared} checks`);
    } finally {
      await Deno.remove(scratch, { recursive: true });
    }
  },
});

if (!gcc) console.warn("pvh_layout_test: gcc is not on PATH; the PVH layouts are not checked against C");
