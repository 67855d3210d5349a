/*L:105 Here the machine is assembled, in the order a PC would need it:
 * open KVM, make a VM with its in-kernel interrupt controllers and timer,
 * map guest RAM, load the kernel and initrd, write the command line, the
 * memory map and the zero page, build the first page tables and GDT, create
 * the vCPU and put it at the kernel's 64-bit entry. The vCPU's Worker is
 * spawned before all that: it is a second JavaScript isolate, slower to
 * start than the VM is to build, and its modules load while we build. Then
 * run() hands the Worker its vCPU and serves devices on the main thread's
 * event loop until the guest stops. Everything acquired is released by
 * close(), which is safe to call at any point, including after a failed
 * create(). :*/

import { GuestMemory } from "./memory.ts";
import { Kvm } from "./kvm/kvm.ts";
import { Vm } from "./kvm/vm.ts";
import { Vcpu } from "./kvm/vcpu.ts";
import { BOOT_MSRS, guestCpuid, setLongModeEntry, wireLapic } from "./kvm/cpu_setup.ts";
import { type LoadedKernel, loadKernel } from "./boot/kernel.ts";
import { type InitrdPlacement, loadInitrd } from "./boot/initrd.ts";
import { joinCmdline, writeCmdline } from "./boot/cmdline.ts";
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
import { ConsoleDevice } from "./virtio/console.ts";
import { layoutMmio, mmioCmdline, MmioDevices, type MmioSlot } from "./virtio/mmio_set.ts";
import { MailboxServer } from "./virtio/mmio_proxy.ts";

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
   * hvc0: it gets the keyboard when the command line's last console= names hvc0.
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

/** A booted-but-not-yet-running virtual machine. */
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
  #loop: EventLoop | undefined;
  #ran = false;
  #closed = false;

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
   * Builds the machine: VM, memory, kernel, boot data, vCPU at its entry,
   * and the vCPU's Worker, waiting to be started by run().
   * @param config memory size, kernel, initrd, command line, console fds
   * @returns a machine ready to run(); close() it, run or not
   */
  static create(config: MachineConfig): Machine {
    const bytes = memoryBytes(config.memoryMiB);
    validateMemorySize(bytes);
    const thread = VcpuThread.spawn();
    const undo: Array<() => void> = [() => thread.terminate()];
    try {
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

      const slots = layoutMmio(config.devices ?? []);
      const info = layOut(memory, config, mmioCmdline(slots));
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
      for (const u of undo.reverse()) u();
      throw e;
    }
  }

  /**
   * Runs the guest until it stops (reset, triple fault, power-off, stop()).
   * @returns how the run ended
   */
  async run(): Promise<RunResult> {
    if (this.#closed || this.#ran) throw new Error("machine already ran or was closed");
    this.#ran = true;
    const loop = new EventLoop();
    this.#loop = loop;
    const spaceFd = eventfd();
    const mailbox = { shared: MailboxServer.shared(), fd: eventfd() };
    const verbose = this.#config.verbose ?? false;
    const log = (line: string, always = false) => {
      if (always || verbose) console.error(`lguest: ${line}`);
    };
    this.#devices = new MmioDevices(this.#slots, this.#vm, this.#memory, loop, mailbox, log);
    const serial = new Serial8250(this.#serial, { irq: (level) => this.#vm.irqLine(COM1_IRQ, level) });
    const input = this.#wireInput(loop, serial, spaceFd);
    try {
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
      let result: RunResult;
      try {
        result = await Promise.race([this.#thread.done, running.then(() => this.#thread.done)]);
        loop.stop();
        await running;
      } catch (e) {
        // The loop failed (its wait, an irqfd write, a handler): nothing serves the devices any more,
        // so the vCPU is stopped too before they are torn down; the caller reports the error.
        this.stop();
        throw e;
      }
      return this.#aborted ? { ...result, clean: false, reason: "stopped by the user (three Ctrl-C)" } : result;
    } finally {
      input.close();
      this.#devices.close();
      loop.close();
      close(spaceFd);
      close(mailbox.fd);
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

  /** Asks the guest to stop; run() then resolves. Safe at any time. */
  stop(): void {
    this.#devices?.stop();
    this.#thread.stop();
  }

  /** Releases the vCPU and its Worker, memory, VM and /dev/kvm. Safe to call twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#thread.terminate();
    this.#vcpu.close();
    this.#memory.close();
    this.#vm.close();
    this.#kvm.close();
  }
}

function memoryBytes(mib: number): number {
  if (!Number.isInteger(mib) || mib <= 0) throw new RangeError(`memory must be a positive whole number of MiB`);
  if (mib > MAX_MEMORY_MIB) {
    throw new RangeError(`memory of ${mib} MiB is more than the ${MAX_MEMORY_MIB} MiB we allow`);
  }
  return mib * 1024 * 1024;
}

/*L:115 The boot data, in dependency order: the kernel first (its size and
 * limits decide where the initrd may go and how long the command line may
 * be), then the initrd, the command line, and last the zero page that points
 * at all of them. The GDT and the MP table (how Linux finds the IOAPIC that
 * routes our devices' interrupts) sit in low memory the kernel leaves alone. :*/
function layOut(memory: GuestMemory, config: MachineConfig, extraArgs: readonly string[]): BootInfo {
  const kernel = loadKernel(memory, config.kernel);
  const initrd = config.initrd === undefined
    ? undefined
    : loadInitrd(memory, config.initrd, { kernelEnd: kernel.kernelEnd, addrMax: kernel.initrdAddrMax });
  const raw = config.cmdline ?? "";
  const user = typeof raw === "string" ? raw : joinCmdline(raw);
  const cmdline = [user, ...extraArgs].filter((s) => s.length > 0).join(" ");
  const placed = writeCmdline(memory, cmdline, kernel.cmdlineSize);
  const e820 = e820ForMemory(memory);
  buildZeroPage(memory, { setupHeader: kernel.setupHeader, cmdline: placed, initrd, e820 });
  const gdt = writeGdt(memory);
  writeMpTable(memory, { cpus: 1 });
  return { kernel, initrd, cmdline, e820, gdt };
}
