/*T:470 passt for real, without a guest or KVM: in a namespace of its own
 * (T:468) the port starts passt, sends an ARP request for the gateway
 * through writev() from IoVecs over a plain buffer, the way the transmit
 * engine would, and reads passt's ARP reply with readv(); an ICMP echo to
 * the gateway then comes back through passt's ICMP socket. Then the process
 * checks: passt is gone once the port is closed, and gone once the process
 * holding the port is SIGKILLed and can close nothing. :*/

import assert from "node:assert/strict";
import { bufferAddress, POLL, pollOne } from "../../../lib/sys/calls.ts";
import { IoVecs } from "../../../lib/sys/iovec.ts";
import { NET_HDR_SIZE } from "../../../lib/virtio/net/hdr.ts";
import { PASST_MISSING, PasstPort } from "../../../lib/virtio/net/passt.ts";
import { arpRequest, be16 } from "./frames.ts";
import { netnsProblem } from "./netns.ts";
import { allowPing, gone, PASST_NET, passtIn, passtProblem, routableNetNs } from "./passt_rig.ts";

const problem = (await netnsProblem()) ?? (await passtProblem());
const opts = { ignore: problem !== undefined, sanitizeOps: false, sanitizeResources: false };
if (problem !== undefined) console.warn(`passt tests skipped: ${problem}`);

/** An ICMP echo request (id 0x1234) from `mac` at PASST_NET.ip to the gateway at `gwMac`. */
function icmpEcho(gwMac: Uint8Array, mac: Uint8Array): Uint8Array {
  const f = new Uint8Array(14 + 20 + 16);
  const v = new DataView(f.buffer);
  const sum = (from: number, to: number) => {
    let s = 0;
    for (let i = from; i < to; i += 2) s += v.getUint16(i);
    while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
    return ~s & 0xffff;
  };
  f.set(gwMac, 0);
  f.set(mac, 6);
  v.setUint16(12, 0x0800);
  f.set([0x45, 0], 14);
  v.setUint16(16, 36);
  f.set([64, 1], 22); // TTL, ICMP
  f.set(PASST_NET.ip, 26);
  f.set(PASST_NET.gateway, 30);
  v.setUint16(24, sum(14, 34));
  f[34] = 8; // echo request
  v.setUint16(38, 0x1234);
  v.setUint16(40, 1);
  f.set([1, 2, 3, 4, 5, 6, 7, 8], 42);
  v.setUint16(36, sum(34, 50));
  return f;
}

function iovOver(buf: Uint8Array<ArrayBuffer>): IoVecs {
  const iov = new IoVecs(1);
  iov.push(bufferAddress(buf), buf.length);
  return iov;
}

Deno.test({
  name: "passt: an ARP request and a ping for the gateway get passt's replies; close() ends passt",
  ...opts,
  fn: async () => {
    const ns = await routableNetNs();
    try {
      const port = await PasstPort.start({ prefix: ["ip", "netns", "exec", ns.name] });
      try {
        assert.deepEqual(passtIn(ns), [port.pid]);
        assert.equal(port.offloads, false);
        const mac = new Uint8Array([0x02, 0, 0, 0x12, 0x34, 0x56]);
        const tx = new Uint8Array(NET_HDR_SIZE + 42);
        tx.set(arpRequest(mac, [...PASST_NET.ip], [...PASST_NET.gateway]), NET_HDR_SIZE);
        assert.equal(port.writev(iovOver(tx)), tx.length);
        const rx = new Uint8Array(NET_HDR_SIZE + 2000);
        let reply: Uint8Array | undefined;
        const until = Date.now() + 5000;
        while (reply === undefined && Date.now() < until) {
          pollOne(port.fd, POLL.IN, 200);
          const n = port.readv(iovOver(rx));
          assert.notEqual(n, 0, "passt closed the connection");
          if (n < 0) continue;
          const f = rx.subarray(NET_HDR_SIZE, n);
          if (be16(f, 12) === 0x0806 && be16(f, 20) === 2) reply = f.slice();
        }
        assert.ok(reply !== undefined, "no ARP reply from passt within 5 s");
        assert.deepEqual([...rx.subarray(0, NET_HDR_SIZE)], new Array(NET_HDR_SIZE).fill(0));
        assert.deepEqual([...reply.subarray(0, 6)], [...mac], "the reply is to us");
        assert.deepEqual([...reply.subarray(28, 32)], [...PASST_NET.gateway], "from the gateway's address");
        assert.deepEqual([...reply.subarray(38, 42)], [...PASST_NET.ip]);
        // An ICMP echo to the gateway's MAC goes out through passt's ICMP socket and comes back.
        await allowPing(ns);
        const echo = new Uint8Array(NET_HDR_SIZE + 50);
        echo.set(icmpEcho(reply.subarray(6, 12), mac), NET_HDR_SIZE);
        assert.equal(port.writev(iovOver(echo)), echo.length);
        let answered = false;
        const by = Date.now() + 5000;
        while (!answered && Date.now() < by) {
          pollOne(port.fd, POLL.IN, 200);
          const n = port.readv(iovOver(rx));
          assert.notEqual(n, 0, "passt closed the connection");
          const f = rx.subarray(NET_HDR_SIZE, Math.max(n, NET_HDR_SIZE));
          answered = n > 0 && be16(f, 12) === 0x0800 && f[23] === 1 && f[34] === 0 && be16(f, 38) === 0x1234;
        }
        assert.ok(answered, "no ICMP echo reply through passt within 5 s");
      } finally {
        port.close();
      }
      await port.exited;
      assert.ok(await gone(port.pid), `passt ${port.pid} is still there after close()`);
      assert.deepEqual(passtIn(ns), []);
    } finally {
      await ns.delete();
    }
  },
});

Deno.test({
  name: "passt: it does not outlive a SIGKILLed launcher",
  ...opts,
  fn: async () => {
    const ns = await routableNetNs();
    try {
      const holder = new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", new URL("../../helpers/passt_holder.ts", import.meta.url).pathname, ns.name],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const reader = holder.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let out = "";
      while (!/PASST \d+\n/.test(out)) {
        const { value, done } = await reader.read();
        if (done) break;
        out += value;
      }
      const pid = Number(/PASST (\d+)/.exec(out)?.[1]);
      assert.ok(pid > 0, `the holder did not start passt: ${out}`);
      assert.deepEqual(passtIn(ns), [pid]);
      holder.kill("SIGKILL");
      await holder.status;
      await reader.cancel();
      await holder.stderr.cancel();
      assert.ok(await gone(pid), `passt ${pid} outlived its SIGKILLed parent`);
      assert.deepEqual(passtIn(ns), []);
    } finally {
      await ns.delete();
    }
  },
});

Deno.test("passt: a host without it gets one line saying how to get it", async () => {
  await assert.rejects(PasstPort.start({ binary: "/nonexistent/passt" }), (e: Error) => e.message === PASST_MISSING);
  assert.equal(PASST_MISSING, "--net=user needs passt: apt-get install passt");
});
