/*L:105 Here the machine is assembled, in the order a PC would need it,
 * but only after everything the user handed us has been checked: the
 * memory size, the kernel and the initrd are read and run through the
 * loaders against the bare layout of guest RAM (L:106, L:111), so a file
 * that is not a kernel is refused before /dev/kvm is even opened. Then:
 * spawn a Worker per vCPU (each a JavaScript isolate of its own, slower to
 * start than the VM is to build, so their modules load while we build), open KVM,
 * make a VM with its in-kernel interrupt controllers and timer, map guest
 * RAM, load the kernel and initrd, write the command line, the memory map
 * and the zero page, build the first page tables and GDT, create the vCPUs
 * and put the first at the kernel's 64-bit entry (L:118). run() hands each
 * Worker its vCPU and serves devices on the main thread's event loop until
 * the guest stops (L:420).
 *
 * The machine owns its devices from the moment create() is called: if
 * create() fails it closes them, with everything else it took, so a failed
 * create() leaves no descriptor, thread or mapping behind and the process
 * can end by itself. close() gives everything back in one order, whatever
 * state the machine is in: stop every vCPU and wait until all are out of
 * KVM_RUN (at most two seconds, all waited for at once; L:415 says what
 * happens after that); let run() finish its own teardown; close the devices
 * and their threads; close the vCPUs (unmapping kvm_run); unmap guest RAM;
 * close the VM and /dev/kvm. Nothing is unmapped while another thread may
 * still touch it: if even one vCPU was given up on, guest RAM, every kvm_run
 * and the KVM descriptors stay until the process ends. :*/

import type { GuestMemory } from "./memory.ts";
import { Serial8250 } from "./devices/serial.ts";
import { VcpuThread } from "./vcpu_thread.ts";
import type { MmioSlot } from "./virtio/mmio/set.ts";
import { type BootInfo, type MachineConfig, MAX_CPUS, MAX_MEMORY_MIB, type RunResult } from "./machine/config.ts";
import { assemble, type MachineParts, planBoot } from "./machine/build.ts";
import { RunSession } from "./machine/session.ts";
import { closeDevices, releaseAll } from "./machine/release.ts";
import { ScriptConsole } from "./script/console.ts";

export { MAX_CPUS, MAX_MEMORY_MIB };
export type { BootInfo, MachineConfig, RunResult };

/** How long stop() and close() wait for the vCPUs to leave KVM_RUN before they give up on a thread. */
export const VCPU_STOP_TIMEOUT_MS = 2000;

/**
 * A booted-but-not-yet-running virtual machine. It owns everything it builds, and its devices:
 * release it all with {@link Machine.close} (or `await using`), whatever state it is in.
 */
export class Machine {
  readonly #parts: MachineParts;
  readonly #config: MachineConfig;
  readonly #slots: MmioSlot[];
  readonly #threads: readonly VcpuThread[];
  readonly #serial = Serial8250.sharedState();
  readonly #script: ScriptConsole | undefined;
  /** What went where. */
  readonly info: BootInfo;
  /** The one run, once run() is called. */
  #session: RunSession | undefined;
  /** run()'s teardown, settled (never rejects); undefined until run() is called. */
  #running: Promise<void> | undefined;
  /** Every vCPU stopped and out of KVM_RUN (true), or one given up on after the timeout (false). */
  #halted: Promise<boolean> | undefined;
  /** close(), once called. */
  #closing: Promise<void> | undefined;

  private constructor(
    config: MachineConfig,
    slots: MmioSlot[],
    parts: MachineParts,
    threads: VcpuThread[],
    script: ScriptConsole | undefined,
  ) {
    this.#config = config;
    this.#script = script;
    this.#slots = slots;
    this.#parts = parts;
    this.#threads = threads;
    this.info = parts.info;
  }

  /**
   * The serial console, for a program to read, wait on and type into (L:441).
   * @throws Error unless the machine was created with `console: "script"`
   */
  get console(): ScriptConsole {
    if (this.#script === undefined) {
      throw new Error('machine.console: this machine\'s console is stdio; create it with console: "script"');
    }
    return this.#script;
  }

  /** Guest RAM (the bounds-checked door). */
  get memory(): GuestMemory {
    return this.#parts.memory;
  }

  /**
   * Builds the machine: checks the memory size, vCPU count, kernel and initrd first, then the vCPUs'
   * Workers, VM, memory, boot data and vCPUs (the first at its entry), the Workers waiting for run().
   * The machine owns `config.devices` from this call on, whether it succeeds or not: if create()
   * throws, it has closed them, and released everything else it had taken.
   * @param config memory size, vCPUs, kernel, initrd, command line, console fds, devices
   * @returns a machine ready to run(); close() it, run or not
   * @throws RangeError for a bad memory size or vCPU count, BootError for a kernel or initrd that cannot boot, or
   *   an error from KVM; the devices are closed either way
   */
  static create(config: MachineConfig): Machine {
    const undo: Array<() => void> = [() => closeDevices(config.devices ?? [])];
    try {
      const plan = planBoot(config);
      const threads: VcpuThread[] = [];
      for (let i = 0; i < (config.cpus ?? 1); i++) {
        const thread = VcpuThread.spawn();
        undo.push(() => thread.terminate());
        threads.push(thread);
      }
      let script: ScriptConsole | undefined;
      if (config.console === "script") {
        const made = new ScriptConsole();
        undo.push(() => made.close());
        script = made;
      }
      const parts = assemble(config, plan, undo);
      config.timings?.mark("VM built");
      return new Machine(config, plan.slots, parts, threads, script);
    } catch (e) {
      // Keep releasing past a failure: the caller needs the first error, the one that stopped create().
      releaseAll(undo.reverse());
      throw e;
    }
  }

  /**
   * Runs the guest until it stops (reset, triple fault, power-off, stop(), close()).
   * @returns how the run ended; `clean: false` with the reason if a vCPU had to be given up on
   *   because it did not stop within {@link VCPU_STOP_TIMEOUT_MS}
   * @throws Error if the machine already ran or is closed, or if serving its devices failed (the
   *   vCPUs are then stopped and out of KVM_RUN before the error reaches the caller)
   */
  run(): Promise<RunResult> {
    if (this.#closing !== undefined || this.#session !== undefined) {
      return Promise.reject(new Error("machine already ran or was closed"));
    }
    const { vm, memory, vcpus } = this.#parts;
    this.#session = new RunSession(
      {
        vm,
        memory,
        vcpus,
        threads: this.#threads,
        slots: this.#slots,
        serial: this.#serial,
        config: this.#config,
        cmdline: this.info.cmdline,
        script: this.#script,
      },
      { stop: () => this.stop(), halt: () => this.#haltVcpu() },
    );
    const result = this.#session.serve();
    this.#running = result.then(() => {}, () => {});
    void this.#running.then(() => this.#config.timings?.mark("guest stopped"));
    return result;
  }

  /**
   * Asks the guest to stop; run() then resolves, within {@link VCPU_STOP_TIMEOUT_MS} even if a vCPU
   * does not come out (it is then given up on, and run() says so). Safe at any time: before run() and
   * once the machine is closed (or closing) it does nothing.
   */
  stop(): void {
    if (this.#closing !== undefined || this.#session === undefined) return;
    void this.#haltVcpu();
  }

  /** Stops every vCPU and waits (bounded, all at once) until they are out of KVM_RUN; the first call decides. */
  #haltVcpu(): Promise<boolean> {
    if (this.#halted === undefined) {
      this.#session?.releaseMailbox(); // a vCPU waiting on its device mailbox is let go
      const each = this.#threads.map((t) => t.halt(VCPU_STOP_TIMEOUT_MS));
      this.#halted = Promise.all(each).then((out) => out.every(Boolean));
    }
    return this.#halted;
  }

  /**
   * Releases everything, in one order: stops the vCPUs and waits until they are out of KVM_RUN, lets
   * run() finish, closes the devices (and their threads), then the vCPUs, guest memory, the VM and
   * /dev/kvm. Safe at any time, from any state, and more than once: every call returns the same
   * promise. A run() in progress resolves (stopped) before this does. A vCPU given up on (see
   * {@link Machine.run}) keeps guest memory, every kvm_run and the KVM descriptors until the process ends.
   * @returns once everything is released
   * @throws the first error a device's close() threw, after releasing everything else
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    const out = await this.#haltVcpu();
    await this.#running;
    const { kvm, vm, memory, vcpus } = this.#parts;
    const failure = releaseAll([
      () => closeDevices(this.#config.devices ?? []),
      ...(out
        ? [
          () => this.#script?.close(),
          ...vcpus.map((v) => () => v.close()),
          () => memory.close(),
          () => vm.close(),
          () => kvm.close(),
        ]
        : []),
    ]);
    this.#config.timings?.mark("torn down");
    if (failure !== undefined) throw failure.error;
  }

  /**
   * Closes the machine, for `await using`.
   * @returns {@link Machine.close}'s promise
   */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
