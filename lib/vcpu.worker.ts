/*L:400 This is the vCPU's own thread. It does one thing: call KVM_RUN,
 * synchronously, over and over, and handle each exit right here. A port
 * access costs a few microseconds this way; bouncing it to the main thread
 * would cost tens. Devices whose registers the guest pokes often (the UART)
 * therefore live on this thread, with any state the main thread needs kept
 * in shared memory. The thread ends when the guest stops or the main thread
 * raises the stop flag and kicks us out of KVM_RUN with a signal. :*/

import { Bus } from "./bus.ts";
import { handleExit } from "./kvm/exits.ts";
import { KVM } from "./kvm/ioctl.ts";
import { irqLine } from "./kvm/vm.ts";
import { I8042, I8042_DATA_PORT, PostCodePort } from "./devices/i8042.ts";
import { ACPI_SLEEP_PORT_BASE, ACPI_SLEEP_PORT_COUNT, AcpiSleepPort } from "./devices/acpi_sleep.ts";
import { COM1_BASE, COM1_IRQ, Serial8250 } from "./devices/serial.ts";
import { NoPciHost, PCI_CONFIG_PORT_BASE, PCI_CONFIG_PORT_COUNT } from "./devices/no_pci.ts";
import { BOOT_TIMER_ADDR, BOOT_TIMER_SIZE, BootTimer } from "./devices/boot_timer.ts";
import { bootClockMs, BootTimings } from "./timings.ts";
import { at, gettid, signalEventfd, writeAll } from "./sys/calls.ts";
import { lastErrno, libc } from "./sys/libc.ts";
import { Errno, errnoName } from "./sys/errno.ts";
import type { VcpuExit, VcpuInit, VcpuMessage } from "./vcpu_protocol.ts";
import { CONTROL, ENTRY } from "./vcpu_thread.ts";
import { MailboxClient, MmioProxy } from "./virtio/mmio/proxy.ts";
import { MMIO_WINDOW } from "./virtio/mmio/regs.ts";

const KVM_RUN_REQUEST = BigInt(KVM.RUN);
/** When this Worker's modules had loaded, for --timings (L:430). */
const modulesLoadedAt = bootClockMs();

function run(init: VcpuInit): VcpuExit {
  const stop = new Int32Array(init.control);
  const p = at(BigInt(init.runAddress));
  if (p === null) throw new Error("kvm_run at NULL");
  const run = new DataView(Deno.UnsafePointerView.getArrayBuffer(p, init.runSize));
  const out = new Uint8Array(1);
  const say = (line: string) => writeAll(2, new TextEncoder().encode(`lguest: ${line}\n`));
  const log = init.verbose ? say : undefined;
  const timings = init.timings === undefined ? undefined : BootTimings.attach(init.timings);
  if (init.id === 0) timings?.mark("modules loaded", modulesLoadedAt);

  const pio = new Bus("pio");
  const mmio = new Bus("mmio");
  const serial = new Serial8250(init.serial, {
    output: (b) => {
      timings?.mark("first console byte");
      out[0] = b;
      writeAll(init.consoleFd, out);
    },
    irq: (level) => irqLine(init.vmFd, COM1_IRQ, level),
    space: () => signalEventfd(init.spaceFd),
  });
  pio.add(COM1_BASE, 8, serial);
  const kbd = new I8042(init.i8042);
  pio.add(I8042_DATA_PORT, 5, kbd);
  pio.add(0x80, 1, new PostCodePort());
  pio.add(PCI_CONFIG_PORT_BASE, PCI_CONFIG_PORT_COUNT, new NoPciHost());
  if (init.acpi) pio.add(ACPI_SLEEP_PORT_BASE, ACPI_SLEEP_PORT_COUNT, new AcpiSleepPort());
  const mailbox = new MailboxClient(init.mailbox, init.mailboxFd);
  init.virtio.forEach((v, i) => mmio.add(v.base, MMIO_WINDOW, new MmioProxy(v.name, i, v.image, mailbox)));
  const ctx = log === undefined ? { pio, mmio } : { pio, mmio, log };
  mmio.add(
    BOOT_TIMER_ADDR,
    BOOT_TIMER_SIZE,
    new BootTimer({ timings, print: init.verbose || timings ? say : undefined }),
  );
  if (init.id === 0) timings?.mark("kernel entered");

  log?.(`vCPU ${init.id} running on thread ${gettid()}`);
  let exits = 0;
  for (;;) {
    if (Atomics.load(stop, CONTROL.STOP) !== 0) {
      return { end: "stopped", clean: true, reason: "stopped", exits, rip: ripOf(init) };
    }
    const r = libc.ioctl_int(init.vcpuFd, KVM_RUN_REQUEST, 0n);
    if (r < 0) {
      const e = lastErrno();
      if (e === Errno.EINTR || e === Errno.EAGAIN) continue;
      return { end: "error", clean: false, reason: `KVM_RUN failed: ${errnoName(e)}`, exits };
    }
    exits++;
    const result = handleExit(run, ctx);
    if (result.kind === "stop") {
      const end = result.clean ? result.end : "error";
      return { end, clean: result.clean, reason: result.reason, exits, rip: ripOf(init) };
    }
  }
}

/** Reads rip for the report; best effort. */
function ripOf(init: VcpuInit): bigint | undefined {
  const regs = new BigUint64Array(18);
  if (libc.ioctl(init.vcpuFd, BigInt(KVM.GET_REGS), Deno.UnsafePointer.of(regs)) < 0) return undefined;
  return regs[16]!;
}

/** The Worker global, typed narrowly (this file is checked with the Window lib). */
const port = self as unknown as {
  onmessage: ((ev: MessageEvent<VcpuInit>) => void) | null;
  postMessage(message: VcpuMessage): void;
};

port.onmessage = (ev) => {
  const init = ev.data;
  // A main thread that gave up waiting for us has claimed this word first: never touch the vCPU (L:415).
  if (Atomics.compareExchange(new Int32Array(init.control), CONTROL.ENTRY, 0, ENTRY.BEGUN) !== 0) return;
  port.postMessage({ type: "started", tid: gettid() });
  let result: VcpuExit;
  try {
    result = run(init);
  } catch (e) {
    result = {
      end: "error",
      clean: false,
      reason: `vCPU thread crashed: ${e instanceof Error ? e.message : String(e)}`,
      exits: 0,
    };
  }
  port.postMessage({ type: "exit", result });
};
