/*L:420 One run() of a machine, where the threads meet. The main
 * thread makes the event loop, one mailbox per vCPU for its forwarded
 * register writes (V:241), the devices' transports with their doorbells
 * and interrupt lines, and the keyboard's wiring; then it hands each vCPU's
 * Worker its numbers and serves until one of two things ends the run: a
 * vCPU stops (the guest reset or powered off on any of them, or someone
 * asked them to stop), or the loop fails (its wait, an interrupt that cannot be raised, a
 * handler). In the second case nothing serves the devices any more, so the
 * vCPU is stopped before they are torn down, and run() rejects with the
 * loop's one-line error. Either way the session's own descriptors are given
 * back before run() settles; what the machine built stays for close(). :*/

import type { GuestMemory } from "../memory.ts";
import type { Vm } from "../kvm/vm.ts";
import type { Vcpu } from "../kvm/vcpu.ts";
import { EventLoop } from "../eventloop.ts";
import { ConsoleInput, consoleInputTarget } from "../console_input.ts";
import { COM1_IRQ, Serial8250 } from "../devices/serial.ts";
import { I8042 } from "../devices/i8042.ts";
import { close, drainEventfd, eventfd } from "../sys/calls.ts";
import { EPOLL } from "../sys/epoll.ts";
import type { VcpuThread } from "../vcpu_thread.ts";
import type { VcpuExit } from "../vcpu_protocol.ts";
import { ConsoleDevice } from "../virtio/console/device.ts";
import { MmioDevices, type MmioSlot } from "../virtio/mmio/set.ts";
import { MailboxServer } from "../virtio/mmio/proxy.ts";
import type { MachineConfig } from "./config.ts";
import { MP_STATE } from "../kvm/ioctl.ts";
import type { ScriptConsole } from "../script/console.ts";

/** What a run needs from its machine. */
export interface SessionParts {
  readonly vm: Vm;
  readonly memory: GuestMemory;
  /** The vCPUs, index = APIC id, and their Workers, in the same order. */
  readonly vcpus: readonly Vcpu[];
  /** See vcpus. */
  readonly threads: readonly VcpuThread[];
  readonly slots: readonly MmioSlot[];
  /** The UART's shared state, the same for the main thread and the vCPU thread. */
  readonly serial: SharedArrayBuffer;
  readonly config: MachineConfig;
  /** The command line as written (its last console= decides where the keyboard goes). */
  readonly cmdline: string;
  /** The scripted console, if the serial port is wired to one instead of stdio. */
  readonly script: ScriptConsole | undefined;
}

/** How a session asks its machine to stop the vCPU. */
export interface SessionControl {
  /** Asks the vCPU to stop (three Ctrl-C). */
  stop(): void;
  /** Stops every vCPU and resolves once all are out of KVM_RUN (true) or one was given up on (false). */
  halt(): Promise<boolean>;
}

/** One run of a machine: built by run(), served until the vCPU stops or the loop fails. */
export class RunSession {
  readonly #parts: SessionParts;
  readonly #control: SessionControl;
  #devices: MmioDevices | undefined;
  #aborted = false;

  constructor(parts: SessionParts, control: SessionControl) {
    this.#parts = parts;
    this.#control = control;
  }

  /** Lets go of a vCPU waiting on the device mailbox, so that it can see its stop flag. */
  releaseMailbox(): void {
    this.#devices?.stop();
  }

  /**
   * Serves the guest until a vCPU ends the run (or all are stopped), then stops the others.
   * @returns how the run ended (L:421)
   * @throws what ended the event loop; every vCPU is out of KVM_RUN (or given up on) by then
   */
  async serve(): Promise<VcpuExit> {
    const { vm, memory, vcpus, threads, slots, config } = this.#parts;
    const loop = new EventLoop();
    const fds: number[] = [];
    let input: { close(): void } | undefined;
    const script = this.#parts.script;
    let why = "the run ended";
    try {
      script?.attach(loop);
      const spaceFd = eventfd();
      fds.push(spaceFd);
      const mailbox = { shared: vcpus.map(() => MailboxServer.shared()), fd: eventfd() };
      fds.push(mailbox.fd);
      const i8042 = I8042.sharedState();
      const verbose = config.verbose ?? false;
      const log = (line: string, always = false) => {
        if (always || verbose) console.error(`lguest: ${line}`);
      };
      this.#devices = new MmioDevices(slots, vm, memory, loop, mailbox, log);
      const serial = new Serial8250(this.#parts.serial, { irq: (level) => vm.irqLine(COM1_IRQ, level) });
      input = this.#wireInput(loop, serial, spaceFd);
      const hvcOut = config.timings && (() => config.timings?.mark("first console byte")); // a phase (L:430)
      for (const d of config.devices ?? []) if (d instanceof ConsoleDevice) d.onOutput(hvcOut);
      await Promise.all(threads.map((thread, id) =>
        thread.start({
          id,
          vcpuFd: vcpus[id]!.fd,
          vmFd: vm.fd,
          runAddress: vcpus[id]!.runAddress.toString(),
          runSize: vcpus[id]!.runSize,
          consoleFd: script?.guestFd ?? config.consoleOutputFd ?? 1,
          serial: this.#parts.serial,
          i8042,
          spaceFd,
          control: new SharedArrayBuffer(16),
          virtio: slots.map((s) => ({ name: s.device.name, base: s.base, image: s.image })),
          mailbox: mailbox.shared[id]!,
          mailboxFd: mailbox.fd,
          verbose,
          acpi: config.acpi !== false,
          timings: config.timings?.shared,
        })
      ));
      const running = loop.run();
      const first = Promise.race(threads.map((t) => t.done));
      const ended = await Promise.race([first, running.then(() => first)]);
      // Whichever vCPU ended the run, the others stop too before anything is reported.
      await this.#control.halt();
      loop.stop();
      await running;
      const all = await Promise.all(threads.map((t) => t.done));
      if (verbose && all.length > 1) all.forEach((r, id) => log(describeVcpuEnd(id, r, vcpus[id]!)));
      let result = verdict(ended, all);
      if (this.#aborted && result.clean) {
        result = { ...result, end: "stopped", clean: false, reason: "stopped by the user (three Ctrl-C)" };
      }
      why = `the run ended (${result.reason})`;
      return result;
    } finally {
      // The vCPUs first: once they are out of KVM_RUN nothing reaches the devices from the guest's side.
      await this.#control.halt();
      script?.detach(why);
      input?.close();
      this.#devices?.close();
      loop.close();
      for (const fd of fds) close(fd);
    }
  }

  /*V:375 Wiring the keyboard. Input goes to one console (V:374): the
   * virtio console's receive(), which says when it has room through its
   * space listener, or the UART's receive ring, which lives in shared memory
   * and says so through an eventfd its vCPU thread signals. Either way the
   * pump stops reading stdin while the guest is not taking input. A
   * terminal's size changes (SIGWINCH) reach the virtio console's config. :*/
  #wireInput(loop: EventLoop, serial: Serial8250, spaceFd: number): { close(): void } {
    const { config, cmdline } = this.#parts;
    const hvc = config.devices?.findLast((d): d is ConsoleDevice => d instanceof ConsoleDevice);
    const toHvc = hvc !== undefined && consoleInputTarget(cmdline) === "hvc0";
    const script = this.#parts.script;
    const fd = script?.guestFd ?? (config.consoleInputFd === undefined ? 0 : config.consoleInputFd);
    let input: ConsoleInput | undefined;
    loop.add(spaceFd, EPOLL.IN, () => {
      drainEventfd(spaceFd);
      if (!toHvc) input?.resume();
    });
    if (fd !== null) {
      const sink = toHvc ? (b: Uint8Array) => hvc.receive(b) : (b: Uint8Array) => serial.receive(b);
      input = new ConsoleInput(loop, fd, sink, script ? () => {} : () => this.#abort());
      if (toHvc) hvc.onSpace(() => input?.resume());
    }
    const resized = () => hvc?.refreshSize();
    if (hvc !== undefined) Deno.addSignalListener("SIGWINCH", resized);
    return {
      close() {
        input?.close();
        hvc?.onSpace(undefined);
        if (hvc !== undefined) Deno.removeSignalListener("SIGWINCH", resized);
        loop.remove(spaceFd);
      },
    };
  }

  #abort(): void {
    this.#aborted = true;
    this.#control.stop();
  }
}

/*L:421 One verdict for many vCPUs. The vCPU that ended the run speaks for
 * it (its reset, power-off or failure), unless another vCPU went wrong on
 * the way out: a vCPU given up on (L:415) keeps its own reason, since that
 * is what the user must hear about. The exit counts add up. :*/
function verdict(ended: VcpuExit, all: readonly VcpuExit[]): VcpuExit {
  const worst = ended.clean ? all.find((r) => !r.clean) ?? ended : ended;
  return { ...worst, exits: all.reduce((n, r) => n + r.exits, 0) };
}

/*L:422 Where each vCPU was when an SMP run ended. A guest that hangs
 * with several vCPUs is told apart by where they all were: one spinning on
 * a lock, an application processor never started (still UNINITIALIZED),
 * one halted. --verbose prints a line per vCPU; a vCPU given up on is not
 * asked, since its thread may still be inside KVM_RUN. :*/
function describeVcpuEnd(id: number, r: VcpuExit, vcpu: Vcpu): string {
  let state = "unknown";
  if (!r.reason.includes("given up on")) {
    try {
      const n = vcpu.mpState();
      state = Object.entries(MP_STATE).find(([, v]) => v === n)?.[0] ?? String(n);
    } catch (e) {
      state = `unreadable (${e instanceof Error ? e.message : String(e)})`;
    }
  }
  return `vCPU ${id}: ${r.reason} at rip ${
    r.rip === undefined ? "unknown" : `0x${r.rip.toString(16)}`
  }, mp state ${state}, ${r.exits} exits`;
}
