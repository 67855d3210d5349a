/*L:410 The main thread's handle on a vCPU Worker. A Worker is a whole
 * second JavaScript isolate: `new Worker` holds the calling thread while
 * the isolate is built, then the Worker loads its modules on its own. So
 * the Worker is spawned first, and its modules load while the main thread
 * opens KVM and loads the kernel; start() then hands it the numbers it
 * needs. Stopping it is the delicate part, because the Worker may be deep
 * inside KVM_RUN with the guest halted. We raise the stop flag, set
 * kvm_run.immediate_exit so a fresh KVM_RUN returns at once, and kick the
 * thread with a signal, which makes a KVM_RUN in progress return EINTR. A
 * signal is the only thing that brings KVM_RUN back to us while the guest
 * sleeps in `hlt`: an interrupt would wake the guest, not end the call. A
 * listener for the signal is installed first: without one, Deno's default
 * action for it would end the whole process.
 *
 * The signal is SIGUSR2, and it must never be SIGUSR1. Deno (since 2.9.2)
 * takes a SIGUSR1 that arrives more than half a second after start-up as a
 * request to open V8's inspector, and starts a debugger server on
 * 127.0.0.1:9229, listener or no listener. That server asks for no
 * password: anyone on the machine who connects runs code as us, with our
 * /dev/kvm and every permission we were given, so every stop would have
 * handed the launcher to any local user. SIGUSR2 means nothing to Deno or
 * V8; with our empty listener its only effect is the EINTR we want.
 * KICK_SIGNAL below is the one place the signal is named, and
 * tests/sys/kick_test.ts kicks a blocked thread with it and fails if the
 * process then listens on any port. :*/

import { at, getpid, tgkill } from "./sys/calls.ts";
import { KVM_RUN } from "./kvm/structs.ts";
import type { VcpuExit, VcpuInit, VcpuMessage } from "./vcpu_protocol.ts";
import { workerUrl } from "./worker_url.ts";

/**
 * The signal that kicks a thread out of a blocking system call, by Deno's
 * name and its Linux x86_64 number. Never SIGUSR1: that one opens Deno's
 * debugger port (chapter L:410).
 */
export const KICK_SIGNAL: { readonly name: Deno.Signal; readonly number: number } = {
  name: "SIGUSR2",
  number: 12,
};

let kickListener = false;

function ensureKickListener(): void {
  if (kickListener) return;
  Deno.addSignalListener(KICK_SIGNAL.name, () => {});
  kickListener = true;
}

/**
 * Interrupts thread `tid` of this process: a blocking system call it is
 * in (KVM_RUN, poll) returns EINTR. Installs the listener first, so the
 * signal can never end the process.
 * @param tid the thread's id (gettid() on that thread)
 */
export function kickThread(tid: number): void {
  ensureKickListener();
  tgkill(getpid(), tid, KICK_SIGNAL.number);
}

/*L:415 A vCPU that does not stop. The kick ends KVM_RUN, but the
 * thread can be blocked somewhere a signal does not reach: writing a
 * guest's serial output to a pipe nobody reads, for one (Deno's handler is
 * installed with SA_RESTART, so that write(2) simply resumes). Waiting for
 * it would hang stop(), close() and the process with them, so the wait is
 * bounded: after two seconds the thread is given up on. Its Worker is ended
 * (it cannot run another line of JavaScript once its call returns), `done`
 * resolves with a reason that says so, and the machine keeps guest RAM,
 * kvm_run and the KVM descriptors mapped and open for as long as the
 * process lives, because the thread is still inside a call that may touch
 * them. A Worker that had not begun by then is no danger: a shared word,
 * claimed by compare-and-exchange, decides whether it begins or never
 * does. :*/

/** Int32 words of `VcpuInit.control`, shared by the main thread and the vCPU thread. */
export const CONTROL = {
  /** Non-zero: the vCPU must stop. */
  STOP: 0,
  /** 0 until claimed: BEGUN by the vCPU thread before it touches the vCPU, or NEVER by a main thread that gave up. */
  ENTRY: 1,
} as const;

/** Values of the {@link CONTROL}.ENTRY word. */
export const ENTRY = { BEGUN: 1, NEVER: 2 } as const;

/** A vCPU Worker: spawned (booting), then started (running the guest). */
export class VcpuThread {
  readonly #worker: Worker;
  readonly #started: Promise<number>;
  #control: Int32Array<SharedArrayBuffer> | undefined;
  #runAddress = 0n;
  #id = 0;
  #tid = 0;
  /** The vCPU has returned from its last KVM_RUN (it said so, or its Worker failed). */
  #finished = false;
  /** terminate() was called: kvm_run may be unmapped, so stop() must not write to it. */
  #released = false;
  #settle: (exit: VcpuExit) => void = () => {};
  /**
   * Resolves when the vCPU has stopped (or the Worker failed), with why; or, if halt() gave up on it,
   * with `clean: false` and a reason that says the thread was abandoned.
   */
  readonly done: Promise<VcpuExit>;

  private constructor() {
    ensureKickListener();
    const worker = new Worker(workerUrl(new URL("./vcpu.worker.ts", import.meta.url)), { type: "module" });
    let onStarted: (tid: number) => void = () => {};
    this.#started = new Promise<number>((r) => onStarted = r);
    this.done = new Promise<VcpuExit>((resolve) => this.#settle = resolve);
    worker.onmessage = (ev: MessageEvent<VcpuMessage>) => {
      if (ev.data.type === "started") onStarted(ev.data.tid);
      else this.#finish(ev.data.result);
    };
    worker.onerror = (ev) => {
      ev.preventDefault();
      this.#finish({ end: "error", clean: false, reason: `vCPU ${this.#id} thread failed: ${ev.message}`, exits: 0 });
    };
    this.#worker = worker;
  }

  #finish(exit: VcpuExit): void {
    this.#finished = true;
    this.#settle(exit);
    this.#worker.terminate();
  }

  /**
   * Spawns a Worker for a vCPU. It boots in the background until start().
   * @returns the handle; terminate() it if it is never started
   */
  static spawn(): VcpuThread {
    return new VcpuThread();
  }

  /**
   * Hands the Worker its vCPU and lets it run.
   * @param init what the Worker needs (fds, addresses, shared state; `control` laid out as {@link CONTROL})
   * @returns once the Worker reports its thread id (or has already ended)
   */
  async start(init: VcpuInit): Promise<void> {
    if (this.#control !== undefined) throw new Error(`vCPU ${init.id} thread already started`);
    this.#control = new Int32Array(init.control);
    this.#id = init.id;
    this.#runAddress = BigInt(init.runAddress);
    this.#worker.postMessage(init);
    this.#tid = await Promise.race([this.#started, this.done.then(() => 0)]);
  }

  /**
   * Asks the vCPU to stop; `done` resolves once it has. Safe to repeat, and a
   * no-op before start(), once the vCPU has finished, and after terminate()
   * (when kvm_run may already be unmapped).
   */
  stop(): void {
    if (this.#control === undefined || this.#finished || this.#released) return;
    Atomics.store(this.#control, CONTROL.STOP, 1);
    const p = at(this.#runAddress);
    if (p !== null) {
      new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(p, KVM_RUN.size))[KVM_RUN.fields.immediate_exit.offset] = 1;
    }
    if (this.#tid > 0) {
      try {
        kickThread(this.#tid);
      } catch {
        // The thread has already exited; nothing to interrupt.
      }
    }
  }

  /**
   * Stops the vCPU and waits until it is out of KVM_RUN, at most `timeoutMs`,
   * then ends the Worker. A Worker never started is simply ended. If the wait
   * times out, `done` resolves (if it had not) with the reason the thread was
   * given up on (L:415).
   * @param timeoutMs how long to wait for `done`
   * @returns true if the vCPU is known to be out of KVM_RUN, or never entered it; false if it was given up on
   */
  async halt(timeoutMs: number): Promise<boolean> {
    const control = this.#control;
    if (control === undefined) {
      this.terminate();
      return true;
    }
    this.stop();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<false>((r) => timer = setTimeout(() => r(false), timeoutMs));
    const out = await Promise.race([this.done.then(() => true), late]);
    clearTimeout(timer);
    this.terminate();
    if (out || this.#finished) return true;
    // Still loading its modules? Then it never will begin, and there is nothing to be afraid of.
    const never = Atomics.compareExchange(control, CONTROL.ENTRY, 0, ENTRY.NEVER) === 0;
    this.#settle(
      never ? { end: "stopped", clean: true, reason: "stopped", exits: 0 } : {
        end: "error",
        clean: false,
        reason: `vCPU ${this.#id} did not stop within ${timeoutMs} ms (its thread is blocked where the kick cannot ` +
          `reach it, e.g. writing to a console nobody reads); it was given up on, and guest memory and the KVM ` +
          `descriptors are kept until the process exits`,
        exits: 0,
      },
    );
    return never;
  }

  /**
   * Ends the Worker without waiting (after `done`, on teardown, or if never
   * started). From now on stop() does nothing.
   */
  terminate(): void {
    this.#released = true;
    this.#worker.terminate();
  }
}
