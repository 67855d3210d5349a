// lguest-test-needs: kvm
/*T:535 virtio-blk end to end on the real /dev/kvm: a real image file with a
 * known pattern, the launcher run as a user runs it (--block=<file>), and
 * the test guest's driver reading, writing and flushing through it. What
 * the guest read must be what the file holds; what it wrote must be in the
 * file afterwards, and nothing else may change. The same with ,ro, where
 * every write must come back as an I/O error and the file stays as it was.
 *
 * Then the launcher is killed with SIGKILL the moment the guest reports its
 * flush complete. Nothing gets a chance to clean up, and still every byte
 * the guest wrote must be in the file: the device gave its writes to the
 * kernel before answering them, and kept nothing to write at exit. That is
 * all it shows. The kernel's page cache outlives the process, so the file
 * would read the same had the flush never reached the disk; whether it did
 * is checked from a system-call trace (virtio_blk_durability_test.ts). :*/

import assert from "node:assert/strict";
import { buildTestGuest } from "./guest/build.ts";
import { fnv1a, guestReport, HAVE_KVM, runLauncher } from "./helpers/launcher.ts";
import { diskPattern } from "./virtio/blk/harness.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const SECTORS = 64;
const WRITE_SECTOR = 7;
const WRITES = 4;

/** Makes a temporary image of SECTORS sectors filled with diskPattern. */
function makeImage(dir: string, name: string): { path: string; bytes: Uint8Array } {
  const bytes = new Uint8Array(SECTORS * 512);
  for (let i = 0; i < bytes.length; i++) bytes[i] = diskPattern(i);
  const path = `${dir}/${name}`;
  Deno.writeFileSync(path, bytes);
  return { path, bytes };
}

/** What the guest writes to sectors 7..10 (the formula in dev_blk.c). */
function guestWrites(): Uint8Array {
  const out = new Uint8Array(WRITES * 512);
  for (let k = 0; k < WRITES; k++) {
    for (let i = 0; i < 512; i++) out[k * 512 + i] = (i * 5 + (WRITE_SECTOR + k) * 17 + 0xa7) & 0xff;
  }
  return out;
}

const hex = (n: number) => `0x${n.toString(16)}`;
const sectors = (b: Uint8Array, first: number, count: number) => b.subarray(first * 512, (first + count) * 512);
const toHex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

/** Checks one disk's report lines (index `i` of each key) against its image. */
function checkReads(r: Map<string, string[]>, i: number, image: Uint8Array, path: string): void {
  const get = (key: string) => r.get(key)?.[i];
  assert.equal(get("BLK-INIT"), "0");
  assert.equal(get("BLK-CAPACITY"), String(SECTORS));
  assert.equal(get("BLK-SEG-MAX"), "254");
  assert.equal(get("BLK-SIZE"), "512");
  const ino = Deno.statSync(path).ino!.toString(16);
  const name = path.split("/").pop()!;
  assert.equal(get("BLK-ID"), `0 ${name.slice(0, 20 - ino.length - 1)}-${ino}`);
  assert.equal(get("BLK-READ"), `0 ${hex(fnv1a(sectors(image, 0, 1)))} ${toHex(image.subarray(0, 16))}`);
  assert.equal(get("BLK-READ2"), `0 ${hex(fnv1a(sectors(image, 5, 2)))}`);
  assert.equal(get("BLK-MULTI"), `4 ${hex(fnv1a(sectors(image, 1, 4)))}`);
}

async function withDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = Deno.makeTempDirSync({ prefix: "lguest-blk-e2e-" });
  try {
    await body(dir);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

Deno.test({
  name: "virtio-blk: the guest reads the image, its writes and flush reach the file; ,ro refuses writes",
  ignore: !HAVE_KVM,
  async fn() {
    const guest = await buildTestGuest();
    await withDir(async (dir) => {
      const rw = makeImage(dir, "rw.img");
      const ro = makeImage(dir, "ro.img");
      const run = await runLauncher(["--no-acpi", `--block=${rw.path}`, `--block=${ro.path},ro`, "64", guest]);
      assert.equal(run.code, 0, run.stderr);
      const r = guestReport(run.stdout);
      const cmdline = r.get("CMDLINE")?.[0] ?? "";
      assert.match(cmdline, /^virtio_mmio\.device=4K@0xd0000000:5 virtio_mmio\.device=4K@0xd0001000:6( |$)/);
      assert.ok(Number(r.get("VIRTIO-COUNT")?.[0]) >= 2, "both disks found, in command-line order");
      assert.match(run.stdout, /^DONE$/m);

      checkReads(r, 0, rw.bytes, rw.path);
      const features = r.get("BLK-FEATURES")!.map((f) => Number(f));
      assert.equal(features[0]! & (1 << 5), 0, "no RO on the first disk");
      assert.notEqual(features[1]! & (1 << 5), 0, "RO on the second");
      for (const bitNo of [2, 6, 9]) assert.notEqual(features[0]! & (1 << bitNo), 0, `feature ${bitNo}`);
      const written = guestWrites();
      assert.deepEqual(r.get("BLK-WRITE"), ["0 0 0 0", "1 1 1 1"]);
      assert.deepEqual(r.get("BLK-FLUSH"), ["0", "0"]);
      assert.deepEqual(r.get("BLK-FLUSHED"), [hex(fnv1a(written)), hex(fnv1a(written))]);
      assert.deepEqual(r.get("BLK-READBACK"), ["0 1", "0 0"]);
      assert.deepEqual(r.get("BLK-OOR"), ["1", "1"]);
      assert.deepEqual(r.get("BLK-UNSUPP"), ["2", "2"]);
      for (const irqs of r.get("BLK-IRQS")!) assert.ok(Number(irqs) >= 1);

      const expect = rw.bytes.slice();
      expect.set(written, WRITE_SECTOR * 512);
      const after = Deno.readFileSync(rw.path);
      assert.equal(after.length, rw.bytes.length, "the file did not grow");
      assert.equal(fnv1a(after), fnv1a(expect), "the file holds exactly what the guest wrote");
      assert.deepEqual(after, expect);

      checkReads(r, 1, ro.bytes, ro.path);
      assert.deepEqual(Deno.readFileSync(ro.path), ro.bytes, "the read-only image is unchanged");
    });
  },
});

Deno.test({
  name: "virtio-blk: killed (SIGKILL) after the guest's flush, the launcher held back none of its writes from the file",
  ignore: !HAVE_KVM,
  async fn() {
    const guest = await buildTestGuest();
    await withDir(async (dir) => {
      const img = makeImage(dir, "kill.img");
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", `${ROOT}cli.ts`, "--no-acpi", `--block=${img.path}`, "64", guest, "blk.hold"],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        env: {},
      }).spawn();
      const guard = setTimeout(() => child.kill("SIGKILL"), 60_000);
      const dec = new TextDecoder();
      let out = "";
      let flushed = false;
      for await (const chunk of child.stdout) {
        out += dec.decode(chunk, { stream: true });
        if (/^BLK-FLUSHED: /m.test(out)) {
          child.kill("SIGKILL");
          flushed = true;
          break;
        }
      }
      clearTimeout(guard);
      const status = await child.status;
      await child.stderr.cancel();
      assert.ok(flushed, `the guest never reported its flush:\n${out}`);
      assert.equal(status.signal, "SIGKILL", "the launcher died by SIGKILL, not by finishing");
      const r = guestReport(out);
      assert.deepEqual(r.get("BLK-WRITE"), ["0 0 0 0"]);
      assert.deepEqual(r.get("BLK-FLUSH"), ["0"]);
      const after = Deno.readFileSync(img.path);
      const expect = img.bytes.slice();
      expect.set(guestWrites(), WRITE_SECTOR * 512);
      assert.equal(fnv1a(after), fnv1a(expect));
      assert.deepEqual(after, expect);
    });
  },
});

Deno.test({
  name: "virtio-blk: a directory as --block is refused with one line naming it, exit status 1",
  ignore: !HAVE_KVM,
  async fn() {
    const guest = await buildTestGuest();
    await withDir(async (dir) => {
      const run = await runLauncher([`--block=${dir}`, "64", guest]);
      assert.equal(run.code, 1);
      assert.equal(run.stdout, "");
      const lines = run.stderr.trimEnd().split("\n");
      assert.equal(lines.length, 1, run.stderr);
      assert.ok(lines[0]!.includes(dir), run.stderr);
    });
  },
});
