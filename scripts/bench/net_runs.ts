/*T:778 The runs behind benchmark 4 (T:774), one function per side, each
 * returning a rate or why there is none. The same test guest and the same
 * driver loop run under lguest and under QEMU's microvm, each on a tap
 * called tap0 with the host end 10.99.0.1/24 in the run's namespace: lguest
 * makes its own (--tunnet), and for QEMU the run makes one first and hands
 * it over (-netdev tap, vhost off, or on where /dev/vhost-net exists), with
 * virtio-mmio in its modern layout and ACPI off, so that QEMU declares the
 * card on the command line as lguest does. The host side of each direction
 * is bench/net_host.c: a flood into tap0 once the guest says
 * BENCH-NET-READY, or a packet socket counting what reaches tap0. With
 * --net=user both launchers talk to their own passt over a UNIX socket
 * (QEMU with -netdev stream), and the guest's frames end there. :*/

import { lguestCommand, qemuCommand, runToEnd, runWithMarker } from "./run.ts";
import type { BenchContext } from "./types.ts";

/** Debian's nobody, whom passt becomes when started by root. */
const NOBODY = 65534;

/** The host end of every tap the runs use. */
export const TAP_IP = "10.99.0.1";

/** Who runs the guest. */
export type Launcher = "lguest" | "qemu";

/** How the guest's card is backed. */
export type Backend = { kind: "tap"; vhost: boolean } | { kind: "user" };

/** A guest run: its serial output and, if a host peer ran, that peer's output. */
export interface GuestRun {
  guest: string;
  host: string;
}

async function ip(args: string[]): Promise<void> {
  const r = await runToEnd(["ip", ...args], 10_000);
  if (r.code !== 0) throw new Error(`ip ${args.join(" ")}: ${r.stderr.trim()}`);
}

/** Runs `cmd` (a guest) in `ns`; with `peer`, starts net_host with those arguments once the guest is ready. */
async function withPeer(ctx: BenchContext, ns: string, cmd: string[], peer: string[] | undefined): Promise<GuestRun> {
  const inNs = ["ip", "netns", "exec", ns, ...cmd];
  if (peer === undefined) return { guest: (await runToEnd(inNs, 120_000)).stdout, host: "" };
  let host = "";
  const guest = await runWithMarker(inNs, "BENCH-NET-READY", async () => {
    host = (await runToEnd(["ip", "netns", "exec", ns, ctx.tools.netHost, ...peer], 60_000)).stdout;
  }, { timeoutMs: 120_000 });
  return { guest, host };
}

/** The QEMU options for a virtio-net card on `backend` (a tap made by the caller, or a passt socket). */
function qemuNet(backend: Backend, passtSocket: string | undefined): string[] {
  const netdev = backend.kind === "tap"
    ? `tap,id=n0,ifname=tap0,script=no,downscript=no,vhost=${backend.vhost ? "on" : "off"}`
    : `stream,id=n0,server=off,addr.type=unix,addr.path=${passtSocket}`;
  return ["-netdev", netdev, "-device", "virtio-net-device,netdev=n0"];
}

/**
 * Boots the test guest with `guestArgs` under `launcher`, its card on `backend`, inside `ns`, with net_host
 * `peer` started at the guest's ready line.
 */
export async function runGuest(
  ctx: BenchContext,
  ns: string,
  launcher: Launcher,
  backend: Backend,
  guestArgs: string[],
  peer?: string[],
): Promise<GuestRun> {
  if (launcher === "lguest") {
    const card = backend.kind === "tap" ? `--tunnet=${TAP_IP}` : "--net=user";
    return await withPeer(ctx, ns, lguestCommand(ctx, [card, "128", ctx.tools.guest, ...guestArgs]), peer);
  }
  if (backend.kind === "user") return await qemuOnPasst(ctx, ns, guestArgs);
  await ip(["netns", "exec", ns, "ip", "tuntap", "add", "tap0", "mode", "tap", "vnet_hdr"]);
  try {
    await ip(["netns", "exec", ns, "ip", "addr", "add", `${TAP_IP}/24`, "dev", "tap0"]);
    await ip(["netns", "exec", ns, "ip", "link", "set", "tap0", "up"]);
    const cmd = qemuCommand(ctx, 128, ctx.tools.guest, { append: guestArgs.join(" "), net: qemuNet(backend, "") });
    return await withPeer(ctx, ns, cmd, peer);
  } finally {
    await ip(["netns", "exec", ns, "ip", "link", "del", "tap0"]).catch(() => {});
  }
}

/** QEMU on a passt of its own, started the way lguest starts one (foreground, one client, a private socket). */
async function qemuOnPasst(ctx: BenchContext, ns: string, guestArgs: string[]): Promise<GuestRun> {
  const dir = await Deno.makeTempDir({ prefix: "lguest-bench-passt-" });
  const socket = `${dir}/passt.socket`;
  // As root passt drops to nobody before it binds the socket (as lib/virtio/net/passt.ts arranges for lguest).
  const runas = Deno.uid() === 0 ? ["--runas", `${NOBODY}:${NOBODY}`] : [];
  if (Deno.uid() === 0) await Deno.chown(dir, NOBODY, NOBODY);
  const passt = new Deno.Command("ip", {
    args: ["netns", "exec", ns, "passt", "-f", "-1", "-q", "-s", socket, ...runas],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    let listening = false;
    for (let i = 0; i < 500 && !listening; i++) {
      try {
        listening = (await Deno.lstat(socket)).isSocket === true;
      } catch {
        await new Promise((r) => setTimeout(r, 10));
      }
    }
    if (!listening) return { guest: "passt did not listen within 5 s", host: "" };
    const cmd = qemuCommand(ctx, 128, ctx.tools.guest, {
      append: guestArgs.join(" "),
      net: qemuNet({ kind: "user" }, socket),
    });
    return await withPeer(ctx, ns, cmd, undefined);
  } finally {
    try {
      passt.kill("SIGTERM");
    } catch {
      // Gone already (--one-off ends it with its client).
    }
    await passt.status;
    await Deno.remove(dir, { recursive: true });
  }
}

/** Runs net_host `args` alone in `ns` (the host's own limit). */
export async function hostLimit(ctx: BenchContext, ns: string, args: string[]): Promise<string> {
  const r = await runToEnd(["ip", "netns", "exec", ns, ctx.tools.netHost, ...args], 60_000);
  return r.stdout + r.stderr;
}

/** True where QEMU's tap backend can use vhost-net. */
export async function haveVhostNet(): Promise<boolean> {
  try {
    return (await Deno.stat("/dev/vhost-net")).isCharDevice === true;
  } catch {
    return false;
  }
}

/**
 * Gives `ns` what passt insists on, an interface with a default route (a veth pair: 10.98.0.2/24 on one end,
 * the gateway 10.98.0.1 on the other), for the length of `body`.
 */
export async function withRoute<T>(ns: string, body: () => Promise<T>): Promise<T> {
  const inNs = (...args: string[]) => ip(["netns", "exec", ns, "ip", ...args]);
  await inNs("link", "add", "pv0", "type", "veth", "peer", "name", "pv1");
  try {
    await inNs("addr", "add", "10.98.0.2/24", "dev", "pv0");
    await inNs("addr", "add", "10.98.0.1/32", "dev", "pv1");
    for (const dev of ["lo", "pv0", "pv1"]) await inNs("link", "set", dev, "up");
    await inNs("route", "add", "default", "via", "10.98.0.1");
    return await body();
  } finally {
    await inNs("link", "del", "pv0").catch(() => {});
  }
}
