/**
 * lguest: boot and script Linux guests on /dev/kvm from TypeScript.
 *
 * A {@link Machine} is built from a memory size, a kernel (ELF `vmlinux` or
 * `bzImage`), an optional initrd and a command line; `run()` starts its vCPU
 * thread and serves its devices until the guest resets, powers off or is
 * stopped. The machine owns the devices it is given from `create()` on, and
 * `close()` (or `await using`) releases everything: vCPU first, then devices,
 * then memory. Neither `stop()` nor `close()` waits more than
 * {@link VCPU_STOP_TIMEOUT_MS} for the vCPU: one that does not stop in time
 * is given up on, and `run()` says so.
 *
 * @example Boot a kernel with its console on this process's stdout
 * ```ts
 * import { kvmFlavour, Machine } from "./mod.ts";
 *
 * const kernel = Deno.env.get("LGUEST_KERNEL"); // a bzImage or vmlinux; without one (or KVM) this does nothing
 * if (kernel !== undefined && kvmFlavour() !== "none") {
 *   await using machine = Machine.create({
 *     memoryMiB: 256,
 *     kernel,
 *     cmdline: "console=ttyS0 earlyprintk=serial",
 *     consoleInputFd: null,
 *   });
 *   const result = await machine.run();
 *   console.log(result.clean ? "guest shut down" : `guest failed: ${result.reason}`);
 * }
 * ```
 *
 * @example Script the guest's serial console (examples/script_shell.ts is a complete script, run by a test)
 * ```ts
 * import { kvmFlavour, Machine } from "./mod.ts";
 *
 * const kernel = Deno.env.get("LGUEST_KERNEL"); // without one (or KVM) this does nothing
 * if (kernel !== undefined && kvmFlavour() !== "none") {
 *   await using machine = Machine.create({ memoryMiB: 256, kernel, cmdline: "console=ttyS0", console: "script" });
 *   const run = machine.run();
 *   const { before } = await machine.console.waitFor(/login: /, { timeoutMs: 60_000 });
 *   console.log(`the boot printed ${before.split("\n").length} lines before the login prompt`);
 *   machine.stop();
 *   console.log((await run).end); // "stopped"
 * }
 * ```
 *
 * @example A device of your own (examples/counting_rng_device.ts is a complete one, booted by a test)
 * ```ts
 * import {
 *   type DeviceContext, drainQueue, DEFAULT_BUDGET, LoopQueue, type QueueSession,
 *   VIRTIO_ID, type VirtioDevice, writeChain,
 * } from "./mod.ts";
 *
 * // An entropy device (the guest's virtio_rng drives it) that hands out zeros: never use it for real.
 * class ZeroRng implements VirtioDevice {
 *   readonly name = "zero-rng";
 *   readonly deviceId = VIRTIO_ID.RNG;
 *   readonly features = 0n;
 *   readonly queueSizes = [64];
 *   readonly config = new Uint8Array(0);
 *   #queue: LoopQueue | undefined;
 *   activate(ctx: DeviceContext, queues: ReadonlyArray<QueueSession | undefined>): void {
 *     this.reset();
 *     if (queues[0] === undefined) return;
 *     this.#queue = new LoopQueue(ctx, queues[0], (q) => {
 *       const { served, end } = drainQueue(q.vq, DEFAULT_BUDGET, (chain) => {
 *         const zeros = new Uint8Array(Math.min(chain.writableBytes, 4096));
 *         q.vq.pushUsed(chain.head, writeChain(ctx.memory, chain, zeros)); // bounds-checked guest writes
 *         return true;
 *       });
 *       if (served > 0) q.interrupt();
 *       return end;
 *     });
 *     this.#queue.run();
 *   }
 *   reset(): void {
 *     this.#queue?.close();
 *     this.#queue = undefined;
 *   }
 *   close(): void {
 *     this.reset();
 *   }
 * }
 * // Machine.create({ ..., devices: [new ZeroRng()] }) gives it to the guest; the machine closes it.
 * const device = new ZeroRng();
 * device.close();
 * ```
 *
 * @module
 */

export { Machine, MAX_CPUS, MAX_MEMORY_MIB, VCPU_STOP_TIMEOUT_MS } from "./lib/machine.ts";
export type { BootInfo, MachineConfig, RunResult } from "./lib/machine.ts";
export type { RunEnd } from "./lib/vcpu_protocol.ts";
export type { ImageSource } from "./lib/boot/file.ts";
export { DEFAULT_WAIT_MS, ScriptConsole } from "./lib/script/console.ts";
export type { ConsoleMatch, WaitOptions } from "./lib/script/console.ts";
export { RUN_CMDLINE, runCommand } from "./lib/run/command.ts";
export type { CommandResult, RunCommandOptions } from "./lib/run/command.ts";
export { runInitramfs, SHELL_PROMPT } from "./lib/run/initramfs.ts";
export type { RunInitramfsOptions } from "./lib/run/initramfs.ts";
export type { BootEntry, EntryChoice } from "./lib/machine/entry.ts";
export type { LoadedKernel } from "./lib/boot/kernel.ts";
export type { InitrdPlacement } from "./lib/boot/initrd.ts";
export type { E820Entry } from "./lib/boot/e820.ts";
export type { CpuidEntry } from "./lib/kvm/kvm.ts";
export { BOOT_TIMER_ADDR, BOOT_TIMER_MAGIC } from "./lib/devices/boot_timer.ts";
export { BOOT_TIMER_KEPT, BootTimings, formatTimings, PHASES } from "./lib/timings.ts";
export type { BootTimerMark, Phase, TimingsReport } from "./lib/timings.ts";
export { GuestMemory, GuestMemoryError } from "./lib/memory.ts";
export type { GuestMemoryOptions, MemoryRegion } from "./lib/memory.ts";
export { BootError } from "./lib/boot/errors.ts";
export { Kvm, kvmFlavour, KvmUnavailableError } from "./lib/kvm/kvm.ts";
export { SysError } from "./lib/sys/errno.ts";
export { VERSION } from "./lib/version.ts";
export { bit, INTERRUPT_CAUSE, raiseInterrupt, VIRTIO_F, VIRTIO_ID } from "./lib/virtio/device.ts";
export type { DeviceContext, InterruptLine, QueueSession, VirtioDevice } from "./lib/virtio/device.ts";
export { DEFAULT_BUDGET, drainQueue, LoopQueue } from "./lib/virtio/drain.ts";
export type { DrainEnd } from "./lib/virtio/drain.ts";
export { Virtqueue, VirtqueueError } from "./lib/virtio/queue.ts";
export type { Chain, QueueFeatures, QueueLayout, QueueStart, Segment } from "./lib/virtio/queue.ts";
export { EventLoop } from "./lib/eventloop.ts";
export type { FdHandler } from "./lib/eventloop.ts";
export { RngDevice } from "./lib/virtio/rng.ts";
export { BlockDevice } from "./lib/virtio/blk/device.ts";
export type { BlockOptions } from "./lib/virtio/blk/device.ts";
export { ConsoleDevice } from "./lib/virtio/console/device.ts";
export type { ConsoleOptions, WindowSize } from "./lib/virtio/console/device.ts";
export { NetDevice, openUserNet } from "./lib/virtio/net/device.ts";
export type { NetDeviceOptions } from "./lib/virtio/net/device.ts";
export type { PacketPort } from "./lib/virtio/net/hdr.ts";
export { Tap } from "./lib/sys/tap.ts";
export { chainIoVecs, readableData, readChain, writeChain } from "./lib/virtio/chain.ts";
export { IoVecs } from "./lib/sys/iovec.ts";
