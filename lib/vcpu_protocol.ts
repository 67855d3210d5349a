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

/** How a vCPU's run ended. */
export interface VcpuExit {
  /** True for a guest-requested end (reset, triple fault, power-off) or a stop. */
  clean: boolean;
  /** One line saying why. */
  reason: string;
  /** Exits handled. */
  exits: number;
  /** Guest rip at the end, when known. */
  rip?: string | undefined;
}

/** Messages from the Worker. */
export type VcpuMessage =
  | { type: "started"; tid: number }
  | { type: "exit"; result: VcpuExit };
