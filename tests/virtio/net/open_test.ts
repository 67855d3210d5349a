/*T:562 Opening from --tunnet, as the launcher does: routed, the tap gets
 * the address with a /24 and is up; bridged, it is a port of the bridge
 * and up; and each way of going wrong is one line that says what. The
 * device it makes offers a MAC of its own, link up, and features that keep
 * the spec's dependencies. :*/

import assert from "node:assert/strict";
import { bit, VIRTIO_F } from "../../../lib/virtio/device.ts";
import { NET_FEATURES, NetDevice } from "../../../lib/virtio/net/device.ts";
import { VIRTIO_NET_F, VIRTIO_NET_S_LINK_UP } from "../../../lib/virtio/net/hdr.ts";
import { NetNs, netnsProblem } from "./netns.ts";

const problem = await netnsProblem();
if (problem !== undefined) console.warn(`net_open_test: tap tests skipped: ${problem}`);

const V1 = bit(VIRTIO_F.VERSION_1);
const MAC = new Uint8Array([0x02, 0x00, 0x0a, 0x07, 0x00, 0x02]);
const f = (...bits: number[]) => bits.reduce((m, b) => m | bit(b), V1);

Deno.test({
  name: "net: config space holds the MAC and link-up; features keep the spec's dependencies",
  ignore: problem !== undefined,
  async fn() {
    await NetNs.use((ns) => {
      const dev = ns.enter(() => NetDevice.open("10.7.3.1", { mac: MAC }));
      try {
        assert.deepEqual(dev.config.slice(0, 6), MAC);
        assert.equal(dev.config[6]! | (dev.config[7]! << 8), VIRTIO_NET_S_LINK_UP);
        for (const b of ["CSUM", "GUEST_CSUM", "MAC", "HOST_TSO4", "GUEST_TSO4", "MRG_RXBUF", "STATUS"] as const) {
          assert.ok(dev.features & bit(VIRTIO_NET_F[b]), `${b} is offered`);
        }
        assert.equal(dev.acceptFeatures(NET_FEATURES | V1), true);
        assert.equal(dev.acceptFeatures(f(VIRTIO_NET_F.GUEST_TSO4)), false, "GUEST_TSO4 needs GUEST_CSUM");
        assert.equal(dev.acceptFeatures(f(VIRTIO_NET_F.HOST_TSO6)), false, "HOST_TSO6 needs CSUM");
        assert.equal(dev.acceptFeatures(f(VIRTIO_NET_F.HOST_TSO6, VIRTIO_NET_F.CSUM)), true);
        const random = ns.enter(() => NetDevice.open("10.7.3.5"));
        try {
          assert.equal(random.mac[0]! & 3, 2, "a made-up MAC is locally administered and unicast");
          assert.notDeepEqual(random.mac, MAC);
        } finally {
          random.close();
        }
      } finally {
        dev.close();
      }
    });
  },
});

Deno.test({
  name: "net: NetDevice.open configures the tap (routed, bridged) and explains failures",
  ignore: problem !== undefined,
  async fn() {
    await NetNs.use(async (ns) => {
      await ns.ip("link", "add", "br0", "type", "bridge");
      const routed = ns.enter(() => NetDevice.open("10.7.4.1"));
      const bridged = ns.enter(() => NetDevice.open("bridge:br0"));
      try {
        const tapOf = (d: NetDevice) => /\((tap\d+)/.exec(d.name)![1]!;
        const addr = await ns.ip("-o", "-4", "addr", "show", "dev", tapOf(routed));
        assert.match(addr, /inet 10\.7\.4\.1\/24 /);
        assert.match(await ns.ip("link", "show", tapOf(routed)), /<[^>]*\bUP\b/);
        assert.match(await ns.ip("-o", "link", "show", "master", "br0"), new RegExp(`\\b${tapOf(bridged)}\\b`));
        assert.match(await ns.ip("link", "show", tapOf(bridged)), /<[^>]*\bUP\b/);
        assert.throws(() => ns.enter(() => NetDevice.open("bridge:nosuch0")), {
          message: "--tunnet=bridge:nosuch0: bridge nosuch0 does not exist",
        });
        assert.throws(() => ns.enter(() => NetDevice.open("bridge:lo")), {
          message: /^--tunnet=bridge:lo: lo is not a bridge \(E[A-Z]+\)$/,
        });
      } finally {
        routed.close();
        bridged.close();
      }
      assert.equal(await ns.ip("-o", "link", "show", "type", "tun"), "", "closing deletes the taps");
      assert.equal(await ns.ip("-o", "link", "show", "master", "br0"), "");
    });
  },
});
