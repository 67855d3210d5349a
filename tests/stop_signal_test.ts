// lguest-test-needs: kvm
/*T:225 Stopping a guest must not open a door. Every stop kicks the vCPU
 * thread out of KVM_RUN with a signal (chapter L:410), and the wrong signal
 * made Deno open its unauthenticated debugger on 127.0.0.1:9229. Here the
 * test guest sleeps in `hlt` (echo mode), so only the kick can end KVM_RUN,
 * and it is stopped every way a user or a program can: SIGTERM, SIGINT,
 * three Ctrl-C on stdin, and Machine.stop() through mod.ts. Each stop comes
 * more than a second after start-up, when Deno would already answer a
 * SIGUSR1. The launcher exits right after a stop, so each way is tried
 * twice: the real cli.ts, for its exit status and its output (and its
 * sockets as long as it lives), and the same main() kept alive for 2 s
 * afterwards (T:226), whose sockets are checked from outside while it runs.
 * No run may print Deno's debugger banner or own a listening TCP or UDP
 * socket (T:316). :*/

import assert from "node:assert/strict";
import { buildTestGuest } from "./guest/build.ts";
import { HAVE_KVM } from "./helpers/launcher.ts";
import { assertNotListening, DEBUGGER_BANNER, StreamText, watchNotListening } from "./helpers/exposure.ts";

if (!HAVE_KVM) console.log("stop_signal_test: /dev/kvm cannot be opened here; skipping");

const CLI = new URL("../cli.ts", import.meta.url).pathname;
const PROBE = new URL("./helpers/stop_probe.ts", import.meta.url).pathname;
const BOOT_MS = 120_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A launcher-like process with piped stdio, its output collected. */
interface Child {
  process: Deno.ChildProcess;
  stdin: WritableStreamDefaultWriter<Uint8Array>;
  stdout: StreamText;
  stderr: StreamText;
  /** Waits for exit; closes stdin; returns the status code. */
  finish(): Promise<number>;
}

function spawn(args: string[]): Child {
  const process = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...args],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const killer = setTimeout(() => process.kill("SIGKILL"), BOOT_MS + 60_000);
  const stdin = process.stdin.getWriter();
  const stdout = new StreamText(process.stdout);
  const stderr = new StreamText(process.stderr);
  return {
    process,
    stdin,
    stdout,
    stderr,
    async finish() {
      await stdin.close().catch(() => {});
      const status = await process.status;
      clearTimeout(killer);
      await Promise.all([stdout.done, stderr.done]);
      return status.code;
    },
  };
}

/** The three ways a launcher user stops a guest, and the status each must give. */
const WAYS = [
  { how: "SIGTERM", status: 143, stop: (c: Child) => c.process.kill("SIGTERM") },
  { how: "SIGINT", status: 130, stop: (c: Child) => c.process.kill("SIGINT") },
  {
    how: "three Ctrl-C",
    status: 2,
    async stop(c: Child) {
      for (let i = 0; i < 3; i++) {
        await c.stdin.write(new Uint8Array([0x03]));
        await sleep(50);
      }
    },
  },
] as const;

/** Waits for the echo guest to sleep in hlt, and until Deno would answer SIGUSR1. */
async function guestAsleep(c: Child): Promise<void> {
  await c.stdout.waitFor("ECHO-READY", BOOT_MS).catch((e) => {
    throw new Error(`guest did not reach echo mode (stderr: ${c.stderr.text})`, { cause: e });
  });
  await sleep(1000);
  assertNotListening(c.process.pid, "before the stop");
}

function assertNoBanner(c: Child): void {
  assert.ok(!c.stderr.text.includes(DEBUGGER_BANNER), `stderr: ${c.stderr.text}`);
  assert.ok(!c.stdout.text.includes(DEBUGGER_BANNER), `stdout: ${c.stdout.text}`);
}

/** Checks the sockets of `pid` until it exits; a listening socket seen at any point fails. */
async function watchUntilExit(pid: number, when: string): Promise<void> {
  for (;;) {
    try {
      assertNotListening(pid, when);
    } catch (e) {
      if (e instanceof Error && /has exited/.test(e.message)) return;
      throw e;
    }
    await sleep(20);
  }
}

for (const way of WAYS) {
  Deno.test({
    name: `stop: ${way.how} ends a halted guest with status ${way.status} and no debugger`,
    ignore: !HAVE_KVM,
    async fn() {
      const guest = await buildTestGuest();
      const c = spawn([CLI, "--no-acpi", "64", guest, "lguest.echo"]);
      let status: number;
      try {
        await guestAsleep(c);
        await way.stop(c);
        await watchUntilExit(c.process.pid, `after ${way.how}`);
      } finally {
        status = await c.finish();
      }
      assert.equal(status, way.status, `exit status (stderr: ${c.stderr.text})`);
      assertNoBanner(c);
    },
  });

  Deno.test({
    name: `stop: after ${way.how}, the launcher's main() still running listens on nothing`,
    ignore: !HAVE_KVM,
    async fn() {
      const guest = await buildTestGuest();
      const c = spawn([PROBE, "cli", "--no-acpi", "64", guest, "lguest.echo"]);
      let status: number;
      try {
        await guestAsleep(c);
        await way.stop(c);
        const returned = await c.stdout.waitFor("MAIN-RETURNED ", 30_000);
        assert.equal(Number(returned.split("\n")[0]), way.status, `main() status (stderr: ${c.stderr.text})`);
        await watchNotListening(c.process.pid, `after ${way.how}`, 1200);
      } finally {
        status = await c.finish();
      }
      assert.equal(status, way.status, `exit status (stderr: ${c.stderr.text})`);
      assertNoBanner(c);
    },
  });
}

Deno.test({
  name: "stop: Machine.stop() through mod.ts, then 2 s of life with no listening socket and no debugger",
  ignore: !HAVE_KVM,
  async fn() {
    const guest = await buildTestGuest();
    const c = spawn([PROBE, "machine", guest]);
    let status: number;
    try {
      await guestAsleep(c);
      await c.stdin.write(new TextEncoder().encode("stop\n"));
      const stopped = JSON.parse((await c.stdout.waitFor("STOPPED ", 30_000)).split("\n")[0]!);
      assert.equal(stopped.reason, "stopped", `run() result: ${JSON.stringify(stopped)}`);
      assert.equal(stopped.clean, true);
      await watchNotListening(c.process.pid, "after Machine.stop()", 1200);
    } finally {
      status = await c.finish();
    }
    assert.equal(status, 0, `exit status (stderr: ${c.stderr.text})`);
    assertNoBanner(c);
  },
});
