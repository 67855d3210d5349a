/*K:130 A VM is a file descriptor that owns guest memory slots, the in-kernel
 * interrupt controllers and the vCPUs. The launcher asks for the in-kernel
 * PIC, IOAPIC and LAPICs (KVM_CREATE_IRQCHIP) and the in-kernel PIT, so the
 * guest's timer ticks and interrupt routing never leave the host kernel; we
 * only pull interrupt lines and, for virtio, wire eventfds straight to GSIs
 * (irqfd) and doorbell addresses straight to eventfds (ioeventfd). :*/

import { close, ioctl, ioctlInt } from "../sys/mod.ts";
import type { MemoryRegion } from "../memory.ts";
import { KVM, KVM_CONST } from "./ioctl.ts";
import type { Kvm } from "./kvm.ts";
import {
  KVM_IOEVENTFD,
  KVM_IRQ_LEVEL,
  KVM_IRQFD,
  KVM_PIT_CONFIG,
  KVM_USERSPACE_MEMORY_REGION,
  setField,
} from "./structs.ts";

/** Drives one interrupt line; usable from any thread that knows the VM fd. */
export function irqLine(vmFd: number, irq: number, level: boolean, scratch = new Uint8Array(KVM_IRQ_LEVEL.size)): void {
  const v = new DataView(scratch.buffer);
  setField(v, 0, KVM_IRQ_LEVEL.fields.irq, irq);
  setField(v, 0, KVM_IRQ_LEVEL.fields.level, level ? 1 : 0);
  ioctl(vmFd, KVM.IRQ_LINE, scratch, "KVM_IRQ_LINE");
}

/** One virtual machine. */
export class Vm {
  #fd: number;

  private constructor(fd: number) {
    this.#fd = fd;
  }

  /** Creates a VM on an open /dev/kvm. */
  static create(kvm: Kvm): Vm {
    return new Vm(ioctlInt(kvm.fd, KVM.CREATE_VM, 0, "KVM_CREATE_VM"));
  }

  /** The VM descriptor. */
  get fd(): number {
    return this.#fd;
  }

  /** Registers guest RAM regions, one memory slot each. */
  mapMemory(hostAddress: bigint, regions: readonly MemoryRegion[]): void {
    const L = KVM_USERSPACE_MEMORY_REGION;
    regions.forEach((r, slot) => {
      const buf = new Uint8Array(L.size);
      const v = new DataView(buf.buffer);
      setField(v, 0, L.fields.slot, slot);
      setField(v, 0, L.fields.guest_phys_addr, BigInt(r.gpa));
      setField(v, 0, L.fields.memory_size, BigInt(r.size));
      setField(v, 0, L.fields.userspace_addr, hostAddress + BigInt(r.offset));
      ioctl(this.#fd, KVM.SET_USER_MEMORY_REGION, buf, "KVM_SET_USER_MEMORY_REGION");
    });
  }

  /** Places KVM's private TSS (three pages, outside RAM). */
  setTssAddr(addr: number): void {
    ioctlInt(this.#fd, KVM.SET_TSS_ADDR, addr, "KVM_SET_TSS_ADDR");
  }

  /** Places KVM's identity-map page (outside RAM). */
  setIdentityMapAddr(addr: number): void {
    const buf = new BigUint64Array([BigInt(addr)]);
    ioctl(this.#fd, KVM.SET_IDENTITY_MAP_ADDR, buf, "KVM_SET_IDENTITY_MAP_ADDR");
  }

  /** Creates the in-kernel PIC pair, IOAPIC and local APICs. */
  createIrqchip(): void {
    ioctlInt(this.#fd, KVM.CREATE_IRQCHIP, 0, "KVM_CREATE_IRQCHIP");
  }

  /** Creates the in-kernel 8254 timer (speaker port left to us). */
  createPit(): void {
    const buf = new Uint8Array(KVM_PIT_CONFIG.size);
    setField(new DataView(buf.buffer), 0, KVM_PIT_CONFIG.fields.flags, KVM_CONST.PIT_SPEAKER_DUMMY);
    ioctl(this.#fd, KVM.CREATE_PIT2, buf, "KVM_CREATE_PIT2");
  }

  /** Sets an interrupt line's level (ISA IRQs 0-15 reach PIC and IOAPIC). */
  irqLine(irq: number, level: boolean): void {
    irqLine(this.#fd, irq, level);
  }

  /** Makes a write to `eventFd` inject `gsi` (KVM_IRQFD). */
  irqfd(eventFd: number, gsi: number): void {
    const L = KVM_IRQFD;
    const buf = new Uint8Array(L.size);
    const v = new DataView(buf.buffer);
    setField(v, 0, L.fields.fd, eventFd);
    setField(v, 0, L.fields.gsi, gsi);
    ioctl(this.#fd, KVM.IRQFD, buf, "KVM_IRQFD");
  }

  /**
   * Makes a guest write of `len` bytes at `addr` signal `eventFd` instead
   * of exiting (KVM_IOEVENTFD). With `datamatch`, only that value does.
   */
  ioeventfd(addr: number, len: number, eventFd: number, options: { pio?: boolean; datamatch?: number } = {}): void {
    const L = KVM_IOEVENTFD;
    const buf = new Uint8Array(L.size);
    const v = new DataView(buf.buffer);
    let flags = options.pio ? KVM_CONST.IOEVENTFD_FLAG_PIO : 0;
    if (options.datamatch !== undefined) {
      flags |= KVM_CONST.IOEVENTFD_FLAG_DATAMATCH;
      setField(v, 0, L.fields.datamatch, BigInt(options.datamatch));
    }
    setField(v, 0, L.fields.addr, BigInt(addr));
    setField(v, 0, L.fields.len, len);
    setField(v, 0, L.fields.fd, eventFd);
    setField(v, 0, L.fields.flags, flags);
    ioctl(this.#fd, KVM.IOEVENTFD, buf, "KVM_IOEVENTFD");
  }

  /** KVM_CREATE_VCPU: returns the new vCPU's descriptor. */
  createVcpuFd(id: number): number {
    return ioctlInt(this.#fd, KVM.CREATE_VCPU, id, "KVM_CREATE_VCPU");
  }

  /** Closes the VM descriptor; safe twice. */
  close(): void {
    close(this.#fd);
    this.#fd = -1;
  }
}
