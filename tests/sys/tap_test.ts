/*T:570 The tap layer. Its numbers first: struct ifreq and friends, the
 * tun ioctls and flags, the socket ioctls, and the virtio-net header and
 * feature bits, each held against the system's C headers by the layout
 * probe, since a wrong offset there would only show as a confused kernel.
 *
 * Then the real thing, in a namespace of the test's own: a tap appears
 * there and vanishes with its fd; the host end takes an address and comes
 * up; the header really is 12 bytes, which the kernel's own ARP reply
 * shows; a bridge takes it as a port. And the ways it fails:
 * no tun device, a device that is not one, and no permission (a process
 * run without CAP_NET_ADMIN), each a single line that says so. :*/

import assert from "node:assert/strict";
import {
  NETDEV,
  NetdevControl,
  SIOC,
  SOCKADDR,
  SOCKADDR_IN,
  Tap,
  TUN_F,
  TUN_IFF,
  TUN_IOCTL,
} from "../../lib/sys/tap.ts";
import { IFREQ } from "../../lib/sys/tap.ts";
import { SysError } from "../../lib/sys/errno.ts";
import { pollOne, read } from "../../lib/sys/calls.ts";
import {
  NET_HDR,
  NET_HDR_SIZE,
  VIRTIO_NET_CONFIG,
  VIRTIO_NET_F,
  VIRTIO_NET_HDR,
  VIRTIO_NET_S_LINK_UP,
} from "../../lib/virtio/net/hdr.ts";
import { type Check, hasGcc, layoutChecks, macroChecks, runProbe } from "../kvm/layout_probe.ts";
import { NetNs, netnsProblem } from "../virtio/net/netns.ts";
import { tapWrite, withHeader } from "../virtio/net/harness.ts";

const gcc = await hasGcc();
if (!gcc) console.warn("tap_test: gcc is not on PATH; the header checks are skipped");
const problem = await netnsProblem();
if (problem !== undefined) console.warn(`tap_test: tap tests skipped: ${problem}`);

async function expectMatch(includes: string[], checks: Check[]): Promise<void> {
  const { problems, compared } = await runProbe(includes, checks);
  assert.deepEqual(problems, []);
  assert.equal(compared, checks.length);
}

Deno.test({
  name: "tap: struct ifreq, sockaddr and the socket ioctls match the C headers",
  ignore: !gcc,
  async fn() {
    await expectMatch(["net/if.h", "netinet/in.h", "sys/socket.h", "linux/sockios.h"], [
      ...[IFREQ, SOCKADDR_IN, SOCKADDR].flatMap(layoutChecks),
      ...macroChecks("", SIOC),
      ...macroChecks("", NETDEV),
    ]);
  },
});

Deno.test({
  name: "tap: tun ioctls, flags and offload bits match <linux/if_tun.h>",
  ignore: !gcc,
  async fn() {
    await expectMatch(["sys/ioctl.h", "linux/if_tun.h"], [
      ...macroChecks("", TUN_IOCTL),
      ...macroChecks("", TUN_IFF),
      ...macroChecks("", TUN_F),
    ]);
  },
});

Deno.test({
  name: "tap: the virtio-net header, config and feature bits match <linux/virtio_net.h>",
  ignore: !gcc,
  async fn() {
    // We declare only the config members we offer: check their places, not the whole struct's size.
    const config = layoutChecks(VIRTIO_NET_CONFIG).filter((c) => !c.name.endsWith(": sizeof"));
    await expectMatch(["linux/virtio_net.h"], [
      ...layoutChecks(VIRTIO_NET_HDR),
      ...config,
      ...macroChecks("VIRTIO_NET_F_", VIRTIO_NET_F),
      ...macroChecks("", NET_HDR),
      { name: "VIRTIO_NET_S_LINK_UP", expected: VIRTIO_NET_S_LINK_UP, expr: "VIRTIO_NET_S_LINK_UP" },
    ]);
  },
});

Deno.test({
  name: "tap: a tap lives in its namespace, takes an address, speaks 12-byte headers, joins a bridge",
  ignore: problem !== undefined,
  async fn() {
    await NetNs.use(async (ns) => {
      const [tap, ctl] = ns.enter(() => [Tap.open(NET_HDR_SIZE), new NetdevControl()] as const);
      try {
        assert.match(tap.name, /^tap\d+$/);
        assert.ok(ctl.index(tap.name) > 0);
        assert.equal(ctl.index("nosuch0"), 0);
        await ns.ip("link", "show", tap.name);
        ctl.setAddress(tap.name, [10, 7, 6, 1], 24);
        ctl.up(tap.name);
        assert.match(await ns.ip("-o", "-4", "addr", "show", "dev", tap.name), /inet 10\.7\.6\.1\/24 /);
        const hw = ctl.hardwareAddress(tap.name);
        assert.equal(
          Array.from(hw, (b) => b.toString(16).padStart(2, "0")).join(":"),
          await ns.mac(tap.name),
        );
        tap.setOffload(TUN_F.TUN_F_CSUM | TUN_F.TUN_F_TSO4 | TUN_F.TUN_F_TSO6);
        tap.setOffload(0);
        assert.throws(() => tap.setOffload(0x1000_0000), (e) => e instanceof SysError && e.code === "EINVAL");

        // An ARP request for the tap's address, behind a 12-byte header: the kernel answers.
        const mac = [0x02, 0, 0x0a, 0x07, 0x06, 0x02];
        const arp = new Uint8Array(42);
        arp.fill(0xff, 0, 6);
        arp.set(mac, 6);
        arp.set([0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1, ...mac, 10, 7, 6, 2, 0, 0, 0, 0, 0, 0, 10, 7, 6, 1], 12);
        const sent = withHeader(arp) as Uint8Array<ArrayBuffer>;
        assert.equal(tapWrite(tap, sent), sent.length);
        assert.notEqual(pollOne(tap.fd, 1, 2000), 0, "a reply is waiting");
        const buf = new Uint8Array(2048);
        const n = read(tap.fd, buf);
        assert.equal(n, NET_HDR_SIZE + 42, "header + a 42-byte ARP reply");
        assert.deepEqual([...buf.subarray(NET_HDR_SIZE, NET_HDR_SIZE + 6)], mac);
        assert.deepEqual([...buf.subarray(NET_HDR_SIZE + 20, NET_HDR_SIZE + 22)], [0, 2], "op = reply");
        assert.deepEqual([...buf.subarray(NET_HDR_SIZE + 6, NET_HDR_SIZE + 12)], [...hw], "from the tap");

        await ns.ip("link", "add", "br0", "type", "bridge");
        ctl.addToBridge("br0", ctl.index(tap.name));
        assert.match(await ns.ip("-o", "link", "show", "master", "br0"), new RegExp(`\\b${tap.name}\\b`));
        assert.throws(() => ctl.addToBridge("nosuch0", ctl.index(tap.name)), (e) => e instanceof SysError);
      } finally {
        tap.close();
        tap.close();
        ctl.close();
        ctl.close();
      }
      assert.equal(await ns.ip("-o", "link", "show", "type", "tun"), "", "closing the fd deleted the tap");
    });
  },
});

Deno.test("tap: no tun device, or a device that is not one, is one clear line", () => {
  assert.throws(() => Tap.open(NET_HDR_SIZE, "/nonexistent/net/tun"), {
    message: "/nonexistent/net/tun does not exist (is the tun module loaded?)",
  });
  assert.throws(() => Tap.open(NET_HDR_SIZE, "/dev/null"), {
    message: "/dev/null: cannot create a tap interface: ENOTTY",
  });
});

const setpriv = await new Deno.Command("setpriv", { args: ["--version"], stdout: "null", stderr: "null" }).output()
  .then((r) => r.success, () => false);

Deno.test({
  name: "tap: without CAP_NET_ADMIN the launcher says it is not permitted",
  ignore: problem !== undefined || !setpriv,
  async fn() {
    await NetNs.use(async (ns) => {
      const script = `import { NetDevice } from "${new URL("../../lib/virtio/net/device.ts", import.meta.url).href}";
try { NetDevice.open("10.7.6.1"); console.log("opened"); } catch (e) { console.log(e.message); }`;
      const out = await new Deno.Command("ip", {
        args: ["netns", "exec", ns.name, "setpriv", "--bounding-set=-net_admin", Deno.execPath(), "eval", script],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const said = new TextDecoder().decode(out.stdout).trim();
      assert.equal(
        said,
        "--tunnet=10.7.6.1: /dev/net/tun: cannot create a tap interface: " +
          "not permitted (EPERM; this needs root or CAP_NET_ADMIN)",
        new TextDecoder().decode(out.stderr),
      );
    });
  },
});
