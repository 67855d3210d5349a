/*T:238 How the Linux boot tests boot a kernel: the launcher as a child
 * process (inside a network namespace when the boot has a tap), its console
 * and stderr collected, and ended by SIGTERM when the test has seen enough,
 * when the time is up, or when the guest has said nothing for a minute (a
 * healthy boot is never quiet so long; a stalled one, T:236, is). SIGTERM
 * first, so that the launcher with --verbose says where each vCPU was
 * stopped, then SIGKILL ten seconds later if it does not end. :*/

import type { NetNs } from "../virtio/net/netns.ts";
import type { StallView } from "./emulator_stall.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
/** A boot whose console says nothing for this long has stalled (T:236). */
const SILENT_MS = 60_000;

/** One boot's outcome. */
export interface Boot extends StallView {
  /** The launcher's exit status; undefined when the test ended it on purpose. */
  code: number | undefined;
  /** The guest's console (the launcher's stdout). */
  console: string;
}

/** What to boot and how. */
export interface BootSpec {
  kernel: string;
  initrd: string;
  memoryMib: number;
  /** Launcher options before the memory size. */
  options: readonly string[];
  /** The kernel's command line. */
  cmdline: readonly string[];
  /** A network namespace to run the launcher in (for taps). */
  netns?: NetNs | undefined;
  timeoutMs: number;
  /** Ends the boot early once the console satisfies it. */
  enough?: (console: string) => boolean;
}

/**
 * Boots a kernel with `deno run cli.ts --verbose ...` and collects its output.
 * @param spec the kernel, initrd, options and limits
 * @returns the console, the launcher's stderr and how it ended
 */
export async function bootLinux(spec: BootSpec): Promise<Boot> {
  const launcher = [
    Deno.execPath(),
    "run",
    "-A",
    `${ROOT}cli.ts`,
    "--verbose",
    ...spec.options,
    `--initrd=${spec.initrd}`,
    `${spec.memoryMib}`,
    spec.kernel,
    ...spec.cmdline,
  ];
  const argv = spec.netns ? ["ip", "netns", "exec", spec.netns.name, ...launcher] : launcher;
  const child = new Deno.Command(argv[0]!, { args: argv.slice(1), stdin: "null", stdout: "piped", stderr: "piped" })
    .spawn();
  const dec = new TextDecoder();
  let out = "";
  let err = "";
  const errDone = (async () => {
    for await (const chunk of child.stderr) err += dec.decode(chunk);
  })();
  let killer: ReturnType<typeof setTimeout> | undefined;
  let timedOut = false;
  const outOfTime = () => {
    if (timedOut) return;
    timedOut = true;
    child.kill("SIGTERM");
    killer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  };
  const started = Date.now();
  let heard = started;
  const timer = setInterval(() => {
    const now = Date.now();
    if (now - started > spec.timeoutMs || now - heard > SILENT_MS) outOfTime();
  }, 1000);
  let stopped = false;
  for await (const chunk of child.stdout) {
    heard = Date.now();
    out += dec.decode(chunk);
    if (!stopped && spec.enough?.(out)) {
      stopped = true;
      child.kill("SIGTERM");
    }
  }
  const status = await child.status;
  clearInterval(timer);
  clearTimeout(killer);
  await errDone;
  return { code: stopped ? undefined : status.code, timedOut, console: out, stderr: err };
}

/** The last `n` lines of `text`, for failure messages short enough to survive a truncated CI log. */
export function lastLines(text: string, n: number): string {
  return text.trimEnd().split("\n").slice(-n).join("\n");
}

/**
 * Runs `check` on a boot; if it throws, the error it rethrows carries the
 * tails of the guest's console and the launcher's stderr, so the failure
 * explains itself where CI prints it (the ERRORS section), not pages above.
 * @param b the boot
 * @param check its assertions
 */
export function explained(b: Boot, check: () => void): void {
  try {
    check();
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    throw new Error(
      `${why}\n--- guest console, last 25 lines ---\n${lastLines(b.console, 25)}\n` +
        `--- launcher stderr, last 12 lines ---\n${lastLines(b.stderr, 12)}\n--- exit: ${b.code}`,
      { cause: e },
    );
  }
}
