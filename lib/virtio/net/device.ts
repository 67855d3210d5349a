/*V:415 The network card itself: two queues (receive, then transmit), a
 * MAC address and a link status in its configuration space, and a tap
 * behind it. Between them sit the receive engine (rx.ts) and the
 * transmit engine (tx.ts), run on the card's data-path thread (V:466);
 * this file negotiates, switches the tap's offloads, and hands the queues
 * to that thread and takes them back.
 *
 * The features we offer are the ones that make bulk TCP cheap. CSUM and
 * HOST_TSO4/6 let the guest hand us unchecksummed 64 KiB segments, which
 * the tap accepts as they are; GUEST_CSUM and GUEST_TSO4/6 let the host
 * hand the guest the same, once TUNSETOFFLOAD tells the tap the reader can
 * take them; MRG_RXBUF lets the guest post page-sized receive buffers
 * instead of 64 KiB ones. A driver may accept any subset, so long as it
 * keeps the spec's dependencies (no TSO without the matching checksum). :*/

import { getrandom, POLL, pollOne } from "../../sys/calls.ts";
import { NetdevControl, notPermitted, Tap } from "../../sys/tap.ts";
import { SysError } from "../../sys/errno.ts";
import { bit, type DeviceContext, type QueueSession, VIRTIO_ID, type VirtioDevice } from "../device.ts";
import { QueueThread } from "../thread/host.ts";
import { NCTL, type NetCommand } from "./data_protocol.ts";
import {
  formatMac,
  missingDependency,
  NET_HDR_SIZE,
  type PacketPort,
  tapOffloads,
  VIRTIO_NET_CONFIG,
  VIRTIO_NET_F,
  VIRTIO_NET_S_LINK_UP,
} from "./hdr.ts";
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

/** virtio-net backed by a tap device (or any {@link PacketPort}), its queues served on a thread of its own. */
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
  readonly #thread: QueueThread<NetCommand>;
  #ctx: DeviceContext | undefined;
  #queues: ReadonlyArray<QueueSession | undefined> = [];
  #closed = false;

  /**
   * A device on `port`, which it owns from now on (close() closes it), and its data-path thread.
   * @param port where frames go and come from (a {@link Tap} in the launcher)
   * @param options MAC address and name
   */
  constructor(port: PacketPort, options: NetDeviceOptions = {}) {
    this.#port = port;
    this.features = port.offloads === false ? NET_FEATURES_PLAIN : NET_FEATURES;
    this.name = options.name ?? "virtio-net";
    const mac = options.mac ?? randomMac();
    if (mac.length !== 6) throw new RangeError(`a MAC address has 6 bytes, not ${mac.length}`);
    if (port.framing !== "packet" && port.framing !== "stream") {
      throw new RangeError(`a port's framing is "packet" or "stream", not ${JSON.stringify(port.framing)}`);
    }
    this.config.set(mac, VIRTIO_NET_CONFIG.fields.mac.offset);
    new DataView(this.config.buffer).setUint16(VIRTIO_NET_CONFIG.fields.status.offset, VIRTIO_NET_S_LINK_UP, true);
    this.#thread = new QueueThread(
      new URL("./data_path.worker.ts", import.meta.url),
      `${this.name} data path`,
      NCTL.WORDS,
      { context: () => this.#ctx, reset: () => this.reset() },
    );
    this.#thread.post({
      kind: "init",
      ctl: this.#thread.ctl.buffer,
      fd: port.fd,
      framing: port.framing,
      peer: port.peer,
      stopFd: this.#thread.stopFd,
      name: this.name,
    });
  }

  /** The guest's MAC address, as in the config space. */
  get mac(): Uint8Array {
    return this.config.slice(0, 6);
  }

  /** Frames sent and dropped on the transmit queue since activation. */
  get txTotals(): { sent: number; dropped: number } {
    const c = this.#thread.ctl;
    return { sent: Atomics.load(c, NCTL.TX_SENT), dropped: Atomics.load(c, NCTL.TX_DROPPED) };
  }

  /** Frames read from the tap, delivered to the guest and dropped since activation. */
  get rxTotals(): { read: number; delivered: number; dropped: number } {
    const c = this.#thread.ctl;
    return {
      read: Atomics.load(c, NCTL.RX_READ),
      delivered: Atomics.load(c, NCTL.RX_DELIVERED),
      dropped: Atomics.load(c, NCTL.RX_DROPPED),
    };
  }

  /**
   * True until the data-path thread has answered everything: no doorbell waits, it sleeps on this session
   * with the transmit ring consumed, no frame waits on the port while it has receive buffers, and every
   * message it sent has arrived. Reads the rings and polls the fds: for tests and benches, not the data path.
   */
  get busy(): boolean {
    const t = this.#thread;
    if (t.busy) return true;
    const ctx = this.#ctx;
    if (ctx === undefined || t.session === 0) return false;
    const [rx, tx] = this.#queues;
    if ([rx, tx].some((q) => q !== undefined && pollOne(q.doorbell, POLL.IN, 0) !== 0)) return true;
    const c = t.ctl;
    if (Atomics.load(c, NCTL.TX_WAITING) === 1) {
      if (pollOne(this.#port.fd, POLL.OUT, 0) !== 0) return true;
    } else if (tx !== undefined && Atomics.load(c, NCTL.TX_SEEN) !== ctx.memory.readU16(Number(tx.layout.avail) + 2)) {
      return true;
    }
    return this.listening && pollOne(this.#port.fd, POLL.IN, 0) !== 0;
  }

  /**
   * True if the data-path thread last went to sleep watching the port for frames: it had receive buffers.
   * False while the guest has posted none (frames then wait in the kernel, V:411) or the port is broken.
   */
  get listening(): boolean {
    return Atomics.load(this.#thread.ctl, NCTL.RX_WAITING) === 1;
  }

  /** Refuses feature sets the spec forbids (e.g. GUEST_TSO4 without GUEST_CSUM). */
  acceptFeatures(features: bigint): boolean {
    return missingDependency(features) === undefined;
  }

  /** Switches the tap's offloads to what the driver accepted and hands both queues to the data-path thread. */
  activate(ctx: DeviceContext, queues: ReadonlyArray<QueueSession | undefined>): void {
    if (this.#closed) throw new Error(`${this.name} is closed`);
    this.reset();
    const missing = missingDependency(ctx.features);
    if (missing !== undefined) throw new Error(`the driver accepted ${missing}`);
    this.#port.setOffload(tapOffloads(ctx.features));
    this.#ctx = ctx;
    this.#queues = queues;
    const session = this.#thread.begin();
    for (let w = NCTL.TX_SEEN; w < NCTL.WORDS; w++) Atomics.store(this.#thread.ctl, w, 0);
    this.#thread.post({
      kind: "start",
      session,
      hostAddress: ctx.memory.hostAddress,
      memSize: ctx.memory.size,
      features: ctx.features,
      rx: queues[0],
      tx: queues[1],
    });
    ctx.log(`offloads 0x${tapOffloads(ctx.features).toString(16)}, MAC ${formatMac(this.mac)}`);
  }

  /** Takes both queues back from the data-path thread (V:346) and the tap's offloads with them. */
  reset(): void {
    const ctx = this.#ctx;
    this.#ctx = undefined;
    this.#queues = [];
    this.#thread.withdraw();
    if (ctx !== undefined) this.#port.setOffload(0);
  }

  /** Ends the data-path thread, then closes the tap (which deletes the interface). Safe twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#thread.shutDown({ kind: "close" }, () => this.#port.close());
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
