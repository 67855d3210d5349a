/*T:500 A bench for the block device without KVM: real guest memory, a real
 * disk file in a temporary directory, the device's real I/O threads and a
 * real EventLoop for their completions, and TestDriver playing the guest's
 * driver. The only stand-in is the transport: a small VirtioContext that
 * does what MmioTransport does when a device calls it (fail resets the
 * device; used counts interrupts) and records it for the test to check. :*/

import { GuestMemory } from "../../lib/memory.ts";
import { EventLoop } from "../../lib/eventloop.ts";
import { BlockDevice, type BlockOptions } from "../../lib/virtio/blk.ts";
import { VirtqueueError } from "../../lib/virtio/queue.ts";
import type { VirtioContext } from "../../lib/virtio/device.ts";
import { TestDriver, type TestDriverOptions } from "./driver.ts";

/** The disk's initial byte at `offset`: different in every sector and byte. */
export function diskPattern(offset: number): number {
  return (offset * 7 + Math.floor(offset / 512) * 13 + 0x5a) & 0xff;
}

/** Options for {@link BlkBench.create}. */
export interface BlkBenchOptions extends BlockOptions {
  /** Disk size in bytes (default 64 sectors). */
  diskBytes?: number;
  /** Guest RAM (default 1 MiB). */
  ramBytes?: number;
}

/** The request header bytes: type, reserved, sector. */
export function header(type: number, sector: number | bigint, reserved = 0): Uint8Array {
  const h = new Uint8Array(16);
  const v = new DataView(h.buffer);
  v.setUint32(0, type, true);
  v.setUint32(4, reserved, true);
  v.setBigUint64(8, BigInt.asUintN(64, BigInt(sector)), true);
  return h;
}

/** Cuts `bytes` into at most `pieces` consecutive parts (none if it is empty). */
export function cut(bytes: Uint8Array, pieces: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  const step = Math.max(1, Math.ceil(bytes.length / pieces));
  for (let at = 0; at < bytes.length; at += step) out.push(bytes.subarray(at, at + step));
  return out;
}

/** A device on a temporary disk, its guest memory, loop and fake transport. */
export class BlkBench {
  /** Guest RAM. */
  readonly mem: GuestMemory;
  /** The loop the device's completions arrive on (running). */
  readonly loop: EventLoop;
  /** The device under test. */
  readonly dev: BlockDevice;
  /** The disk file. */
  readonly path: string;
  /** The disk's bytes as created. */
  readonly initial: Uint8Array;
  /** Reasons passed to ctx.fail, in order. */
  readonly failures: string[] = [];
  /** Lines passed to ctx.log. */
  readonly logs: string[] = [];
  /** Calls to ctx.used (one per batch the device answered). */
  usedCalls = 0;
  /** The driver of the current activation. */
  driver: TestDriver | undefined;
  readonly #running: Promise<void>;
  readonly #dir: string;
  #wake: (() => void) | undefined;

  private constructor(dir: string, path: string, initial: Uint8Array, dev: BlockDevice, ramBytes: number) {
    this.#dir = dir;
    this.path = path;
    this.initial = initial;
    this.dev = dev;
    this.mem = GuestMemory.create(ramBytes);
    this.loop = new EventLoop();
    this.#running = this.loop.run();
  }

  /**
   * Makes a disk file filled with {@link diskPattern} and opens it.
   * @param options disk size, RAM size, device options
   */
  static create(options: BlkBenchOptions = {}): BlkBench {
    const dir = Deno.makeTempDirSync({ prefix: "lguest-blk-" });
    const path = `${dir}/disk.img`;
    const initial = new Uint8Array(options.diskBytes ?? 64 * 512);
    for (let i = 0; i < initial.length; i++) initial[i] = diskPattern(i);
    Deno.writeFileSync(path, initial);
    const dev = BlockDevice.open(path, options);
    return new BlkBench(dir, path, initial, dev, options.ramBytes ?? 1024 * 1024);
  }

  /** The transport's side of the device, as MmioTransport would give it. */
  context(): VirtioContext {
    return {
      memory: this.mem,
      loop: this.loop,
      features: 0n,
      used: () => {
        this.usedCalls++;
        this.#wake?.();
      },
      fail: (reason) => {
        this.failures.push(reason);
        this.dev.reset();
        this.#wake?.();
      },
      configChanged: () => {},
      log: (line) => this.logs.push(line),
    };
  }

  /**
   * Lays out a fresh queue and activates the device on it (resetting it first, as a driver would).
   * @param options TestDriver placement and size (default: base 0x1000, 64 entries)
   */
  activate(options: Partial<TestDriverOptions> = {}): TestDriver {
    this.dev.reset();
    const d = new TestDriver(this.mem, { base: 0x1000, size: 64, ...options });
    this.driver = d;
    this.dev.activate(this.context(), [d.queue("virtio-blk queue 0")]);
    return d;
  }

  /** Rings the doorbell; a queue rule broken fails the device, as the transport's guard does. */
  notify(): void {
    try {
      this.dev.notify(0);
    } catch (e) {
      if (!(e instanceof VirtqueueError)) throw e;
      this.failures.push(e.message);
      this.dev.reset();
    }
  }

  /** Waits until the device has nothing in flight (a hang fails the test after 20 s). */
  async settle(): Promise<void> {
    const deadline = Date.now() + 20_000;
    while (this.dev.inFlight > 0) {
      if (Date.now() > deadline) throw new Error(`device still has ${this.dev.inFlight} requests in flight`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 1000);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = undefined;
    }
  }

  /** The disk file's bytes now. */
  file(): Uint8Array {
    return Deno.readFileSync(this.path);
  }

  /** Closes the device, stops the loop, frees the memory and removes the file. */
  async close(): Promise<void> {
    this.dev.close();
    this.loop.stop();
    await this.#running;
    this.loop.close();
    this.mem.close();
    Deno.removeSync(this.#dir, { recursive: true });
  }
}
