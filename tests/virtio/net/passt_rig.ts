/*T:468 passt will not start without somewhere to go: it copies the
 * host's addresses, routes and MAC from the interface with the default
 * route, and refuses a namespace that has none. So each passt test makes a
 * namespace of its own (NetNs, T:550) holding a veth pair (this kernel may
 * have no dummy driver) with an address and a default route through a
 * gateway, which is a local /32 on the pair's other end: passt reads the
 * addresses and the route from there, and an ICMP echo it sends to the
 * gateway is answered by the namespace's own stack (once ICMP sockets are
 * open to passt's group, allowPing()). The tests never leave the namespace. And a few ways to see processes: whether one
 * still exists, and which passt processes live in a given namespace. :*/

import { NetNs } from "./netns.ts";

/** The namespace's side: its address, its gateway, the prefix. */
export const PASST_NET = { ip: [10, 77, 0, 2], gateway: [10, 77, 0, 1], prefix: 24 } as const;

/**
 * Whether passt can run here, or why not: it must be installed, and it isolates itself in a
 * user namespace of its own, which a chrooted process may not make.
 */
export async function passtProblem(): Promise<string | undefined> {
  try {
    const r = await new Deno.Command("passt", { args: ["--version"], stdout: "null", stderr: "null" }).output();
    if (!r.success) return "passt --version failed";
  } catch {
    return "passt is not installed (apt-get install passt)";
  }
  const u = await new Deno.Command("unshare", { args: ["--user", "true"], stdout: "null", stderr: "piped" }).output()
    .catch(() => undefined);
  if (u === undefined || !u.success) {
    const why = u === undefined ? "no unshare(1)" : new TextDecoder().decode(u.stderr).trim();
    return `passt cannot make its user namespace here (${why})`;
  }
  return undefined;
}

/** A new namespace with a veth pair, an address and a default route; passt starts in it. */
export async function routableNetNs(): Promise<NetNs> {
  const ns = await NetNs.create();
  try {
    await ns.ip("link", "add", "pv0", "type", "veth", "peer", "name", "pv1");
    await ns.ip("addr", "add", `${PASST_NET.ip.join(".")}/${PASST_NET.prefix}`, "dev", "pv0");
    for (const dev of ["lo", "pv0", "pv1"]) await ns.ip("link", "set", dev, "up");
    await ns.ip("route", "add", "default", "via", PASST_NET.gateway.join("."));
    // The gateway answers too (a local address, on the veth's other end): an echo passt sends there comes back.
    await ns.ip("addr", "add", `${PASST_NET.gateway.join(".")}/32`, "dev", "pv1");
    return ns;
  } catch (e) {
    await ns.delete();
    throw e;
  }
}

/** Lets every group open ICMP echo sockets in `ns` (passt runs as nobody and pings through one). */
export async function allowPing(ns: NetNs): Promise<void> {
  const r = await new Deno.Command("ip", {
    args: ["netns", "exec", ns.name, "sh", "-c", "echo '0 2147483647' > /proc/sys/net/ipv4/ping_group_range"],
    stderr: "piped",
  }).output();
  if (!r.success) throw new Error(`ping_group_range in ${ns.name}: ${new TextDecoder().decode(r.stderr).trim()}`);
}

/** True while process `pid` exists and is not a zombie. */
export function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

/** Waits up to `ms` for `pid` to be gone; returns whether it went. */
export async function gone(pid: number, ms = 5000): Promise<boolean> {
  const until = Date.now() + ms;
  while (alive(pid)) {
    if (Date.now() > until) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

/** The pids of live passt processes in namespace `ns`. */
export function passtIn(ns: NetNs): number[] {
  const want = Deno.statSync(`/run/netns/${ns.name}`).ino;
  const out: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    const pid = Number(e.name);
    try {
      if (!Deno.readTextFileSync(`/proc/${pid}/comm`).startsWith("passt")) continue;
      if (Deno.readLinkSync(`/proc/${pid}/ns/net`) !== `net:[${want}]`) continue;
      if (alive(pid)) out.push(pid);
    } catch {
      // It went while we looked.
    }
  }
  return out;
}
