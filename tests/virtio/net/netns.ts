/*T:550 Network tests use real taps, and real taps are real interfaces:
 * left in the host's namespace they would be seen by everything else on
 * the machine. So every test that makes one first makes a network
 * namespace of its own (`ip netns add`), does all its networking inside it,
 * and deletes it afterwards, which takes every interface in it along.
 *
 * In a fresh namespace only `lo` exists, and it is down; we also switch
 * IPv6 off there, and IGMP reports for link-local groups, so the host
 * kernel does not start its own chatter (router solicitations, duplicate
 * address detection, multicast reports) when a tap comes up, and the only
 * frames on the wire are the ones a test sends and the replies it asks
 * for.
 *
 * Two ways in. The launcher, a separate process, simply runs under
 * `ip netns exec`. A test's own process moves its main thread in with
 * setns(2) for as long as it takes to open the fds it needs (a tap, a
 * control socket, a packet socket) and straight back out: an fd belongs to
 * the namespace it was made in, wherever it is used later. :*/

import { close, O, open, setns } from "../../../lib/sys/calls.ts";

/** setns(2) nstype for network namespaces (<sched.h> CLONE_NEWNET). */
const CLONE_NEWNET = 0x40000000;
let counter = 0;

async function run(cmd: string, args: string[]): Promise<{ ok: boolean; out: string; err: string }> {
  try {
    const r = await new Deno.Command(cmd, { args, stdin: "null", stdout: "piped", stderr: "piped" }).output();
    const dec = new TextDecoder();
    return { ok: r.success, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
  } catch (e) {
    return { ok: false, out: "", err: e instanceof Error ? e.message : String(e) };
  }
}

/** A network namespace owned by one test. */
export class NetNs {
  /** Its name under /run/netns. */
  readonly name: string;

  private constructor(name: string) {
    this.name = name;
  }

  /**
   * Creates a namespace with a unique name, IPv6 off.
   * @returns the namespace; delete it with {@link NetNs.delete}
   */
  static async create(): Promise<NetNs> {
    const name = `lgnet-${Deno.pid}-${++counter}`;
    const r = await run("ip", ["netns", "add", name]);
    if (!r.ok) throw new Error(`ip netns add ${name}: ${r.err.trim()}`);
    const ns = new NetNs(name);
    await run("ip", [
      "netns",
      "exec",
      name,
      "sh",
      "-c",
      "for f in all default; do echo 1 > /proc/sys/net/ipv6/conf/$f/disable_ipv6; done; " +
      "echo 0 > /proc/sys/net/ipv4/igmp_link_local_mcast_reports",
    ]);
    return ns;
  }

  /**
   * Runs `body` in a new namespace and deletes the namespace afterwards, however `body` ends.
   * @returns what `body` returned
   */
  static async use<T>(body: (ns: NetNs) => Promise<T> | T): Promise<T> {
    const ns = await NetNs.create();
    try {
      return await body(ns);
    } finally {
      await ns.delete();
    }
  }

  /**
   * Runs `ip -n <ns> args...`.
   * @returns its stdout
   * @throws Error with ip's stderr if it fails
   */
  async ip(...args: string[]): Promise<string> {
    const r = await run("ip", ["-n", this.name, ...args]);
    if (!r.ok) throw new Error(`ip -n ${this.name} ${args.join(" ")}: ${r.err.trim()}`);
    return r.out;
  }

  /** The MAC address of interface `dev` in the namespace. */
  async mac(dev: string): Promise<string> {
    const m = /link\/ether ([0-9a-f:]{17})/.exec(await this.ip("link", "show", dev));
    if (!m) throw new Error(`no MAC address for ${dev}`);
    return m[1]!;
  }

  /**
   * Runs `fn` with this thread inside the namespace, then moves it back.
   * Keep `fn` synchronous: an await would let other code run in here.
   */
  enter<T>(fn: () => T): T {
    const home = open("/proc/thread-self/ns/net", O.RDONLY);
    try {
      const there = open(`/run/netns/${this.name}`, O.RDONLY);
      try {
        setns(there, CLONE_NEWNET);
      } finally {
        close(there);
      }
      try {
        return fn();
      } finally {
        setns(home, CLONE_NEWNET);
      }
    } finally {
      close(home);
    }
  }

  /** Deletes the namespace and every interface in it. */
  async delete(): Promise<void> {
    const r = await run("ip", ["netns", "delete", this.name]);
    if (!r.ok) console.warn(`ip netns delete ${this.name}: ${r.err.trim()}`);
  }
}

/** Why namespace-and-tap tests cannot run here, or undefined if they can. */
export async function netnsProblem(): Promise<string | undefined> {
  if (Deno.build.os !== "linux") return "network namespaces and taps need Linux";
  try {
    Deno.statSync("/dev/net/tun");
  } catch {
    return "/dev/net/tun does not exist (no tun driver)";
  }
  const v = await run("ip", ["-V"]);
  if (!v.ok) return `the ip tool (iproute2) is not available: ${v.err.trim()}`;
  let ns: NetNs;
  try {
    ns = await NetNs.create();
  } catch (e) {
    return `cannot create a network namespace (${e instanceof Error ? e.message : String(e)})`;
  }
  try {
    await ns.ip("tuntap", "add", "probe0", "mode", "tap");
  } catch (e) {
    return `cannot create a tap in a namespace (${e instanceof Error ? e.message : String(e)})`;
  } finally {
    await ns.delete();
  }
  return undefined;
}
