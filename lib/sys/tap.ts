/*V:400 A guest's network card needs a wire, and on the host the wire is a
 * tap: a network interface whose "cable" is a file descriptor. Every
 * Ethernet frame the host kernel sends out of the interface can be read
 * from the fd, and every frame we write to the fd arrives at the kernel as
 * if a real card had received it. The original launcher shunted frames
 * between that fd and the guest with no more ceremony than that, and so do
 * we.
 *
 * We ask for three things when creating it. IFF_TAP, because the guest
 * speaks Ethernet, not bare IP. IFF_NO_PI, because the kernel's 4-byte
 * packet-information prefix tells us nothing a virtio driver needs.
 * IFF_VNET_HDR, because then every frame carries a virtio_net_hdr in front
 * of it, the very header virtio-net puts in front of its own frames: the
 * checksum and segmentation hints go through without translation, and a
 * 64 KiB TCP segment can cross in one read instead of forty-four. The name
 * is "tap%d", so the kernel picks the first free one. :*/

import type { Layout } from "../kvm/structs.ts";
import { iow } from "../kvm/ioctl.ts";
import { close, ioctl, ioctlInt, O, open, readv, socket, writev } from "./calls.ts";
import { SysError } from "./errno.ts";
import type { IoVecs } from "./iovec.ts";

/** Interface names are at most 15 bytes plus a NUL. */
export const IFNAMSIZ = 16;

/** struct ifreq (<net/if.h>): the name, then a 24-byte union of which we use four members. */
export const IFREQ = {
  c: "struct ifreq",
  size: 40,
  fields: {
    ifr_name: { offset: 0, size: IFNAMSIZ },
    ifr_flags: { offset: 16, size: 2 },
    ifr_ifindex: { offset: 16, size: 4 },
    ifr_addr: { offset: 16, size: 16 },
    ifr_netmask: { offset: 16, size: 16 },
    ifr_hwaddr: { offset: 16, size: 16 },
  },
} as const satisfies Layout;

/** struct sockaddr_in (<netinet/in.h>), as it sits in ifr_addr. */
export const SOCKADDR_IN = {
  c: "struct sockaddr_in",
  size: 16,
  fields: {
    sin_family: { offset: 0, size: 2 },
    sin_port: { offset: 2, size: 2 },
    sin_addr: { offset: 4, size: 4 },
  },
} as const satisfies Layout;

/** struct sockaddr: a hardware address sits in sa_data. */
export const SOCKADDR = {
  c: "struct sockaddr",
  size: 16,
  fields: { sa_family: { offset: 0, size: 2 }, sa_data: { offset: 2, size: 14 } },
} as const satisfies Layout;

const TUNIO = 0x54; // 'T'
const INT = 4;

/** The /dev/net/tun ioctls we use (<linux/if_tun.h>; all take an int-sized argument per the header). */
export const TUN_IOCTL = {
  TUNSETIFF: iow(TUNIO, 202, INT),
  TUNSETOFFLOAD: iow(TUNIO, 208, INT),
  TUNSETVNETHDRSZ: iow(TUNIO, 216, INT),
} as const;

/** TUNSETIFF flags (<linux/if_tun.h>). */
export const TUN_IFF = { IFF_TAP: 0x0002, IFF_NO_PI: 0x1000, IFF_VNET_HDR: 0x4000 } as const;

/** TUNSETOFFLOAD bits: what the reader of the tap (the guest) accepts (<linux/if_tun.h>). */
export const TUN_F = { TUN_F_CSUM: 0x01, TUN_F_TSO4: 0x02, TUN_F_TSO6: 0x04, TUN_F_TSO_ECN: 0x08 } as const;

/** Socket ioctls on interfaces (<linux/sockios.h>). */
export const SIOC = {
  SIOCGIFFLAGS: 0x8913,
  SIOCSIFFLAGS: 0x8914,
  SIOCSIFADDR: 0x8916,
  SIOCSIFNETMASK: 0x891c,
  SIOCGIFHWADDR: 0x8927,
  SIOCGIFINDEX: 0x8933,
  SIOCBRADDIF: 0x89a2,
} as const;

/** Interface flags and socket constants (<net/if.h>, <sys/socket.h>). */
export const NETDEV = { IFF_UP: 0x1, AF_INET: 2, SOCK_DGRAM: 2 } as const;

const DEV_TUN = "/dev/net/tun";
const encoder = new TextEncoder();

/** A zeroed struct ifreq naming `name`. */
function ifreq(name: string): Uint8Array<ArrayBuffer> {
  const bytes = encoder.encode(name);
  if (bytes.length >= IFNAMSIZ) throw new RangeError(`interface name '${name}' is longer than ${IFNAMSIZ - 1} bytes`);
  const r = new Uint8Array(IFREQ.size);
  r.set(bytes, IFREQ.fields.ifr_name.offset);
  return r;
}

function view(r: Uint8Array<ArrayBuffer>): DataView {
  return new DataView(r.buffer);
}

function code(e: unknown): string {
  return e instanceof SysError ? e.code : e instanceof Error ? e.message : String(e);
}

/** "not permitted (...)" for EPERM/EACCES, else the errno name. */
export function notPermitted(e: unknown): string {
  const c = code(e);
  return c === "EPERM" || c === "EACCES" ? `not permitted (${c}; this needs root or CAP_NET_ADMIN)` : c;
}

/** Why opening the tun control device failed, as one line. */
function tunOpenProblem(device: string, e: unknown): string {
  const c = code(e);
  if (c === "ENOENT") return `${device} does not exist (is the tun module loaded?)`;
  if (c === "ENODEV" || c === "ENXIO") return `${device}: no tun driver in this kernel (${c})`;
  return `${device}: cannot open it: ${notPermitted(e)}`;
}

/** A tap device: the fd end of a host network interface, with a 12-byte virtio_net_hdr before every frame. */
export class Tap {
  /** The interface name the kernel chose, e.g. "tap0". */
  readonly name: string;
  /** One frame per read or write, header first. */
  readonly framing = "packet";
  #fd: number;

  private constructor(fd: number, name: string) {
    this.#fd = fd;
    this.name = name;
  }

  /**
   * Creates a new tap ("tap%d"), non-blocking, with `vnetHdrSize`-byte virtio headers.
   * The interface lives as long as the fd: {@link close} deletes it.
   * @param vnetHdrSize bytes of virtio_net_hdr before each frame (12 for virtio 1.x)
   * @param device the tun control device (default /dev/net/tun)
   * @throws Error naming the device and what failed, in one line
   */
  static open(vnetHdrSize: number, device: string = DEV_TUN): Tap {
    let fd: number;
    try {
      fd = open(device, O.RDWR | O.NONBLOCK);
    } catch (e) {
      throw new Error(tunOpenProblem(device, e));
    }
    try {
      const r = ifreq("tap%d");
      view(r).setUint16(
        IFREQ.fields.ifr_flags.offset,
        TUN_IFF.IFF_TAP | TUN_IFF.IFF_NO_PI | TUN_IFF.IFF_VNET_HDR,
        true,
      );
      try {
        ioctl(fd, TUN_IOCTL.TUNSETIFF, r, "TUNSETIFF");
      } catch (e) {
        throw new Error(`${device}: cannot create a tap interface: ${notPermitted(e)}`);
      }
      const name = new TextDecoder().decode(r.subarray(0, IFNAMSIZ)).replace(/\0.*$/s, "");
      try {
        ioctl(fd, TUN_IOCTL.TUNSETVNETHDRSZ, new Int32Array([vnetHdrSize]), "TUNSETVNETHDRSZ");
      } catch (e) {
        throw new Error(`${device}: ${name} refuses a ${vnetHdrSize}-byte virtio header (${code(e)})`);
      }
      return new Tap(fd, name);
    } catch (e) {
      close(fd);
      throw e;
    }
  }

  /** The fd, for epoll (-1 once closed). */
  get fd(): number {
    return this.#fd;
  }

  /**
   * Tells the kernel which offloads the reader handles (TUN_F_* bits); it segments and
   * checksums everything else itself before we read it.
   */
  setOffload(tunFlags: number): void {
    ioctlInt(this.#fd, TUN_IOCTL.TUNSETOFFLOAD, tunFlags, "TUNSETOFFLOAD");
  }

  /** Reads one frame (header first) into `iov`; returns its full length, which may exceed iov.bytes, or -1 for EAGAIN. */
  readv(iov: IoVecs): number {
    return readv(this.#fd, iov.raw, iov.count);
  }

  /** Writes one frame (header first) gathered from `iov`; returns bytes written or -1 for EAGAIN. */
  writev(iov: IoVecs): number {
    return writev(this.#fd, iov.raw, iov.count);
  }

  /** Closes the fd, which deletes the interface. Safe twice. */
  close(): void {
    const fd = this.#fd;
    this.#fd = -1;
    close(fd);
  }
}

/*V:401 Configuring the host's end is done with the ioctls ifconfig used,
 * on any AF_INET datagram socket: the socket is only a handle to the
 * kernel's interface table. Two ways to wire the guest in, as in the
 * original. Routed: the tap gets an address and the host becomes the
 * guest's peer on a small network of its own. Bridged: the tap becomes a
 * port of an existing bridge, and the guest is one more machine on that
 * segment. :*/

/** An AF_INET socket for interface ioctls. */
export class NetdevControl {
  #fd: number;

  /** Opens the control socket. */
  constructor() {
    this.#fd = socket(NETDEV.AF_INET, NETDEV.SOCK_DGRAM);
  }

  /** The interface index of `name`, or 0 if there is no such interface. */
  index(name: string): number {
    const r = ifreq(name);
    try {
      ioctl(this.#fd, SIOC.SIOCGIFINDEX, r, "SIOCGIFINDEX");
    } catch (e) {
      if (e instanceof SysError && e.code === "ENODEV") return 0;
      throw e;
    }
    return view(r).getInt32(IFREQ.fields.ifr_ifindex.offset, true);
  }

  /**
   * Gives `name` the IPv4 address `ip` with a `prefix`-bit netmask.
   * @param name interface
   * @param ip four bytes, most significant first
   * @param prefix netmask length, 0..32
   */
  setAddress(name: string, ip: readonly number[], prefix: number): void {
    const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
    this.#setSockaddr(name, SIOC.SIOCSIFADDR, "SIOCSIFADDR", ip);
    this.#setSockaddr(name, SIOC.SIOCSIFNETMASK, "SIOCSIFNETMASK", [
      mask >>> 24,
      (mask >>> 16) & 255,
      (mask >>> 8) & 255,
      mask & 255,
    ]);
  }

  #setSockaddr(name: string, request: number, label: string, ip: readonly number[]): void {
    const r = ifreq(name);
    const at = IFREQ.fields.ifr_addr.offset;
    view(r).setUint16(at + SOCKADDR_IN.fields.sin_family.offset, NETDEV.AF_INET, true);
    r.set(ip, at + SOCKADDR_IN.fields.sin_addr.offset);
    ioctl(this.#fd, request, r, label);
  }

  /** Sets IFF_UP on `name`, keeping its other flags. */
  up(name: string): void {
    const r = ifreq(name);
    ioctl(this.#fd, SIOC.SIOCGIFFLAGS, r, "SIOCGIFFLAGS");
    const v = view(r);
    const at = IFREQ.fields.ifr_flags.offset;
    v.setUint16(at, v.getUint16(at, true) | NETDEV.IFF_UP, true);
    ioctl(this.#fd, SIOC.SIOCSIFFLAGS, r, "SIOCSIFFLAGS");
  }

  /** The 6-byte hardware address of `name`. */
  hardwareAddress(name: string): Uint8Array {
    const r = ifreq(name);
    ioctl(this.#fd, SIOC.SIOCGIFHWADDR, r, "SIOCGIFHWADDR");
    const at = IFREQ.fields.ifr_hwaddr.offset + SOCKADDR.fields.sa_data.offset;
    return r.slice(at, at + 6);
  }

  /** Makes interface number `ifindex` a port of bridge `bridge` (SIOCBRADDIF). */
  addToBridge(bridge: string, ifindex: number): void {
    const r = ifreq(bridge);
    view(r).setInt32(IFREQ.fields.ifr_ifindex.offset, ifindex, true);
    ioctl(this.#fd, SIOC.SIOCBRADDIF, r, "SIOCBRADDIF");
  }

  /** Closes the socket. Safe twice. */
  close(): void {
    const fd = this.#fd;
    this.#fd = -1;
    close(fd);
  }
}
