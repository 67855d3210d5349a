// lguest-test-needs: kvm
/*T:053 The bundle (T:051) boots guests. Built into a temporary directory,
 * dist/lguest runs with a cleared environment and an empty DENO_DIR, so
 * every module it loads comes from the bundle files: the main thread's,
 * the vCPU Worker's, and with a --block disk the queue thread's. First the
 * demo (scripts/demo.ts's guest, initrd and command line): the guest must
 * see the initrd byte for byte, drive hvc0, print DONE and reset, status 0,
 * with nothing on stderr. Then a disk: what the guest reads must be the
 * image's first sector and its flush must succeed, which only a running
 * queue thread can do. Then a network card on a tap in a namespace: the
 * guest's ping answered, which only a running data-path thread can do. :*/

import assert from "node:assert/strict";
import { bareOptions } from "./helpers/bare_env.ts";
import { buildTestGuest } from "./guest/build.ts";
import { fnv1a, guestReport, HAVE_KVM } from "./helpers/launcher.ts";
import { bundle } from "../scripts/bundle.ts";
import { NetNs, netnsProblem } from "./virtio/net/netns.ts";

if (!HAVE_KVM) console.log("bundle_test: /dev/kvm cannot be opened here; skipping");

const TIMEOUT_MS = 180_000;
const netProblem = HAVE_KVM ? await netnsProblem() : "/dev/kvm cannot be opened";

/** Runs the bundled launcher as a host with only deno would: no inherited environment, an empty DENO_DIR. */
async function runBundled(launcher: string, dir: string, args: string[]) {
  const child = new Deno.Command(launcher, {
    args,
    ...(await bareOptions(dir)),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), TIMEOUT_MS);
  const out = await child.output();
  clearTimeout(timer);
  const dec = new TextDecoder();
  const run = { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
  return { ...run, context: `status ${run.code}\nstdout:\n${run.stdout}\nstderr:\n${run.stderr}` };
}

const hex = (n: number) => `0x${n.toString(16)}`;
const toHex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

Deno.test({
  name: "bundle: dist/lguest boots the demo guest, a disk and a network card through the bundled threads",
  ignore: !HAVE_KVM,
  async fn(t) {
    const guest = await buildTestGuest();
    const dir = await Deno.makeTempDir({ prefix: "lguest-bundle-kvm-" });
    try {
      const launcher = await bundle(`${dir}/dist`);

      await t.step("the demo: initrd, consoles, DONE, status 0", async () => {
        const initrd = new TextEncoder().encode("Hello from the lguest demo initrd!\n".repeat(32));
        await Deno.writeFile(`${dir}/initrd`, initrd);
        const r = await runBundled(launcher, dir, [
          "--no-acpi",
          `--initrd=${dir}/initrd`,
          "64",
          guest,
          "demo",
          "console=ttyS0",
        ]);
        assert.equal(r.code, 0, r.context);
        const report = guestReport(r.stdout);
        assert.match(report.get("CMDLINE")?.[0] ?? "", /^demo console=ttyS0 virtio_mmio\.device=/, r.context);
        const [addr, size, sum] = (report.get("INITRD")?.[0] ?? "").split(" ");
        assert.ok(Number(addr) > 0, r.context);
        assert.equal(Number(size), initrd.length, r.context);
        assert.equal(Number(sum), fnv1a(initrd), r.context);
        assert.deepEqual(report.get("HVC-OUT"), ["hello from hvc0"], r.context);
        assert.match(r.stdout, /^DONE$/m, r.context);
        assert.equal(r.stderr, "", r.context);
      });

      await t.step("--block: the guest reads the image and flushes", async () => {
        const image = new Uint8Array(64 * 512);
        image.set(new TextEncoder().encode("hello, disk"));
        await Deno.writeFile(`${dir}/disk.img`, image);
        const r = await runBundled(launcher, dir, ["--no-acpi", `--block=${dir}/disk.img`, "64", guest]);
        assert.equal(r.code, 0, r.context);
        const report = guestReport(r.stdout);
        assert.deepEqual(report.get("BLK-INIT"), ["0"], r.context);
        assert.deepEqual(report.get("BLK-CAPACITY"), ["64"], r.context);
        assert.deepEqual(
          report.get("BLK-READ"),
          [`0 ${hex(fnv1a(image.subarray(0, 512)))} ${toHex(image.subarray(0, 16))}`],
          r.context,
        );
        assert.deepEqual(report.get("BLK-FLUSH"), ["0"], r.context);
        assert.match(r.stdout, /^DONE$/m, r.context);
        assert.equal(r.stderr, "", r.context);
      });

      await t.step({
        name: "--tunnet: the guest's ARP and ping are answered through the bundled data-path thread",
        ignore: netProblem !== undefined,
        fn: async () => {
          await NetNs.use(async (ns) => {
            const r = await runBundled("/usr/sbin/ip", dir, [
              ...["netns", "exec", ns.name, launcher],
              ...["--no-acpi", "--tunnet=10.7.5.1", "64", guest, "lguest.ip=10.7.5.2", "lguest.peer=10.7.5.1"],
            ]);
            assert.equal(r.code, 0, r.context);
            const report = guestReport(r.stdout);
            assert.deepEqual(report.get("NET-INIT"), ["0"], r.context);
            assert.deepEqual(report.get("NET-PING"), ["ok 10.7.5.1"], r.context);
          });
        },
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
