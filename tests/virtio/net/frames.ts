/*T:563 Frames for the network tests, made by hand so a test knows every
 * byte: an ARP request the host kernel answers, a TCP segment marked for
 * segmentation offload, and the small byte helpers the checks use. :*/

import { NET_HDR, NET_HDR_SIZE } from "../../../lib/virtio/net/hdr.ts";

/** The big-endian 16-bit value at `at`. */
export function be16(p: Uint8Array, at: number): number {
  return (p[at]! << 8) | p[at + 1]!;
}

/** Same length, same bytes. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** An ARP request from `mac`/`ip` for `target`. */
export function arpRequest(mac: Uint8Array, ip: number[], target: number[]): Uint8Array {
  const a = new Uint8Array(42);
  a.fill(0xff, 0, 6);
  a.set(mac, 6);
  a.set([0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1], 12);
  a.set(mac, 22);
  a.set(ip, 28);
  a.set(target, 38);
  return a;
}

/** Cuts `bytes` at the given offsets. */
export function split(bytes: Uint8Array, ...cuts: number[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let at = 0;
  for (const c of [...cuts, bytes.length]) {
    out.push(bytes.slice(at, c));
    at = c;
  }
  return out;
}

/** An Ethernet/IPv4/TCP frame with `payload`, and a header asking for TSO at `mss`. */
export function tcpSegment(dst: Uint8Array, payload: Uint8Array, mss: number): { hdr: Uint8Array; frame: Uint8Array } {
  const frame = new Uint8Array(54 + payload.length);
  const v = new DataView(frame.buffer);
  frame.set(dst, 0);
  frame.set([0x02, 0, 0, 0, 0, 0x0b], 6);
  v.setUint16(12, 0x0800);
  frame.set([0x45, 0], 14);
  v.setUint16(16, 40 + payload.length);
  v.setUint16(20, 0x4000);
  frame.set([64, 6], 22);
  frame.set([10, 7, 5, 2, 10, 7, 5, 3], 26);
  let sum = 0;
  for (let i = 14; i < 34; i += 2) sum += v.getUint16(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  v.setUint16(24, ~sum & 0xffff);
  v.setUint16(34, 1234);
  v.setUint16(36, 5678);
  v.setUint32(38, 1);
  frame[46] = 5 << 4;
  frame[47] = 0x10;
  v.setUint16(48, 65535);
  frame.set(payload, 54);
  const hdr = new Uint8Array(NET_HDR_SIZE);
  const h = new DataView(hdr.buffer);
  hdr[0] = NET_HDR.VIRTIO_NET_HDR_F_NEEDS_CSUM;
  hdr[1] = 1; // VIRTIO_NET_HDR_GSO_TCPV4
  h.setUint16(2, 54, true);
  h.setUint16(4, mss, true);
  h.setUint16(6, 34, true);
  h.setUint16(8, 16, true);
  return { hdr, frame };
}
