/*V:240 All virtio-mmio devices of one machine. Devices get windows from
 * VIRTIO_MMIO_BASE up and IRQs from 5 up (skipping 8, the RTC's, and 13, the
 * FPU's), in command-line order, so the first --block is /dev/vda and the
 * first --tunnet is eth0, as in the original. Each is declared to the guest
 * kernel on its command line (virtio_mmio.device=4K@<base>:<irq>).
 *
 * The wiring is what keeps exits away: every queue's doorbell is an
 * ioeventfd (KVM signals an eventfd when the guest writes that queue's index
 * to QueueNotify, without stopping the vCPU), and every device's interrupt
 * is an irqfd (we write an eventfd, KVM raises the IRQ). The transport hands
 * both to the device in its queue sessions, and the device watches its
 * doorbells itself; the main loop here watches only the mailbox of
 * forwarded register writes. :*/

import { close, drainEventfd, eventfd } from "../../sys/calls.ts";
import { EPOLL } from "../../sys/epoll.ts";
import type { EventLoop } from "../../eventloop.ts";
import type { GuestMemory } from "../../memory.ts";
import type { Vm } from "../../kvm/vm.ts";
import { VIRTIO_MMIO_BASE, VIRTIO_MMIO_SIZE } from "../../boot/layout.ts";
import type { VirtioDevice } from "../device.ts";
import { MmioTransport } from "./transport.ts";
import { MMIO_REG, MMIO_WINDOW } from "./regs.ts";
import { MailboxSet } from "./proxy.ts";

/** IRQs handed to virtio devices, in order. */
export const VIRTIO_IRQS: readonly number[] = [5, 6, 7, 9, 10, 11, 12, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23];

/** Where one device sits. */
export interface MmioSlot {
  /** The device. */
  device: VirtioDevice;
  /** Window base address. */
  base: number;
  /** Its IRQ (GSI). */
  irq: number;
  /** The shared register image. */
  image: SharedArrayBuffer;
}

/** Assigns windows and IRQs to devices, in order. */
export function layoutMmio(devices: readonly VirtioDevice[]): MmioSlot[] {
  if (devices.length > VIRTIO_IRQS.length) {
    throw new RangeError(`too many virtio devices (${devices.length}); at most ${VIRTIO_IRQS.length}`);
  }
  return devices.map((device, i) => ({
    device,
    base: VIRTIO_MMIO_BASE + i * VIRTIO_MMIO_SIZE,
    irq: VIRTIO_IRQS[i]!,
    image: new SharedArrayBuffer(MMIO_WINDOW),
  }));
}

/** The kernel command-line words that declare `slots` to the guest. */
export function mmioCmdline(slots: readonly MmioSlot[]): string[] {
  return slots.map((s) => `virtio_mmio.device=4K@0x${s.base.toString(16)}:${s.irq}`);
}

/*V:241 With several vCPUs, several threads may write device registers at
 * the same moment. Each vCPU has its own mailbox, so two posted writes can
 * never overwrite each other's slots; they share one eventfd, and when it
 * rings the main thread serves every mailbox that has a write posted. A post
 * that lands after that scan rings the eventfd again, so none is missed. The
 * writes are applied one at a time, on this thread, in whatever order they
 * are found: the guest's driver holds its own lock across a register
 * sequence (select a queue, then program it), as it must on real hardware. :*/

/** The live devices: transports, doorbells, interrupts, mailboxes. */
export class MmioDevices {
  readonly transports: MmioTransport[] = [];
  readonly #fds: number[] = [];
  readonly #mailboxes: MailboxSet;
  readonly #loop: EventLoop;

  /**
   * @param slots from layoutMmio
   * @param vm for ioeventfd/irqfd registration
   * @param memory guest RAM
   * @param loop the main loop
   * @param mailboxes one shared mailbox per vCPU, and the eventfd they all ring
   * @param log the launcher's logger
   */
  constructor(
    slots: readonly MmioSlot[],
    vm: Vm,
    memory: GuestMemory,
    loop: EventLoop,
    mailboxes: { shared: readonly SharedArrayBuffer[]; fd: number },
    log: (line: string, always?: boolean) => void,
  ) {
    this.#loop = loop;
    this.#mailboxes = new MailboxSet(mailboxes.shared);
    loop.add(mailboxes.fd, EPOLL.IN, () => {
      drainEventfd(mailboxes.fd);
      this.#mailboxes.serve((w) => this.transports[w.device]?.write(w.offset, w.size, w.value));
    });
    for (const slot of slots) {
      const irqFd = this.#eventfd();
      vm.irqfd(irqFd, slot.irq);
      const doorbells = slot.device.queueSizes.map((_, q) => {
        const fd = this.#eventfd();
        vm.ioeventfd(slot.base + MMIO_REG.QUEUE_NOTIFY, 4, fd, { datamatch: q });
        return fd;
      });
      this.transports.push(
        new MmioTransport(slot.device, { memory, loop, image: slot.image, doorbells, irqfd: irqFd, log }),
      );
    }
  }

  #eventfd(): number {
    const fd = eventfd();
    this.#fds.push(fd);
    return fd;
  }

  /** Releases every vCPU waiting on its mailbox (at shutdown). */
  stop(): void {
    this.#mailboxes.stop();
  }

  /** Resets and closes every device, and closes the eventfds. */
  close(): void {
    this.stop();
    for (const t of this.transports) {
      t.reset();
      t.device.close();
    }
    for (const fd of this.#fds) {
      this.#loop.remove(fd);
      close(fd);
    }
    this.#fds.length = 0;
  }
}
