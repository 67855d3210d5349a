/*V:464 --net=user: a network without root, a tap or a bridge. passt (from
 * the passt package) is a user-mode network stack: it answers the guest's
 * ARP, DHCP and NDP itself, forwards DNS, and carries the guest's TCP and
 * UDP over ordinary sockets of its own, so the guest reaches whatever the
 * launcher's user could. We start it, it listens on a UNIX socket in a
 * private temporary directory, we connect, and from then on frames cross
 * that socket with the stream framing (V:460, V:463).
 *
 * It must never outlive us. It runs in the foreground (-f) as our child,
 * with -1 (--one-off): once its one client is gone, it exits. Our socket
 * closes when we close the port, and also when the kernel tears the
 * launcher down, however it died (an error, a signal, SIGKILL), so passt
 * follows. A parent-death signal would not do: passt changes its
 * credentials (to nobody, or into a user namespace), which clears it. On
 * close() we also send SIGTERM, and `exited` resolves once it is reaped.
 * Between the spawn and the connect (milliseconds) a failure of ours kills
 * it too. As root passt drops to nobody before binding the socket, so the
 * directory is then handed to nobody (and we tell passt which uid). :*/

import { AF_UNIX, close, connectUnix, setNonBlocking, SOCK_STREAM, socket } from "../../sys/calls.ts";
import { SysError } from "../../sys/errno.ts";
import { StreamPort, type StreamPortOptions } from "./stream_port.ts";

/** The one line a host without passt gets. */
export const PASST_MISSING = "--net=user needs passt: apt-get install passt";

/** The uid and gid passt runs as when started by root (Debian's nobody). */
const NOBODY = 65534;

/** Options for {@link PasstPort.start}. */
export interface PasstOptions extends StreamPortOptions {
  /** More passt arguments (port forwards: `-t`, `-u`; addresses: `--address`, ...). */
  args?: readonly string[];
  /** The passt program (default "passt", found on PATH). */
  binary?: string;
  /** How long to wait for passt's socket (default 5000 ms). */
  timeoutMs?: number;
  /** A command passt runs under, which must exec it (tests: `ip netns exec <ns>`). */
  prefix?: readonly string[];
}

/** What passt printed on stderr, its last few KiB, without syslog complaints. */
class Tail {
  text = "";
  async collect(stream: ReadableStream<Uint8Array>): Promise<void> {
    const dec = new TextDecoder();
    try {
      for await (const chunk of stream) this.text = (this.text + dec.decode(chunk, { stream: true })).slice(-4096);
    } catch {
      // The pipe went away with passt: what we have is all there is.
    }
  }
  get last(): string {
    const lines = this.text.split("\n").map((l) => l.trim()).filter((l) => l !== "" && !/to syslog$/.test(l));
    return lines.slice(-3).join("; ");
  }
}

/** A {@link StreamPort} to a passt process of its own. */
export class PasstPort extends StreamPort {
  /** passt's process id. */
  readonly pid: number;
  /** Resolves once passt has exited and been reaped. */
  readonly exited: Promise<Deno.CommandStatus>;
  readonly #child: Deno.ChildProcess;
  readonly #dir: string;
  #closed = false;

  private constructor(fd: number, child: Deno.ChildProcess, dir: string, options: StreamPortOptions) {
    super(fd, { peer: "passt", ...options });
    this.#child = child;
    this.pid = child.pid;
    this.exited = child.status;
    this.#dir = dir;
  }

  /**
   * Starts passt and connects to it.
   * @param options passt's extra arguments, the program, the wait
   * @returns the port; close() it to end passt
   * @throws Error with one line: {@link PASST_MISSING}, or what passt said when it would not start
   */
  static async start(options: PasstOptions = {}): Promise<PasstPort> {
    const dir = Deno.makeTempDirSync({ prefix: "lguest-passt-" });
    const path = `${dir}/passt.socket`;
    const args = ["-f", "-q", "-1", "-s", path];
    if (Deno.uid() === 0) {
      Deno.chownSync(dir, NOBODY, NOBODY);
      args.push("--runas", `${NOBODY}:${NOBODY}`);
    }
    args.push(...(options.args ?? []));
    let child: Deno.ChildProcess;
    try {
      const [program, ...before] = [...(options.prefix ?? []), options.binary ?? "passt"];
      child = new Deno.Command(program!, { args: [...before, ...args], stdin: "null", stdout: "null", stderr: "piped" })
        .spawn();
    } catch (e) {
      Deno.removeSync(dir, { recursive: true });
      if (e instanceof Deno.errors.NotFound) throw new Error(PASST_MISSING);
      throw new Error(`--net=user: cannot start passt: ${e instanceof Error ? e.message : String(e)}`);
    }
    const tail = new Tail();
    void tail.collect(child.stderr);
    let exit: Deno.CommandStatus | undefined;
    void child.status.then((s) => exit = s);
    let fd = -1;
    try {
      fd = await connectWhenReady(path, options.timeoutMs ?? 5000, () => exit, tail);
      setNonBlocking(fd);
      const port = new PasstPort(fd, child, dir, options);
      fd = -1;
      // The socket has served its purpose: passt takes no second client (-1).
      Deno.removeSync(dir, { recursive: true });
      return port;
    } catch (e) {
      close(fd);
      stop(child);
      await child.status;
      Deno.removeSync(dir, { recursive: true });
      throw e;
    }
  }

  /** Closes the socket (passt then exits by itself) and sends passt SIGTERM as well. Safe twice. */
  override close(): void {
    super.close();
    if (this.#closed) return;
    this.#closed = true;
    stop(this.#child);
    try {
      Deno.removeSync(this.#dir, { recursive: true });
    } catch {
      // Already gone (the usual case: start() removed it).
    }
  }
}

function stop(child: Deno.ChildProcess): void {
  try {
    child.kill("SIGTERM");
  } catch {
    // It has exited already.
  }
}

async function connectWhenReady(
  path: string,
  timeoutMs: number,
  exited: () => Deno.CommandStatus | undefined,
  tail: Tail,
): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = exited();
    if (s !== undefined) {
      await new Promise((r) => setTimeout(r, 50)); // let its last words arrive
      const said = tail.last;
      throw new Error(`--net=user: passt exited with status ${s.code} before it listened${said ? `: ${said}` : ""}`);
    }
    const fd = socket(AF_UNIX, SOCK_STREAM);
    try {
      connectUnix(fd, path);
      return fd;
    } catch (e) {
      close(fd);
      if (!(e instanceof SysError) || (e.code !== "ENOENT" && e.code !== "ECONNREFUSED")) throw e;
    }
    if (Date.now() > deadline) throw new Error(`--net=user: passt did not open ${path} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
