/*V:405 Every frame on a virtio-net queue starts with a small header, and
 * since virtio 1.0 it is always the 12-byte virtio_net_hdr_v1: flags and a
 * segmentation type (is the checksum still to be done, is this one giant
 * TCP segment the other side must cut up), four 16-bit numbers saying where,
 * and num_buffers, how many receive buffers a merged frame spans. The tap
 * speaks the same header (we asked it for 12 bytes), so on the way out it
 * goes to the kernel untouched, and on the way in the kernel fills all but
 * num_buffers, which is ours to write. :*/

import type { Layout } from "../../kvm/structs.ts";
import type { IoVecs } from "../../sys/iovec.ts";
import { TUN_F } from "../../sys/tap.ts";
import { bit } from "../device.ts";

/** virtio-net feature bit numbers (<linux/virtio_net.h>). */
export const VIRTIO_NET_F = {
  CSUM: 0,
  GUEST_CSUM: 1,
  MAC: 5,
  GUEST_TSO4: 7,
  GUEST_TSO6: 8,
  GUEST_ECN: 9,
  HOST_TSO4: 11,
  HOST_TSO6: 12,
  MRG_RXBUF: 15,
  STATUS: 16,
} as const;

/** struct virtio_net_hdr_v1 (<linux/virtio_net.h>). */
export const VIRTIO_NET_HDR = {
  c: "struct virtio_net_hdr_v1",
  size: 12,
  fields: {
    flags: { offset: 0, size: 1 },
    gso_type: { offset: 1, size: 1 },
    hdr_len: { offset: 2, size: 2 },
    gso_size: { offset: 4, size: 2 },
    csum_start: { offset: 6, size: 2 },
    csum_offset: { offset: 8, size: 2 },
    num_buffers: { offset: 10, size: 2 },
  },
} as const satisfies Layout;

/** The header's size: what TUNSETVNETHDRSZ is set to. */
export const NET_HDR_SIZE: number = VIRTIO_NET_HDR.size;

/** Header flag and GSO values (<linux/virtio_net.h>). */
export const NET_HDR = {
  VIRTIO_NET_HDR_F_NEEDS_CSUM: 1,
  VIRTIO_NET_HDR_F_DATA_VALID: 2,
  VIRTIO_NET_HDR_GSO_NONE: 0,
} as const;

/** struct virtio_net_config: the members we offer (mac needs F_MAC, status needs F_STATUS). */
export const VIRTIO_NET_CONFIG = {
  c: "struct virtio_net_config",
  size: 8,
  fields: { mac: { offset: 0, size: 6 }, status: { offset: 6, size: 2 } },
} as const satisfies Layout;

/** config.status bit: the link is up (<linux/virtio_net.h> VIRTIO_NET_S_LINK_UP). */
export const VIRTIO_NET_S_LINK_UP = 1;

/**
 * Where frames go and come from: a tap in the launcher, anything with message boundaries
 * (a datagram socketpair) in tests, or passt's stream (--net=user). Every frame carries a
 * NET_HDR_SIZE-byte header first.
 */
export interface PacketPort {
  /** A pollable fd: readable when a frame waits, writable when one can be sent. */
  readonly fd: number;
  /**
   * How frames cross `fd`, so that the card's data-path thread can speak it itself (V:466): "packet", one
   * frame per read or write with the header first (a tap, a datagram socket); "stream", QEMU's 4-byte
   * length framing with no header (passt, V:463).
   */
  readonly framing: "packet" | "stream";
  /** Names the peer of a "stream" port in its warnings. */
  readonly peer?: string;
  /**
   * False for a port that carries plain Ethernet frames and cannot take a checksum or segmentation
   * request (the device then offers no offloads); absent or true for a tap-like port.
   */
  readonly offloads?: boolean;
  /** True while a frame writev() accepted is still partly unwritten: watch for writability, then flush(). */
  readonly outputPending?: boolean;
  /** Writes what is pending of accepted frames, as far as the fd takes it now. Never throws. */
  flush?(): void;
  /** Reads one whole frame into `iov`; returns its length (beyond iov.bytes if truncated), or -1 for EAGAIN. */
  readv(iov: IoVecs): number;
  /** Writes one frame from `iov`; returns bytes written, or -1 for EAGAIN. */
  writev(iov: IoVecs): number;
  /** Says which offloads (TUN_F_* bits) the reader accepts. */
  setOffload(tunFlags: number): void;
  /** Releases the port. Safe twice. */
  close(): void;
}

/** The features the driver accepted, as the rx path needs them. */
export interface NetFeatures {
  /** MRG_RXBUF: one frame may span several receive chains. */
  mergeable: boolean;
  /** GUEST_CSUM: the guest accepts partially checksummed frames. */
  guestCsum: boolean;
  /** GUEST_TSO4 or GUEST_TSO6: the guest accepts large segments. */
  guestGso: boolean;
}

/** Decodes the negotiated feature bits. */
export function netFeatures(features: bigint): NetFeatures {
  const has = (n: number) => (features & bit(n)) !== 0n;
  return {
    mergeable: has(VIRTIO_NET_F.MRG_RXBUF),
    guestCsum: has(VIRTIO_NET_F.GUEST_CSUM),
    guestGso: has(VIRTIO_NET_F.GUEST_TSO4) || has(VIRTIO_NET_F.GUEST_TSO6),
  };
}

/*V:406 Which offloads to switch on at the tap follows from what the guest
 * said it can receive, never from what it can send: TUNSETOFFLOAD describes
 * the reader. GUEST_CSUM lets the host hand over frames whose checksum is
 * still to be computed; the TSO bits let it hand over 64 KiB segments, and
 * mean nothing without the checksum bit (the kernel ignores them then, and
 * the spec forbids the combination). What the guest may send us needs no
 * switch: a tap always accepts a header asking for a checksum or a cut. :*/

/** The TUN_F_* bits matching the guest's receive features. */
export function tapOffloads(features: bigint): number {
  const has = (n: number) => (features & bit(n)) !== 0n;
  if (!has(VIRTIO_NET_F.GUEST_CSUM)) return 0;
  let f = TUN_F.TUN_F_CSUM;
  if (has(VIRTIO_NET_F.GUEST_TSO4)) f |= TUN_F.TUN_F_TSO4;
  if (has(VIRTIO_NET_F.GUEST_TSO6)) f |= TUN_F.TUN_F_TSO6;
  if (has(VIRTIO_NET_F.GUEST_ECN)) f |= TUN_F.TUN_F_TSO_ECN;
  return f;
}

/** Spec 5.1.3.1: feature bits that require another. Returns what is missing, or undefined. */
export function missingDependency(features: bigint): string | undefined {
  const F = VIRTIO_NET_F;
  const needs: Array<[number, number, string, string]> = [
    [F.GUEST_TSO4, F.GUEST_CSUM, "GUEST_TSO4", "GUEST_CSUM"],
    [F.GUEST_TSO6, F.GUEST_CSUM, "GUEST_TSO6", "GUEST_CSUM"],
    [F.HOST_TSO4, F.CSUM, "HOST_TSO4", "CSUM"],
    [F.HOST_TSO6, F.CSUM, "HOST_TSO6", "CSUM"],
  ];
  for (const [feature, needed, a, b] of needs) {
    if ((features & bit(feature)) !== 0n && (features & bit(needed)) === 0n) return `${a} without ${b}`;
  }
  return undefined;
}

/** "52:54:00:12:34:56" */
export function formatMac(mac: Uint8Array): string {
  return Array.from(mac, (b) => b.toString(16).padStart(2, "0")).join(":");
}
