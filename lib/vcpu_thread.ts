/*L:410 The main thread's handle on a vCPU Worker. Starting it hands over
 * the numbers the Worker needs; stopping it is the delicate part, because
 * the Worker may be deep inside KVM_RUN with the guest halted. We raise the
 * stop flag, set kvm_run.immediate_exit so a fresh KVM_RUN returns at once,
 * and send the thread SIGUSR1, which makes a KVM_RUN in progress return
 * EINTR. A SIGUSR1 listener is installed first: without one, Deno's default
 * action for the signal would end the whole process. :*/

import { at, getpid, tgkill } from "./sys/calls.ts";
import { KVM_RUN } from "./kvm/structs.ts";
import type { VcpuExit, VcpuInit, VcpuMessage } from "./vcpu_protocol.ts";

const SIGUSR1 = 10;
let kickListener = false;

function ensureKickListener(): void {
  if (kickListener) return;
  Deno.addSignalListener("SIGUSR1", () => {});
  kickListener = true;
}

/** A running vCPU Worker. */
export class VcpuThread {
  readonly #worker: Worker;
  readonly #control: Int32Array<SharedArrayBuffer>;
  readonly #runAddress: bigint;
  #tid = 0;
  /** Resolves when the vCPU has stopped, with why. */
  readonly done: Promise<VcpuExit>;

  private constructor(worker: Worker, init: VcpuInit, started: Promise<number>, done: Promise<VcpuExit>) {
    this.#worker = worker;
    this.#control = new Int32Array(init.control);
    this.#runAddress = BigInt(init.runAddress);
    this.done = done;
    started.then((tid) => this.#tid = tid);
  }

  /**
   * Starts a Worker running vCPU `init.id`.
   * @param init what the Worker needs (fds, addresses, shared state)
   * @returns the handle, once the Worker reports its thread id
   */
  static async start(init: VcpuInit): Promise<VcpuThread> {
    ensureKickListener();
    const worker = new Worker(new URL("./vcpu_worker.ts", import.meta.url).href, { type: "module" });
    let onStarted: (tid: number) => void = () => {};
    const started = new Promise<number>((r) => onStarted = r);
    const done = new Promise<VcpuExit>((resolve) => {
      worker.onmessage = (ev: MessageEvent<VcpuMessage>) => {
        if (ev.data.type === "started") onStarted(ev.data.tid);
        else {
          resolve(ev.data.result);
          worker.terminate();
        }
      };
      worker.onerror = (ev) => {
        ev.preventDefault();
        resolve({ clean: false, reason: `vCPU ${init.id} thread failed: ${ev.message}`, exits: 0 });
        worker.terminate();
      };
    });
    worker.postMessage(init);
    const thread = new VcpuThread(worker, init, started, done);
    thread.#tid = await Promise.race([started, done.then(() => 0)]);
    return thread;
  }

  /** Asks the vCPU to stop; `done` resolves once it has. Safe to repeat. */
  stop(): void {
    Atomics.store(this.#control, 0, 1);
    const p = at(this.#runAddress);
    if (p !== null) {
      new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(p, KVM_RUN.size))[KVM_RUN.fields.immediate_exit.offset] = 1;
    }
    if (this.#tid > 0) {
      try {
        tgkill(getpid(), this.#tid, SIGUSR1);
      } catch {
        // The thread has already exited; nothing to interrupt.
      }
    }
  }

  /** Ends the Worker without waiting (after `done`, or on teardown). */
  terminate(): void {
    this.#worker.terminate();
  }
}
