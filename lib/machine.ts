/*L:105 Here the machine is assembled, in the order a PC would need it,
 * but only after everything the user handed us has been checked: the
 * memory size, the kernel and the initrd are read and run through the
 * loaders against the bare layout of guest RAM (L:111), so a file that is
 * not a kernel is refused before /dev/kvm is even opened. Then: spawn the
 * vCPU's Worker (a second JavaScript isolate, slower to start than the VM
 * is to build, so its modules load while we build), open KVM, make a VM
 * with its in-kernel interrupt controllers and timer, map guest RAM, load
 * the kernel and initrd, write the command line, the memory map and the
 * zero page, build the first page tables and GDT, create the vCPU and put
 * it at the kernel's 64-bit entry. run() hands the Worker its vCPU and
 * serves devices on the main thread's event loop until the guest stops.
 *
 * The machine owns its devices from the moment create() is called: if
 * create() fails it closes them, with everything else it took, so a failed
 * create() leaves no descriptor, thread or mapping behind and the process
 * can end by itself. close() gives everything back in one order, whatever
 * state the machine is in: stop the vCPU and wait until it is out of
 * KVM_RUN (at most two seconds, then its Worker is ended and, because the
 * thread might still be inside KVM_RUN, guest RAM and kvm_run are left
 * mapped rather than pulled from under it); let run() finish its own
 * teardown; close the devices and their threads; close the vCPU (unmapping
 * kvm_run); unmap guest RAM; close the VM and /dev/kvm. Nothing is
 * unmapped while another thread may still touch it. :*/

import { GuestMemory, type LoadTarget, MemoryLayout } from "./memory.ts";
import { Kvm } from "./kvm/kvm.ts";
import { Vm } from "./kvm/vm.ts";
import { Vcpu } from "./kvm/vcpu.ts";
import { BOOT_MSRS, guestCpuid, setLongModeEntry, wireLapic } from "./kvm/cpu_setup.ts";
import { type LoadedKernel, loadKernelImage } from "./boot/kernel.ts";
import { type InitrdPlacement, placeInitrd } from "./boot/initrd.ts";
import { encodeCmdline, joinCmdline, writeCmdline } from "./boot/cmdline.ts";
import { readImageFile } from "./boot/file.ts";
import { type E820Entry, e820ForMemory, validateMemorySize } from "./boot/e820.ts";
import { buildZeroPage } from "./boot/zeropage.ts";
import { buildIdentityMap } from "./boot/pagetables.ts";
import { BOOT_CS, BOOT_DS, writeGdt } from "./boot/gdt.ts";
import { writeMpTable } from "./boot/mptable.ts";
import { BOOT_STACK_TOP, IDT_ADDR, KVM_IDENTITY_MAP_ADDR, KVM_TSS_ADDR, ZERO_PAGE_ADDR } from "./boot/layout.ts";
import { EventLoop } from "./eventloop.ts";
import { ConsoleInput, consoleInputTarget } from "./console_input.ts";
import { COM1_IRQ, Serial8250 } from "./devices/serial.ts";
import { close, drainEventfd, eventfd } from "./sys/calls.ts";
import { EPOLL } from "./sys/epoll.ts";
import { VcpuThread } from "./vcpu_thread.ts";
import type { VcpuExit } from "./vcpu_protocol.ts";
import type { VirtioDevice } from "./virtio/device.ts";
import { ConsoleDevice } from "./virtio/console/device.ts";
import { layoutMmio, mmioCmdline, MmioDevices, type MmioSlot } from "./virtio/mmio/set.ts";
import { MailboxServer } from "./virtio/mmio/proxy.ts";

/** How to build a machine. */
export interface MachineConfig {
  /** Guest RAM in MiB. */
  memoryMiB: number;
  /** Path of an ELF vmlinux or a bzImage. */
  kernel: string;
  /** Path of an initrd / initramfs, if any. */
  initrd?: string | undefined;
  /** Kernel command line: a string, or arguments joined with spaces. */
  cmdline?: string | readonly string[] | undefined;
  /** Log unclaimed device accesses and boot decisions to stderr. */
  verbose?: boolean | undefined;
  /** Where the serial console writes (default 1, stdout). */
  consoleOutputFd?: number | undefined;
  /** Where the serial console reads (default 0, stdin; null for none). */
  consoleInputFd?: number | null | undefined;
  /** Back guest RAM with transparent huge pages. */
  hugePages?: boolean | undefined;
  /** /dev/kvm path (default /dev/kvm). */
  kvmPath?: string | undefined;
  /**
   * Virtio devices, in the order the guest should find them. The last {@link ConsoleDevice} among them is
   * hvc0: it gets the keyboard when the command line's last console= names hvc0. The machine owns them
   * from the moment {@link Machine.create} is called, whether it succeeds or not: a failed create() closes
   * them, and so does {@link Machine.close}.
   */
  devices?: readonly VirtioDevice[] | undefined;
}

/** What the launcher placed where, for --verbose and tests. */
export interface BootInfo {
  /** The kernel as loaded. */
  kernel: LoadedKernel;
  /** The initrd placement, if any. */
  initrd: InitrdPlacement | undefined;
  /** The command line as written. */
  cmdline: string;
  /** The memory map handed to the guest. */
  e820: readonly E820Entry[];
  /** Where the boot GDT is. */
  gdt: { base: number; limit: number };
}

/** How a run ended. */
export type RunResult = VcpuExit;

/** The most guest RAM we accept, in MiB (1 TiB). */
export const MAX_MEMORY_MIB = 1024 * 1024;

/** How long close() waits for the vCPU to leave KVM_RUN before it ends the vCPU's Worker. */
const VCPU_STOP_TIMEOUT_MS = 2000;

/**
 * A booted-but-not-yet-running virtual machine. It owns everything it builds, and its devices:
 * release it all with {@link Machine.close} (or `await using`), whatever state it is in.
 */
export class Machine {
  readonly #kvm: Kvm;
  readonly #vm: Vm;
  readonly #memory: GuestMemory;
  readonly #vcpu: Vcpu;
  readonly #config: MachineConfig;
  readonly #serial = Serial8250.sharedState();
  readonly #slots: MmioSlot[];
  #devices: MmioDevices | undefined;
  /** What went where. */
  readonly info: BootInfo;
  readonly #thread: VcpuThread;
  #ran = false;
  /** run()'s teardown, settled (never rejects); undefined until run() is called. */
  #running: Promise<void> | undefined;
  /** The vCPU stopped and out of KVM_RUN (true), or given up on after the timeout (false). */
  #halted: Promise<boolean> | undefined;
  /** close(), once called. */
  #closing: Promise<void> | undefined;

  private constructor(
    kvm: Kvm,
    vm: Vm,
    memory: GuestMemory,
    vcpu: Vcpu,
    config: MachineConfig,
    info: BootInfo,
    slots: MmioSlot[],
    thread: VcpuThread,
  ) {
    this.#slots = slots;
    this.#thread = thread;
    this.#kvm = kvm;
    this.#vm = vm;
    this.#memory = memory;
    this.#vcpu = vcpu;
    this.#config = config;
    this.info = info;
  }

  /** Guest RAM (the bounds-checked door). */
  get memory(): GuestMemory {
    return this.#memory;
  }

  /**
   * Builds the machine: checks the memory size, kernel and initrd first, then the vCPU's Worker, VM,
   * memory, boot data and vCPU at its entry, the Worker waiting to be started by run().
   * The machine owns `config.devices` from this call on, whether it succeeds or not: if create()
   * throws, it has closed them, and released everything else it had taken.
   * @param config memory size, kernel, initrd, command line, console fds, devices
   * @returns a machine ready to run(); close() it, run or not
   * @throws RangeError for a bad memory size, BootError for a kernel or initrd that cannot boot, or
   *   an error from KVM; the devices are closed either way
   */
  static create(config: MachineConfig): Machine {
    const devices = config.devices ?? [];
    const undo: Array<() => void> = [() => closeDevices(devices)];
    try {
      const bytes = memoryBytes(config.memoryMiB);
      validateMemorySize(bytes);
      const slots = layoutMmio(devices);
      const images = readImages(config);
      placeImages(new MemoryLayout(bytes), config, images, mmioCmdline(slots));

      const thread = VcpuThread.spawn();
      undo.push(() => thread.terminate());
      const kvm = Kvm.open(config.kvmPath);
      undo.push(() => kvm.close());
      const vm = Vm.create(kvm);
      undo.push(() => vm.close());
      vm.setIdentityMapAddr(KVM_IDENTITY_MAP_ADDR);
      vm.setTssAddr(KVM_TSS_ADDR);
      vm.createIrqchip();
      vm.createPit();

      const memory = GuestMemory.create(bytes, { hugePages: config.hugePages ?? false });
      undo.push(() => memory.close());
      vm.mapMemory(memory.hostAddress, memory.regions);

      const info = layOut(memory, config, images, mmioCmdline(slots));
      const vcpu = Vcpu.create(kvm, vm, 0);
      undo.push(() => vcpu.close());
      vcpu.setCpuid(guestCpuid(kvm, 0));
      vcpu.setMsrs(BOOT_MSRS);
      setLongModeEntry(vcpu, {
        entry: info.kernel.entry,
        zeroPage: ZERO_PAGE_ADDR,
        cr3: buildIdentityMap(memory),
        gdt: info.gdt,
        idt: { base: IDT_ADDR, limit: 0 },
        codeSelector: BOOT_CS,
        dataSelector: BOOT_DS,
        stack: BOOT_STACK_TOP,
      });
      wireLapic(vcpu);
      return new Machine(kvm, vm, memory, vcpu, config, info, slots, thread);
    } catch (e) {
      for (const u of undo.reverse()) {
        try {
          u();
        } catch {
          // Keep releasing; the caller needs the first error, not this one.
        }
      }
      throw e;
    }
  }

  /**
   * Runs the guest until it stops (reset, triple fault, power-off, stop(), close()).
   * @returns how the run ended
   * @throws Error if the machine already ran or is closed, or if serving its devices failed (the
   *   vCPU is then stopped and out of KVM_RUN before the error reaches the caller)
   */
  run(): Promise<RunResult> {
    if (this.#closing !== undefined || this.#ran) return Promise.reject(new Error("machine already ran or was closed"));
    this.#ran = true;
    const result = this.#serve();
    this.#running = result.then(() => {}, () => {});
    return result;
  }

  async #serve(): Promise<RunResult> {
    const loop = new EventLoop();
    const fds: number[] = [];
    let input: { close(): void } | undefined;
    try {
      const spaceFd = eventfd();
      fds.push(spaceFd);
      const mailbox = { shared: MailboxServer.shared(), fd: eventfd() };
      fds.push(mailbox.fd);
      const verbose = this.#config.verbose ?? false;
      const log = (line: string, always = false) => {
        if (always || verbose) console.error(`lguest: ${line}`);
      };
      this.#devices = new MmioDevices(this.#slots, this.#vm, this.#memory, loop, mailbox, log);
      const serial = new Serial8250(this.#serial, { irq: (level) => this.#vm.irqLine(COM1_IRQ, level) });
      input = this.#wireInput(loop, serial, spaceFd);
      await this.#thread.start({
        id: 0,
        vcpuFd: this.#vcpu.fd,
        vmFd: this.#vm.fd,
        runAddress: this.#vcpu.runAddress.toString(),
        runSize: this.#vcpu.runSize,
        consoleFd: this.#config.consoleOutputFd ?? 1,
        serial: this.#serial,
        spaceFd,
        control: new SharedArrayBuffer(16),
        virtio: this.#slots.map((s) => ({ name: s.device.name, base: s.base, image: s.image })),
        mailbox: mailbox.shared,
        mailboxFd: mailbox.fd,
        verbose,
      });
      const running = loop.run();
      // If the loop fails (its wait, an irqfd write, a handler), nothing serves the devices any
      // more: the finally below stops the vCPU before they are torn down; the caller gets the error.
      const result = await Promise.race([this.#thread.done, running.then(() => this.#thread.done)]);
      loop.stop();
      await running;
      return this.#aborted ? { ...result, clean: false, reason: "stopped by the user (three Ctrl-C)" } : result;
    } finally {
      // The vCPU first: once it is out of KVM_RUN nothing reaches the devices from the guest's side.
      await this.#haltVcpu();
      input?.close();
      this.#devices?.close();
      loop.close();
      for (const fd of fds) close(fd);
    }
  }

  #aborted = false;

  /*V:375 Wiring the keyboard. Input goes to one console (V:374): the
   * virtio console's receive(), which says when it has room through its
   * space listener, or the UART's receive ring, which lives in shared memory
   * and says so through an eventfd its vCPU thread signals. Either way the
   * pump stops reading stdin while the guest is not taking input. A
   * terminal's size changes (SIGWINCH) reach the virtio console's config. :*/
  #wireInput(loop: EventLoop, serial: Serial8250, spaceFd: number): { close(): void } {
    const hvc = this.#config.devices?.findLast((d): d is ConsoleDevice => d instanceof ConsoleDevice);
    const toHvc = hvc !== undefined && consoleInputTarget(this.info.cmdline) === "hvc0";
    const fd = this.#config.consoleInputFd === undefined ? 0 : this.#config.consoleInputFd;
    let input: ConsoleInput | undefined;
    loop.add(spaceFd, EPOLL.IN, () => {
      drainEventfd(spaceFd);
      if (!toHvc) input?.resume();
    });
    if (fd !== null) {
      const sink = toHvc ? (b: Uint8Array) => hvc.receive(b) : (b: Uint8Array) => serial.receive(b);
      input = new ConsoleInput(loop, fd, sink, () => this.#abort());
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
    this.stop();
  }

  /**
   * Asks the guest to stop; run() then resolves. Safe at any time: before run() and once the machine
   * is closed (or closing) it does nothing.
   */
  stop(): void {
    if (this.#closing !== undefined) return;
    this.#devices?.stop();
    this.#thread.stop();
  }

  /** Stops the vCPU and waits (bounded) until it is out of KVM_RUN; the first call decides, later calls share it. */
  #haltVcpu(): Promise<boolean> {
    if (this.#halted === undefined) {
      this.#devices?.stop(); // a vCPU waiting on the device mailbox is let go
      this.#halted = this.#thread.halt(VCPU_STOP_TIMEOUT_MS).then((out) => {
        if (!out) {
          console.error(
            `lguest: vCPU 0 did not leave KVM_RUN within ${VCPU_STOP_TIMEOUT_MS} ms; its thread was ended, ` +
              `and guest memory, kvm_run and the KVM descriptors are left as they are`,
          );
        }
        return out;
      });
    }
    return this.#halted;
  }

  /**
   * Releases everything, in one order: stops the vCPU and waits until it is out of KVM_RUN, lets
   * run() finish, closes the devices (and their threads), then the vCPU, guest memory, the VM and
   * /dev/kvm. Safe at any time, from any state, and more than once: every call returns the same
   * promise. A run() in progress resolves (stopped) before this does.
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
    let failure: { error: unknown } | undefined;
    try {
      closeDevices(this.#config.devices ?? []);
    } catch (e) {
      failure = { error: e };
    }
    if (out) {
      this.#vcpu.close();
      this.#memory.close();
      this.#vm.close();
      this.#kvm.close();
    }
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

function memoryBytes(mib: number): number {
  if (!Number.isInteger(mib) || mib <= 0) throw new RangeError(`memory must be a positive whole number of MiB`);
  if (mib > MAX_MEMORY_MIB) {
    throw new RangeError(`memory of ${mib} MiB is more than the ${MAX_MEMORY_MIB} MiB we allow`);
  }
  return mib * 1024 * 1024;
}

/** The kernel and initrd files, read once. */
interface BootImages {
  readonly kernel: Uint8Array;
  readonly initrd: Uint8Array | undefined;
}

function readImages(config: MachineConfig): BootImages {
  return {
    kernel: readImageFile(config.kernel, "kernel"),
    initrd: config.initrd === undefined ? undefined : readImageFile(config.initrd, "initrd"),
  };
}

/** Closes every device, even if one fails; rethrows the first failure. */
function closeDevices(devices: readonly VirtioDevice[]): void {
  let failure: { error: unknown } | undefined;
  for (const d of devices) {
    try {
      d.close();
    } catch (e) {
      failure ??= { error: e };
    }
  }
  if (failure !== undefined) throw failure.error;
}

/** Loads the kernel and initrd into `memory` (or a {@link MemoryLayout}, to check them) and checks the command line fits. */
function placeImages(
  memory: LoadTarget,
  config: MachineConfig,
  images: BootImages,
  extraArgs: readonly string[],
): { kernel: LoadedKernel; initrd: InitrdPlacement | undefined; cmdline: string } {
  const kernel = loadKernelImage(memory, images.kernel, config.kernel);
  const limits = { kernelEnd: kernel.kernelEnd, addrMax: kernel.initrdAddrMax };
  const initrd = images.initrd === undefined ? undefined : placeInitrd(memory, images.initrd, limits, config.initrd);
  const raw = config.cmdline ?? "";
  const user = typeof raw === "string" ? raw : joinCmdline(raw);
  const cmdline = [user, ...extraArgs].filter((s) => s.length > 0).join(" ");
  encodeCmdline(cmdline, kernel.cmdlineSize);
  return { kernel, initrd, cmdline };
}

/*L:115 The boot data, in dependency order: the kernel first (its size and
 * limits decide where the initrd may go and how long the command line may
 * be), then the initrd, the command line, and last the zero page that points
 * at all of them. The GDT and the MP table (how Linux finds the IOAPIC that
 * routes our devices' interrupts) sit in low memory the kernel leaves alone. :*/
function layOut(
  memory: GuestMemory,
  config: MachineConfig,
  images: BootImages,
  extraArgs: readonly string[],
): BootInfo {
  const { kernel, initrd, cmdline } = placeImages(memory, config, images, extraArgs);
  const placed = writeCmdline(memory, cmdline, kernel.cmdlineSize);
  const e820 = e820ForMemory(memory);
  buildZeroPage(memory, { setupHeader: kernel.setupHeader, cmdline: placed, initrd, e820 });
  const gdt = writeGdt(memory);
  writeMpTable(memory, { cpus: 1 });
  return { kernel, initrd, cmdline, e820, gdt };
}
