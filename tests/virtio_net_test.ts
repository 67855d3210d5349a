// lguest-test-needs: kvm
/*T:551 virtio-net end to end: the real launcher on the real /dev/kvm, run
 * inside a network namespace of the test's own, with --tunnet. The test
 * guest brings the card up, reads its MAC, posts receive buffers, sends an
 * ARP request for the host end and then an ICMP echo request, and reports
 * what came back. The replies come from the host kernel's own ARP and ICMP
 * code: nothing in the test answers for it. Routed, the host end is the
 * tap, which the launcher gave the peer address. Bridged, the tap has no
 * address at all and the peer address sits on a bridge the test made, so a
 * reply (from the bridge's MAC) proves the launcher put the tap on it. :*/

import assert from "node:assert/strict";
import { buildTestGuest } from "./guest/build.ts";
import { guestReport, HAVE_KVM } from "./helpers/launcher.ts";
import { NetNs, netnsProblem } from "./virtio/net/netns.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const problem = HAVE_KVM ? await netnsProblem() : "/dev/kvm cannot be opened";
if (problem !== undefined) console.warn(`virtio_net_test: skipped: ${problem}`);

const MAC = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/;

/** Runs `lguest <options> 64 <test guest> <guestArgs>` inside `ns`; returns exit code, guest report and stderr. */
async function launch(
  ns: NetNs,
  options: string[],
  guestArgs: string[],
): Promise<{ code: number; report: Map<string, string[]>; stderr: string }> {
  const guest = await buildTestGuest();
  const child = new Deno.Command("ip", {
    args: [
      "netns",
      "exec",
      ns.name,
      Deno.execPath(),
      "run",
      "-A",
      `${ROOT}cli.ts`,
      "--no-acpi",
      ...options,
      "64",
      guest,
      ...guestArgs,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), 90_000);
  const out = await child.output();
  clearTimeout(timer);
  const dec = new TextDecoder();
  return { code: out.code, report: guestReport(dec.decode(out.stdout)), stderr: dec.decode(out.stderr) };
}

function one(r: Map<string, string[]>, key: string): string {
  const v = r.get(key);
  assert.ok(v !== undefined && v.length === 1, `expected one ${key} line, got ${JSON.stringify(v)}`);
  return v[0]!;
}

Deno.test({
  name: "virtio-net: routed tap (--tunnet=<ip>): the guest's ARP and ping are answered by the host",
  ignore: problem !== undefined,
  async fn() {
    await NetNs.use(async (ns) => {
      const run = await launch(ns, ["--tunnet=10.7.0.1"], ["lguest.ip=10.7.0.2", "lguest.peer=10.7.0.1"]);
      assert.equal(run.code, 0, run.stderr);
      const r = run.report;
      assert.equal(one(r, "NET-INIT"), "0");
      const mac = one(r, "NET-MAC");
      assert.match(mac, MAC);
      assert.equal(parseInt(mac.slice(0, 2), 16) & 3, 2, "a locally administered unicast MAC");
      assert.equal(one(r, "NET-STATUS"), "1", "link up");
      assert.equal(one(r, "NET-TX"), "0", "a transmit chain comes back with nothing written");
      const [kind, ip, peerMac] = one(r, "NET-RX").split(" ");
      assert.equal(kind, "arp-reply");
      assert.equal(ip, "10.7.0.1");
      assert.match(peerMac!, MAC);
      assert.notEqual(peerMac, mac);
      assert.equal(one(r, "NET-PING"), "ok 10.7.0.1");
      assert.equal(await ns.ip("-o", "link", "show", "type", "tun"), "", "the tap is gone with the launcher");
    });
  },
});

Deno.test({
  name: "virtio-net: bridged tap (--tunnet=bridge:br0): the guest reaches an address on the bridge",
  ignore: problem !== undefined,
  async fn() {
    await NetNs.use(async (ns) => {
      // An explicit address, or the bridge would take the lowest of its ports' (the tap's).
      await ns.ip("link", "add", "br0", "address", "02:00:0a:07:01:01", "type", "bridge", "forward_delay", "0");
      await ns.ip("addr", "add", "10.7.1.1/24", "dev", "br0");
      await ns.ip("link", "set", "br0", "up");
      const run = await launch(ns, ["--tunnet=bridge:br0"], ["lguest.ip=10.7.1.2", "lguest.peer=10.7.1.1"]);
      assert.equal(run.code, 0, run.stderr);
      const r = run.report;
      assert.equal(one(r, "NET-INIT"), "0");
      assert.equal(one(r, "NET-TX"), "0");
      assert.equal(one(r, "NET-RX"), "arp-reply 10.7.1.1 02:00:0a:07:01:01", "the bridge itself answered");
      assert.equal(one(r, "NET-PING"), "ok 10.7.1.1");
    });
  },
});

Deno.test({
  name: "virtio-net: a missing bridge is one clear line and exit status 1",
  ignore: problem !== undefined,
  async fn() {
    await NetNs.use(async (ns) => {
      const run = await launch(ns, ["--tunnet=bridge:nosuchbr"], []);
      assert.equal(run.code, 1);
      assert.equal(run.stderr.trim(), "lguest: --tunnet=bridge:nosuchbr: bridge nosuchbr does not exist");
    });
  },
});
