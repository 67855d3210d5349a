// lguest-test-needs: kvm
/*T:223 stop() and close() are safe at any time, from any state, twice:
 * before run(), while the guest runs (close() then stops it first and
 * run() resolves), after run(), after a failed run(), and stop() after
 * close(), which used to write into an unmapped kvm_run page. `await
 * using` closes the machine at the end of its block. Each scenario runs in
 * its own process (T:224) that never calls Deno.exit: it must end by
 * itself within 2 s of its last line, no descriptor may be open that was
 * not open before the machine was built, and nothing may crash. :*/

import assert from "node:assert/strict";
import { buildTestGuest } from "./guest/build.ts";
import { HAVE_KVM } from "./helpers/launcher.ts";
import { StreamText } from "./helpers/exposure.ts";
import { leftOpen } from "./helpers/failed_create.ts";

if (!HAVE_KVM) console.log("machine_lifecycle_test: /dev/kvm cannot be opened here; skipping");

const PROBE = new URL("./helpers/lifecycle_probe.ts", import.meta.url).pathname;
const BOOT_MS = 120_000;
const EXIT_WITHIN_MS = 2000;

async function scenario(name: string, needsGuest: boolean): Promise<{ stdout: string; stderr: string }> {
  const guest = await buildTestGuest();
  const dir = await Deno.makeTempDir();
  await Deno.writeFile(`${dir}/disk.img`, new Uint8Array(1024 * 1024));
  try {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", PROBE, name, guest, `${dir}/disk.img`],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const killer = setTimeout(() => child.kill("SIGKILL"), BOOT_MS + 60_000);
    const stdout = new StreamText(child.stdout);
    const stderr = new StreamText(child.stderr);
    const stdin = child.stdin.getWriter();
    if (needsGuest) {
      await stdout.waitFor("ECHO-READY", BOOT_MS).catch((e) => {
        throw new Error(`guest did not reach echo mode (stderr: ${stderr.text})`, { cause: e });
      });
      await new Promise((r) => setTimeout(r, 500)); // asleep in hlt
      await stdin.write(new TextEncoder().encode("go\n"));
    }
    const status = await child.status;
    const exitedAt = Date.now();
    clearTimeout(killer);
    await stdin.close().catch(() => {});
    await Promise.all([stdout.done, stderr.done]);
    const context = `${name}\nstdout:\n${stdout.text}\nstderr:\n${stderr.text}`;
    assert.equal(status.code, 0, context);
    assert.equal(status.signal, null, context);
    const field = (key: string) => new RegExp(`^${key} (.*)$`, "m").exec(stdout.text)?.[1];
    const left = leftOpen(field("FDS-BEFORE") ?? "", field("FDS-AFTER") ?? "");
    assert.deepEqual(left, [], `${name}: left open after close(): ${left.join(" ")}\n${context}`);
    const linger = exitedAt - Number(field("DONE-AT"));
    assert.ok(linger < EXIT_WITHIN_MS, `${name}: the process lived ${linger} ms after close()\n${context}`);
    assert.doesNotMatch(stderr.text, /did not leave KVM_RUN|error/i, context);
    return { stdout: stdout.text, stderr: stderr.text };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name: "machine: stop() and close() before run(), twice, and stop() after close()",
  ignore: !HAVE_KVM,
  async fn() {
    const { stdout } = await scenario("before-run", false);
    assert.match(stdout, /^STEP close-same true$/m);
    assert.match(stdout, /^STEP stopped after close$/m);
    assert.match(stdout, /^STEP run after close rejected: machine already ran or was closed$/m);
  },
});

Deno.test({
  name: "machine: close() while the guest runs stops it first; run() resolves; stop() after close()",
  ignore: !HAVE_KVM,
  async fn() {
    const { stdout } = await scenario("during-run", true);
    assert.match(stdout, /^STEP run ended \{"clean":true,"reason":"stopped"/m);
    assert.match(stdout, /^STEP stopped after close$/m);
  },
});

Deno.test({
  name: "machine: stop(), close() twice and stop() again after a run",
  ignore: !HAVE_KVM,
  async fn() {
    const { stdout } = await scenario("after-run", true);
    assert.match(stdout, /^STEP run ended \{"clean":true,"reason":"stopped"/m);
    assert.match(stdout, /^STEP stopped after close$/m);
  },
});

Deno.test({
  name: "machine: stop() and close() after a failed run()",
  ignore: !HAVE_KVM,
  async fn() {
    const { stdout } = await scenario("failed-run", false);
    assert.match(stdout, /^STEP run failed: /m);
    assert.match(stdout, /^STEP stopped after close$/m);
  },
});

Deno.test({
  name: "machine: await using closes the machine at the end of its block",
  ignore: !HAVE_KVM,
  async fn() {
    const { stdout } = await scenario("await-using", true);
    assert.match(stdout, /^STEP run ended \{"clean":true,"reason":"stopped"/m);
    assert.match(stdout, /^STEP disposed$/m);
  },
});
