// lguest-test-needs: kvm
/*T:474 --net=user end to end: the real launcher on /dev/kvm, in a
 * namespace of the test's own with an address and a default route
 * (T:468), and passt behind the card. The test guest asks for passt's
 * gateway by ARP from the address passt gives it, then pings it; passt
 * answers the ARP itself and carries the echo through an ICMP socket to
 * the gateway, a local address in the namespace (T:468). Then the process checks: passt is gone
 * once the guest has stopped, and gone after the launcher was stopped with
 * SIGINT while the guest still ran. PATH leads to a wrapper that writes
 * passt's pid and execs it, so the test knows which process to look for.
 * passt always makes a user namespace for itself; where that is refused
 * (a chrooted process may not make one, which is why the test VM runs its
 * jobs in a mount namespace whose root is theirs) the test is skipped with
 * that reason. :*/

import assert from "node:assert/strict";
import { buildTestGuest } from "../../guest/build.ts";
import { StreamText } from "../../helpers/exposure.ts";
import { guestReport, HAVE_KVM } from "../../helpers/launcher.ts";
import type { NetNs } from "./netns.ts";
import { netnsProblem } from "./netns.ts";
import { allowPing, gone, PASST_NET, passtIn, passtProblem, routableNetNs } from "./passt_rig.ts";

const CLI = new URL("../../../cli.ts", import.meta.url).pathname;
const problem = HAVE_KVM ? (await netnsProblem()) ?? (await passtProblem()) : "/dev/kvm cannot be opened";
if (problem !== undefined) console.warn(`passt_kvm_test: skipped: ${problem}`);

const IP = PASST_NET.ip.join(".");
const GATEWAY = PASST_NET.gateway.join(".");

/** A namespace for passt, where ICMP sockets are open to every group, and a PATH wrapper recording passt's pids. */
async function setUp(): Promise<{ ns: NetNs; dir: string; env: Record<string, string> }> {
  const ns = await routableNetNs();
  await allowPing(ns);
  const dir = await Deno.makeTempDir({ prefix: "lguest-passt-kvm-" });
  const real = new TextDecoder().decode(
    (await new Deno.Command("sh", { args: ["-c", "command -v passt"] }).output()).stdout,
  )
    .trim();
  await Deno.writeTextFile(`${dir}/passt`, `#!/bin/sh\necho $$ >> ${dir}/pids\nexec ${real} "$@"\n`, { mode: 0o755 });
  return { ns, dir, env: { PATH: `${dir}:${Deno.env.get("PATH")}` } };
}

async function pids(dir: string): Promise<number[]> {
  return (await Deno.readTextFile(`${dir}/pids`)).trim().split("\n").map(Number);
}

function spawn(ns: NetNs, env: Record<string, string>, guestArgs: string[], guest: string): Deno.ChildProcess {
  return new Deno.Command("ip", {
    args: [
      "netns",
      "exec",
      ns.name,
      Deno.execPath(),
      "run",
      "-A",
      CLI,
      "--no-acpi",
      "--net=user",
      "64",
      guest,
      ...guestArgs,
    ],
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

Deno.test({
  name: "--net=user: the guest's ARP and ping are answered through passt, and passt is gone after the run",
  ignore: problem !== undefined,
  async fn() {
    const guest = await buildTestGuest();
    const { ns, dir, env } = await setUp();
    try {
      const child = spawn(ns, env, [`lguest.ip=${IP}`, `lguest.peer=${GATEWAY}`], guest);
      const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
      const out = await child.output();
      clearTimeout(timer);
      const dec = new TextDecoder();
      const stderr = dec.decode(out.stderr);
      assert.equal(out.code, 0, stderr);
      const r = guestReport(dec.decode(out.stdout));
      assert.deepEqual(r.get("NET-INIT"), ["0"]);
      assert.deepEqual(r.get("NET-STATUS"), ["1"]);
      const [kind, ip] = (r.get("NET-RX") ?? [""])[0]!.split(" ");
      assert.deepEqual([kind, ip], ["arp-reply", GATEWAY], "passt answered the ARP for its gateway");
      assert.deepEqual(r.get("NET-PING"), [`ok ${GATEWAY}`], "the echo went through passt and back");
      const [pid] = await pids(dir);
      assert.ok(await gone(pid!), `passt ${pid} outlived the run`);
      assert.deepEqual(passtIn(ns), []);
    } finally {
      await ns.delete();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "--net=user: after SIGINT (Ctrl-C) to the launcher, passt is gone",
  ignore: problem !== undefined,
  async fn() {
    const guest = await buildTestGuest();
    const { ns, dir, env } = await setUp();
    try {
      const child = spawn(ns, env, [`lguest.ip=${IP}`, `lguest.peer=${GATEWAY}`, "lguest.echo"], guest);
      const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
      const stdout = new StreamText(child.stdout);
      const stderr = new StreamText(child.stderr);
      await stdout.waitFor("ECHO-READY", 90_000);
      const [pid] = await pids(dir);
      assert.deepEqual(passtIn(ns), [pid], "passt runs while the guest does");
      child.kill("SIGINT");
      const status = await child.status;
      clearTimeout(timer);
      await Promise.all([stdout.done, stderr.done]);
      assert.equal(status.code, 130, stderr.text);
      assert.ok(await gone(pid!), `passt ${pid} outlived the stopped launcher`);
      assert.deepEqual(passtIn(ns), []);
    } finally {
      await ns.delete();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
