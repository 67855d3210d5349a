/*L:447 One command in a fresh guest, the way `docker run` or virtme-ng's
 * `vng --exec` feels: boot the kernel with the runner's initramfs (L:446)
 * and the console held by this program (L:441), pass the guest's console
 * through untouched until the begin marker (that is the boot, shown only
 * with `bootLog`), then hand the command's output on as it arrives, holding
 * back only a tail that could be the start of the end marker, and take
 * the exit status from that marker. A guest that stops before the marker
 * (a panic, a kernel without a serial console, the machine stopped) is a
 * failed run, with the console's last lines, never a made-up status. :*/

import { Machine } from "../machine.ts";
import type { MachineConfig, RunResult } from "../machine/config.ts";
import type { VirtioDevice } from "../virtio/device.ts";
import { beginMarker, endMarker, runInitramfs } from "./initramfs.ts";

/** What {@link runCommand} runs, and where. */
export interface RunCommandOptions {
  /** An ELF vmlinux or bzImage with a serial console (8250) built in: its path or its bytes. */
  kernel: string | Uint8Array;
  /** The shell command (run by busybox sh in the guest). */
  command: string;
  /** Guest RAM in MiB (default 256). */
  memoryMiB?: number | undefined;
  /** vCPUs (default 1). */
  cpus?: number | undefined;
  /** ACPI tables (default true; false for kernels without CONFIG_ACPI). */
  acpi?: boolean | undefined;
  /** Extra kernel command-line words. */
  cmdline?: readonly string[] | undefined;
  /** Devices for the guest; the machine owns and closes them. */
  devices?: readonly VirtioDevice[] | undefined;
  /** /dev/kvm path. */
  kvmPath?: string | undefined;
  /** The launcher's own --verbose lines on stderr. */
  verbose?: boolean | undefined;
  /** Receives the command's output as it arrives (default: this process's stdout). */
  output?: ((bytes: Uint8Array) => void) | undefined;
  /** Receives the boot's console output, before the command starts (default: dropped). */
  bootLog?: ((bytes: Uint8Array) => void) | undefined;
  /** Aborting it stops the guest; the result then says the command did not finish. */
  signal?: AbortSignal | undefined;
}

/** How a command run ended. */
export interface CommandResult {
  /** The command's exit status, or undefined if the guest stopped before it finished. */
  status: number | undefined;
  /** How the machine's run ended. */
  run: RunResult;
  /** The console's last lines, for a message when `status` is undefined. */
  lastLines: string[];
}

/** Kernel words every run gets: the serial console, no kernel chatter, no reboot loop on a panic. */
export const RUN_CMDLINE = ["console=ttyS0", "quiet", "loglevel=0", "panic=-1"];

/**
 * Boots a guest, runs one shell command in it and returns its exit status.
 * @param opts the kernel, the command and the machine
 * @returns the status (undefined if the guest stopped first) and how the run ended
 * @throws what Machine.create() or run() throws (bad kernel, no KVM, no static busybox)
 */
export async function runCommand(opts: RunCommandOptions): Promise<CommandResult> {
  const nonce = crypto.randomUUID().replaceAll("-", "").slice(0, 16);
  const initrd = await runInitramfs({ command: opts.command, nonce });
  const config: MachineConfig = {
    memoryMiB: opts.memoryMiB ?? 256,
    kernel: opts.kernel,
    initrd,
    cmdline: [...RUN_CMDLINE, ...(opts.cmdline ?? [])],
    console: "script",
    acpi: opts.acpi,
    cpus: opts.cpus,
    devices: opts.devices,
    kvmPath: opts.kvmPath,
    verbose: opts.verbose,
  };
  await using machine = Machine.create(config);
  const filter = new MarkerFilter(nonce, opts.output ?? ((b) => writeAllSync(b)), opts.bootLog);
  const reader = machine.console.readable.getReader();
  const stop = () => machine.stop();
  opts.signal?.addEventListener("abort", stop);
  try {
    if (opts.signal?.aborted) stop();
    const running = machine.run();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      filter.push(value);
    }
    const run = await running;
    return { status: filter.status, run, lastLines: machine.console.lastLines() };
  } finally {
    opts.signal?.removeEventListener("abort", stop);
    reader.releaseLock();
  }
}

/**
 * Writes all of `bytes` to a Deno stream (stdout by default), retrying short writes.
 * @param bytes what to write
 * @param to where (default Deno.stdout)
 */
export function writeAllSync(bytes: Uint8Array, to: { writeSync(p: Uint8Array): number } = Deno.stdout): void {
  for (let off = 0; off < bytes.length;) off += to.writeSync(bytes.subarray(off));
}

/** Splits the console's bytes at the two markers (L:447). */
export class MarkerFilter {
  readonly #begin: Uint8Array;
  readonly #end: Uint8Array;
  readonly #output: (b: Uint8Array) => void;
  readonly #bootLog: ((b: Uint8Array) => void) | undefined;
  #state: "boot" | "command" | "after" = "boot";
  #pending: Uint8Array = new Uint8Array(0);
  /** The command's status, once its end marker has been seen. */
  status: number | undefined;

  /**
   * @param nonce the run's marker nonce
   * @param output receives the command's output
   * @param bootLog receives what came before the begin marker
   */
  constructor(nonce: string, output: (b: Uint8Array) => void, bootLog?: (b: Uint8Array) => void) {
    const enc = new TextEncoder();
    this.#begin = enc.encode(`${beginMarker(nonce)}\n`);
    this.#end = enc.encode(`${endMarker(nonce)} `);
    this.#output = output;
    this.#bootLog = bootLog;
  }

  /** Feeds console bytes. */
  push(chunk: Uint8Array): void {
    if (this.#state === "after") return;
    const buf = new Uint8Array(this.#pending.length + chunk.length);
    buf.set(this.#pending);
    buf.set(chunk, this.#pending.length);
    this.#pending = buf;
    if (this.#state === "boot") {
      const at = indexOf(buf, this.#begin);
      if (at < 0) {
        this.#pending = this.#release(buf, this.#begin, this.#bootLog);
        return;
      }
      this.#bootLog?.(buf.subarray(0, at));
      this.#pending = buf.slice(at + this.#begin.length);
      this.#state = "command";
    }
    const data = this.#pending;
    const at = indexOf(data, this.#end);
    if (at < 0) {
      this.#pending = this.#release(data, this.#end, this.#output);
      return;
    }
    const nl = data.indexOf(0x0a, at + this.#end.length);
    if (nl < 0) {
      // The status digits are still on their way: hand on what precedes the marker, keep the marker.
      if (at > 0) this.#output(data.slice(0, at));
      this.#pending = data.slice(at);
      return;
    }
    if (at > 0) this.#output(data.slice(0, at));
    const digits = new TextDecoder().decode(data.subarray(at + this.#end.length, nl)).trim();
    this.status = /^\d+$/.test(digits) ? Number(digits) : undefined;
    this.#state = "after";
    this.#pending = new Uint8Array(0);
  }

  /** Passes on all but the longest tail of `buf` that could be the start of `marker`; returns that tail. */
  #release(buf: Uint8Array, marker: Uint8Array, to: ((b: Uint8Array) => void) | undefined): Uint8Array {
    let keep = Math.min(buf.length, marker.length - 1);
    while (keep > 0 && !startsWith(marker, buf.subarray(buf.length - keep))) keep--;
    const cut = buf.length - keep;
    if (cut > 0) to?.(buf.slice(0, cut));
    return buf.slice(cut);
  }
}

function startsWith(whole: Uint8Array, part: Uint8Array): boolean {
  for (let i = 0; i < part.length; i++) if (whole[i] !== part[i]) return false;
  return true;
}

function indexOf(hay: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}
