/*L:405 The vCPU Worker and the main thread share no objects, only numbers
 * (file descriptors and addresses are process-wide) and SharedArrayBuffers.
 * These are the messages they exchange. :*/

/** What the main thread sends a vCPU Worker to start it. */
export interface VcpuInit {
  /** vCPU index. */
  id: number;
  /** The vCPU fd. */
  vcpuFd: number;
  /** The VM fd (for interrupt lines). */
  vmFd: number;
  /** Host address of the kvm_run mapping, as a decimal string. */
  runAddress: string;
  /** Size of the kvm_run mapping. */
  runSize: number;
  /** Where the UART's output goes (normally 1, stdout). */
  consoleFd: number;
  /** Shared UART state (see devices/serial.ts). */
  serial: SharedArrayBuffer;
  /** Shared keyboard-controller state (see devices/i8042.ts), the same for every vCPU. */
  i8042: SharedArrayBuffer;
  /** An eventfd the UART signals when its full receive ring drains. */
  spaceFd: number;
  /** Int32 control words: [0] = stop flag, [1] = the start check (see vcpu_thread.ts). */
  control: SharedArrayBuffer;
  /** Virtio-mmio windows: name, base address, shared register image. */
  virtio: Array<{ name: string; base: number; image: SharedArrayBuffer }>;
  /** This vCPU's own mailbox for forwarded register writes (V:241), and the eventfd every vCPU rings. */
  mailbox: SharedArrayBuffer;
  /** See mailbox. */
  mailboxFd: number;
  /** Log unclaimed accesses to stderr. */
  verbose: boolean;
  /** The --timings marks (lib/timings.ts), if asked for. */
  timings?: SharedArrayBuffer | undefined;
  /** The machine has ACPI tables: serve the FADT's sleep registers (power-off). */
  acpi: boolean;
}

/**
 * How a run ended, in one word: the guest powered off (ACPI S5, or KVM's shutdown event), reset (the
 * keyboard controller, or KVM's reset event), triple-faulted, halted with interrupts off (a guest
 * with no devices left to wait for), was stopped (`stop()`, `close()`, a signal, three Ctrl-C), or
 * the run failed (`error`: an emulation failure, a failed entry, a vCPU given up on, a crash).
 */
export type RunEnd = "power-off" | "reset" | "triple-fault" | "halt" | "stopped" | "error";

/** How a vCPU's run ended. */
export interface VcpuExit {
  /** What ended it. */
  end: RunEnd;
  /**
   * True for an end the guest asked for (power-off, reset, triple fault, halt) or a stop; false for
   * an error, and for the user's emergency stop (three Ctrl-C on the console: `end` is "stopped").
   */
  clean: boolean;
  /** One line saying why. */
  reason: string;
  /** Exits handled. */
  exits: number;
  /** The vCPU's rip when the run ended, when it could be read: a 64-bit address, so a bigint (give JSON.stringify a replacer). */
  rip?: bigint | undefined;
}

/** Messages from the Worker. */
export type VcpuMessage =
  | { type: "started"; tid: number }
  | { type: "exit"; result: VcpuExit };
