/*T:316 What a process exposes to the rest of the machine. Stopping a guest
 * once opened Deno's debugger on 127.0.0.1:9229 (chapter L:410), so the
 * tests that stop guests look at the running process from outside: which
 * of its file descriptors are sockets (the `socket:[inode]` links under
 * /proc/<pid>/fd), and which of those inodes the kernel's tables of TCP
 * and UDP sockets (/proc/<pid>/net/tcp, tcp6, udp, udp6, as seen from the
 * process's own network namespace) list as listening. The tables hold
 * every socket of the namespace, other programs' too; only the inode ties
 * an entry to our process. A zombie has no fds left and would pass any
 * such check, so the process must be alive before and after the look. :*/

import assert from "node:assert/strict";

/** What Deno prints when its inspector starts listening. */
export const DEBUGGER_BANNER = "Debugger listening";

/** One TCP or UDP socket of a process. */
export interface InetSocket {
  /** The /proc/net table it was found in. */
  table: "tcp" | "tcp6" | "udp" | "udp6";
  /** Local address and port, e.g. "127.0.0.1:9229". */
  local: string;
  /** The kernel's state number (0x0a is TCP LISTEN; 0x07 an unconnected UDP socket). */
  state: number;
  /** The socket's inode. */
  inode: number;
}

const TABLES = ["tcp", "tcp6", "udp", "udp6"] as const;
const TCP_LISTEN = 0x0a;

/** Throws unless `pid` exists and is not a zombie. */
export function assertAlive(pid: number): void {
  let stat: string;
  try {
    stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new Error(`process ${pid} has exited`);
    throw e;
  }
  const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  if (state === "Z" || state === "X") throw new Error(`process ${pid} has exited (state ${state})`);
}

/** The inodes of the sockets `pid` has open. */
export function socketInodes(pid: number): Set<number> {
  const inodes = new Set<number>();
  for (const e of Deno.readDirSync(`/proc/${pid}/fd`)) {
    let target: string;
    try {
      target = Deno.readLinkSync(`/proc/${pid}/fd/${e.name}`);
    } catch {
      continue; // closed while we looked
    }
    const m = /^socket:\[(\d+)\]$/.exec(target);
    if (m) inodes.add(Number(m[1]));
  }
  return inodes;
}

function hexAddress(field: string): string {
  const [addr = "", port = ""] = field.split(":");
  const p = parseInt(port, 16);
  if (addr.length === 8) {
    const n = parseInt(addr, 16);
    return `${n & 0xff}.${(n >>> 8) & 0xff}.${(n >>> 16) & 0xff}.${n >>> 24}:${p}`;
  }
  return `[${addr}]:${p}`;
}

/**
 * The TCP and UDP sockets `pid` owns, from the kernel's tables.
 * @param pid a live process
 * @returns its sockets, any state; throws if it is not alive
 */
export function inetSockets(pid: number): InetSocket[] {
  assertAlive(pid);
  let inodes: Set<number>;
  try {
    inodes = socketInodes(pid);
  } catch (e) {
    assertAlive(pid); // it exited while we looked: say so
    throw e;
  }
  const found: InetSocket[] = [];
  for (const table of TABLES) {
    let text: string;
    try {
      text = Deno.readTextFileSync(`/proc/${pid}/net/${table}`);
    } catch (e) {
      assertAlive(pid);
      if (e instanceof Deno.errors.NotFound) continue; // no IPv6 here
      throw e;
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      const inode = Number(f[9]);
      if (!inodes.has(inode)) continue;
      found.push({ table, local: hexAddress(f[1]!), state: parseInt(f[3]!, 16), inode });
    }
  }
  assertAlive(pid);
  return found;
}

/**
 * The sockets of `pid` that someone else could reach: TCP ones in LISTEN
 * and every UDP one (an entry in the UDP table is bound, so it receives).
 * @param pid a live process
 * @returns the listening sockets; throws if the process is not alive
 */
export function listeningSockets(pid: number): InetSocket[] {
  return inetSockets(pid).filter((s) => s.table.startsWith("udp") || s.state === TCP_LISTEN);
}

/** Asserts that live process `pid` listens on no TCP or UDP socket. */
export function assertNotListening(pid: number, when: string): void {
  const open = listeningSockets(pid);
  assert.deepEqual(open, [], `${when}: process ${pid} listens on ${open.map((s) => `${s.table} ${s.local}`)}`);
}

/**
 * Watches the process for `ms` milliseconds, asserting every `everyMs` that
 * it is alive and listens on nothing.
 */
export async function watchNotListening(pid: number, when: string, ms: number, everyMs = 100): Promise<void> {
  const end = performance.now() + ms;
  do {
    assertNotListening(pid, when);
    await new Promise((r) => setTimeout(r, everyMs));
  } while (performance.now() < end);
  assertNotListening(pid, when);
}

/** Collects a child's output stream as text and lets a test wait for a marker in it. */
export class StreamText {
  #text = "";
  #waiters: Array<() => void> = [];
  /** Resolves when the stream has ended. */
  readonly done: Promise<void>;

  /** Starts reading `stream` to its end. */
  constructor(stream: ReadableStream<Uint8Array>) {
    const dec = new TextDecoder();
    this.done = (async () => {
      for await (const chunk of stream) {
        this.#text += dec.decode(chunk, { stream: true });
        for (const w of this.#waiters.splice(0)) w();
      }
      for (const w of this.#waiters.splice(0)) w();
    })();
  }

  /** Everything read so far. */
  get text(): string {
    return this.#text;
  }

  /**
   * Waits until `marker` has appeared (or throws after `timeoutMs`, or if the stream ends first).
   * @returns the text after the marker's first appearance
   */
  async waitFor(marker: string, timeoutMs: number): Promise<string> {
    const deadline = performance.now() + timeoutMs;
    let ended = false;
    this.done.then(() => ended = true);
    while (!this.#text.includes(marker)) {
      if (ended) throw new Error(`output ended without "${marker}":\n${this.#text}`);
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`no "${marker}" within ${timeoutMs} ms:\n${this.#text}`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        new Promise<void>((r) => this.#waiters.push(r)),
        new Promise<void>((r) => timer = setTimeout(r, Math.min(left, 200))),
        this.done,
      ]);
      clearTimeout(timer);
    }
    return this.#text.slice(this.#text.indexOf(marker) + marker.length);
  }
}
