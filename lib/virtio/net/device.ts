/*V:415 The network card itself: two queues (receive, then transmit), a
 * MAC address and a link status in its configuration space, and a tap
 * behind it. Between them sit the receive engine (rx.ts) and the
 * transmit engine (tx.ts); this file negotiates, wires them to the
 * event loop (each queue a LoopQueue, V:151, watching its doorbell), and
 * decides when to listen to the tap at all.
 *
 * The features we offer are the ones that make bulk TCP cheap. CSUM and
 * HOST_TSO4/6 let the guest hand us unchecksummed 64 KiB segments, which
 * the tap accepts as they are; GUEST_CSUM and GUEST_TSO4/6 let the host
 * hand the guest the same, once TUNSETOFFLOAD tells the tap the reader can
 * take them; MRG_RXBUF lets the guest post page-sized receive buffers
 * instead of 64 KiB ones. A driver may accept any subset, so long as it
 * keeps the spec's dependencies (no TSO without the matching checksum). :*/

import { EPOLL } from "../../sys/epoll.ts";
import { getrandom } from "../../sys/calls.ts";
import { NetdevControl, notPermitted, Tap } from "../../sys/tap.ts";
import { SysError } from "../../sys/errno.ts";
import { bit, type DeviceContext, type QueueSession, VIRTIO_ID, type VirtioDevice } from "../device.ts";
import { type DrainEnd, LoopQueue } from "../drain.ts";
import {
  formatMac,
  missingDependency,
  NET_HDR_SIZE,
  netFeatures,
  type PacketPort,
  tapOffloads,
  VIRTIO_NET_CONFIG,
  VIRTIO_NET_F,
  VIRTIO_NET_S_LINK_UP,
} from "./hdr.ts";
import { NetRx } from "./rx.ts";
import { NetTx } from "./tx.ts";
import { parseNetSpec, parseTunnetSpec } from "./spec.ts";
import { PasstPort } from "./passt.ts";

/** The features we offer (see V:415). */
export const NET_FEATURES: bigint = [
  VIRTIO_NET_F.CSUM,
  VIRTIO_NET_F.GUEST_CSUM,
  VIRTIO_NET_F.MAC,
  VIRTIO_NET_F.GUEST_TSO4,
  VIRTIO_NET_F.GUEST_TSO6,
  VIRTIO_NET_F.HOST_TSO4,
  VIRTIO_NET_F.HOST_TSO6,
  VIRTIO_NET_F.MRG_RXBUF,
  VIRTIO_NET_F.STATUS,
].reduce((m, n) => m | bit(n), 0n);

/*V:461 A port without offloads (passt's stream, V:463) carries plain
 * Ethernet frames: nobody behind it would finish a checksum the guest left
 * undone or cut a 64 KiB segment, and nobody fills in DATA_VALID. So on such
 * a port the device offers neither direction's offloads, only the MAC, the
 * status and mergeable buffers, and the guest checksums and segments
 * everything itself, as it would for a card without those features. :*/

/** The features offered on a port without offloads (see V:461). */
export const NET_FEATURES_PLAIN: bigint = [VIRTIO_NET_F.MAC, VIRTIO_NET_F.MRG_RXBUF, VIRTIO_NET_F.STATUS]
  .reduce((m, n) => m | bit(n), 0n);

/** Queue sizes: the Linux driver's default ring of 256 for both. */
export const NET_QUEUE_SIZE = 256;
/** The netmask prefix the host end of a routed tap gets. */
export const ROUTED_PREFIX = 24;

/** Options for {@link NetDevice}. */
export interface NetDeviceOptions {
  /** The guest's MAC address (default: a random locally administered one). */
  mac?: Uint8Array;
  /** For messages (default "virtio-net"). */
  name?: string;
}

/*V:416 The guest's MAC. The original launcher handed the guest the tap's
 * own address; a guest and a host interface sharing one address confuse a
 * bridge, which then cannot tell which side a frame is for. So the guest
 * gets its own: random, with the "locally administered" bit set and the
 * multicast bit clear, which is what such made-up addresses are for. :*/

/** A random unicast, locally administered MAC address. */
export function randomMac(): Uint8Array {
  const mac = new Uint8Array(6);
  getrandom(mac);
  mac[0] = (mac[0]! & 0xfc) | 0x02;
  return mac;
}

/** virtio-net backed by a tap device (or any {@link PacketPort}). */
export class NetDevice implements VirtioDevice {
  /** For messages. */
  readonly name: string;
  /** VIRTIO_ID_NET. */
  readonly deviceId: number = VIRTIO_ID.NET;
  /** {@link NET_FEATURES}, or {@link NET_FEATURES_PLAIN} on a port without offloads. */
  readonly features: bigint;
  /** Receive queue, transmit queue. */
  readonly queueSizes: readonly number[] = [NET_QUEUE_SIZE, NET_QUEUE_SIZE];
  /** struct virtio_net_config: mac, then status (link up). */
  readonly config: Uint8Array = new Uint8Array(VIRTIO_NET_CONFIG.size);
  readonly #port: PacketPort;
  #ctx: DeviceContext | undefined;
  #rxq: LoopQueue | undefined;
  #txq: LoopQueue | undefined;
  #rx: NetRx | undefined;
  #tx: NetTx | undefined;
  #watched = 0;

  /**
   * A device on `port`, which it owns from now on (close() closes it).
   * @param port where frames go and come from (a {@link Tap} in the launcher)
   * @param options MAC address and name
   */
  constructor(port: PacketPort, options: NetDeviceOptions = {}) {
    this.#port = port;
    this.features = port.offloads === false ? NET_FEATURES_PLAIN : NET_FEATURES;
    this.name = options.name ?? "virtio-net";
    const mac = options.mac ?? randomMac();
    if (mac.length !== 6) throw new RangeError(`a MAC address has 6 bytes, not ${mac.length}`);
    this.config.set(mac, VIRTIO_NET_CONFIG.fields.mac.offset);
    new DataView(this.config.buffer).setUint16(VIRTIO_NET_CONFIG.fields.status.offset, VIRTIO_NET_S_LINK_UP, true);
  }

  /** The guest's MAC address, as in the config space. */
  get mac(): Uint8Array {
    return this.config.slice(0, 6);
  }

  /** Frames sent and dropped on the transmit queue since activation. */
  get txTotals(): { sent: number; dropped: number } {
    return { ...(this.#tx?.totals ?? { sent: 0, dropped: 0 }) };
  }

  /** Frames read from the tap, delivered to the guest and dropped since activation. */
  get rxTotals(): { read: number; delivered: number; dropped: number } {
    return { ...(this.#rx?.totals ?? { read: 0, delivered: 0, dropped: 0 }) };
  }

  /** Refuses feature sets the spec forbids (e.g. GUEST_TSO4 without GUEST_CSUM). */
  acceptFeatures(features: bigint): boolean {
    return missingDependency(features) === undefined;
  }

  /** Switches the tap's offloads to what the driver accepted, watches both doorbells and starts both engines. */
  activate(ctx: DeviceContext, queues: ReadonlyArray<QueueSession | undefined>): void {
    this.reset();
    const missing = missingDependency(ctx.features);
    if (missing !== undefined) throw new Error(`the driver accepted ${missing}`);
    this.#ctx = ctx;
    this.#port.setOffload(tapOffloads(ctx.features));
    const [rx, tx] = queues;
    const log = (line: string) => ctx.log(line);
    if (rx !== undefined) {
      this.#rxq = new LoopQueue(ctx, rx, () => this.#doorbellRx());
      this.#rx = new NetRx(ctx.memory, this.#rxq.vq, this.#port, netFeatures(ctx.features), log);
    }
    if (tx !== undefined) {
      this.#txq = new LoopQueue(ctx, tx, (q) => this.#transmitTurn(q));
      this.#tx = new NetTx(ctx.memory, this.#txq.vq, this.#port, log);
    }
    ctx.log(`offloads 0x${tapOffloads(ctx.features).toString(16)}, MAC ${formatMac(this.mac)}`);
    this.#receive();
    this.#txq?.run();
  }

  /*V:417 Listening to the tap. We watch its fd for input only while the
   * guest has somewhere to put a frame: once the receive engine says it is
   * starved, the fd leaves the epoll set, frames wait in the kernel's
   * queue, and the guest's next doorbell on the receive queue (its eventfd,
   * watched by the receive LoopQueue) puts it back: the original's
   * enable_fd. While the engine has buffers it asked for no doorbell, and
   * one that rings anyway changes nothing: the tap says when to look. We
   * watch for output only while the port pushes back on a transmit; a
   * transmit doorbell meanwhile waits for EPOLLOUT too. So an idle guest
   * with no buffers costs the host nothing, and a guest flooding us cannot
   * make us spin. Each path gives its buffers back with one interrupt() per
   * turn, and the transmit path comes back on a zero timer after a spent
   * budget (V:414). :*/

  /** A receive-queue turn: new buffers, which matter only if the engine was starved. */
  #doorbellRx(): void {
    const rx = this.#rx;
    if (rx === undefined || !rx.starved) return;
    rx.starved = false;
    this.#receive();
  }

  #receive(): void {
    const rx = this.#rx;
    if (rx !== undefined && !rx.starved && !rx.broken && rx.receive() > 0) this.#rxq?.interrupt();
    this.#watch();
  }

  /** A transmit-queue turn (a doorbell, the first, one after a spent budget, or the port has room again). */
  #transmitTurn(q: LoopQueue): DrainEnd | void {
    const tx = this.#tx;
    if (tx === undefined || tx.blocked) return;
    const { used, end } = tx.transmit();
    if (used > 0) q.interrupt();
    this.#watch();
    return end;
  }

  /** Brings the epoll registration of the port in line with what the engines need. */
  #watch(): void {
    const ctx = this.#ctx;
    if (ctx === undefined) return;
    const rx = this.#rx;
    const out = this.#tx?.blocked || this.#port.outputPending === true;
    const want = (rx !== undefined && !rx.starved && !rx.broken ? EPOLL.IN : 0) | (out ? EPOLL.OUT : 0);
    if (want === this.#watched) return;
    if (want === 0) ctx.loop.remove(this.#port.fd);
    else if (this.#watched === 0) ctx.loop.add(this.#port.fd, want, (events) => this.#ready(events));
    else ctx.loop.modify(this.#port.fd, want);
    this.#watched = want;
  }

  /** The tap is ready: room for the frame that waits, or frames (or an error) to read. */
  #ready(events: number): void {
    if (events & EPOLL.OUT) {
      // A stream port first writes the rest of a frame it accepted (V:463).
      this.#port.flush?.();
      if (this.#tx !== undefined) {
        this.#tx.blocked = false;
        this.#txq?.run();
      }
      this.#watch();
    }
    if (!(events & (EPOLL.IN | EPOLL.ERR | EPOLL.HUP))) return;
    const ctx = this.#ctx;
    if (ctx === undefined) return;
    try {
      this.#receive();
    } catch (e) {
      // As from a doorbell (LoopQueue.run): a broken rule fails the device, not the loop.
      ctx.fail(e instanceof Error ? e.message : String(e));
    }
  }

  /** Stops both engines and both doorbells, stops watching the tap, and takes its offloads back. */
  reset(): void {
    this.#rxq?.close();
    this.#txq?.close();
    if (this.#watched !== 0) this.#ctx?.loop.remove(this.#port.fd);
    this.#watched = 0;
    if (this.#ctx !== undefined) this.#port.setOffload(0);
    this.#ctx = undefined;
    this.#rxq = undefined;
    this.#txq = undefined;
    this.#rx = undefined;
    this.#tx = undefined;
  }

  /** Closes the tap (which deletes the interface). Safe twice. */
  close(): void {
    this.reset();
    this.#port.close();
  }

  /*V:418 Opening the wire, from --tunnet. A new tap always; then either an
   * address for its host end (a /24, so the guest's neighbours on that
   * network are reached through it) or a place on an existing bridge, and
   * in both cases the link brought up, as the original's setup_tun_net did.
   * Whatever goes wrong, the user gets one line saying which --tunnet, and
   * what: no tun driver, no such bridge, not permitted. :*/

  /**
   * Creates a tap for `spec` and a device on it.
   * @param spec `<ipv4>` (routed: the host end gets that address/24) or `bridge:<name>`
   * @param options MAC address and name
   * @throws Error with one line naming the problem
   */
  static open(spec: string, options: NetDeviceOptions = {}): NetDevice {
    const where = `--tunnet=${spec}`;
    const parsed = parseTunnetSpec(spec);
    let tap: Tap;
    try {
      tap = Tap.open(NET_HDR_SIZE);
    } catch (e) {
      throw new Error(`${where}: ${e instanceof Error ? e.message : String(e)}`);
    }
    const ctl = new NetdevControl();
    try {
      if ("bridge" in parsed) joinBridge(ctl, tap.name, parsed.bridge);
      else configureAddress(ctl, tap.name, parsed.ip);
      step(`cannot bring ${tap.name} up`, () => ctl.up(tap.name));
      const name = options.name ??
        `virtio-net (${tap.name}${"bridge" in parsed ? ` on ${parsed.bridge}` : ` ${spec}`})`;
      return new NetDevice(tap, { ...options, name });
    } catch (e) {
      tap.close();
      throw new Error(`${where}: ${e instanceof Error ? e.message : String(e)}`);
    } finally {
      ctl.close();
    }
  }
}

/**
 * Starts passt for `spec` (V:464, V:465) and makes a device on it; the device's close() ends passt.
 * @param spec `user[,hostfwd=tcp:<hostport>-:<guestport>][,t=<passt spec>]...`
 * @param options MAC address and name
 * @throws Error with one line (no passt: how to get it)
 */
export async function openUserNet(spec: string, options: NetDeviceOptions = {}): Promise<NetDevice> {
  const { passtArgs } = parseNetSpec(spec);
  const port = await PasstPort.start({ args: passtArgs });
  return new NetDevice(port, { ...options, name: options.name ?? `virtio-net (passt ${port.pid}, --net=${spec})` });
}

function step(what: string, work: () => void): void {
  try {
    work();
  } catch (e) {
    if (!(e instanceof SysError)) throw e;
    throw new Error(`${what}: ${notPermitted(e)}`);
  }
}

function joinBridge(ctl: NetdevControl, tap: string, bridge: string): void {
  if (ctl.index(bridge) === 0) throw new Error(`bridge ${bridge} does not exist`);
  const ifindex = ctl.index(tap);
  try {
    ctl.addToBridge(bridge, ifindex);
  } catch (e) {
    if (!(e instanceof SysError)) throw e;
    if (e.code === "EOPNOTSUPP" || e.code === "EINVAL") throw new Error(`${bridge} is not a bridge (${e.code})`);
    throw new Error(`cannot add ${tap} to bridge ${bridge}: ${notPermitted(e)}`);
  }
}

function configureAddress(ctl: NetdevControl, tap: string, ip: number[]): void {
  step(`cannot give ${tap} the address ${ip.join(".")}/${ROUTED_PREFIX}`, () => ctl.setAddress(tap, ip, ROUTED_PREFIX));
}
