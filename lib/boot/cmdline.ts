/*L:165 The kernel command line is the launcher's remaining arguments joined
 * with spaces, as in the seed, minus the seed's trailing space. It lives in
 * its own buffer at CMDLINE_ADDR and the zero page points at it. Two things
 * can go wrong, and both would otherwise fail silently inside the guest: a
 * NUL byte would end the line early, and a line longer than the kernel's
 * cmdline_size would simply be cut off. So we refuse both here. :*/

import type { GuestMemory } from "../memory.ts";
import { BootError } from "./errors.ts";
import { CMDLINE_ADDR, CMDLINE_MAX } from "./layout.ts";

/** Where the command line was written. */
export interface CmdlinePlacement {
  /** Guest physical address of its first byte. */
  readonly addr: number;
  /** Its length in bytes, not counting the terminating NUL. */
  readonly length: number;
}

/** Joins kernel arguments with single spaces (no trailing space). */
export function joinCmdline(args: readonly string[]): string {
  return args.join(" ");
}

/**
 * Encodes and validates a command line.
 * @param cmdline the command line
 * @param cmdlineSize the kernel's limit: most bytes, not counting the NUL
 * @returns the UTF-8 bytes followed by a NUL
 * @throws BootError if it holds a NUL or is too long
 */
export function encodeCmdline(
  cmdline: string,
  cmdlineSize: number,
): Uint8Array {
  const bytes = new TextEncoder().encode(cmdline);
  if (bytes.includes(0)) {
    throw new BootError(`kernel command line contains a NUL byte`);
  }
  const limit = Math.min(cmdlineSize, CMDLINE_MAX - 1);
  if (bytes.length > limit) {
    throw new BootError(
      `kernel command line is ${bytes.length} bytes; the kernel accepts at most ${limit}`,
    );
  }
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

/**
 * Writes a NUL-terminated command line at CMDLINE_ADDR.
 * @param mem guest memory
 * @param cmdline the command line (see {@link joinCmdline})
 * @param cmdlineSize the kernel's limit: most bytes, not counting the NUL
 * @throws BootError if it holds a NUL or is too long
 */
export function writeCmdline(
  mem: GuestMemory,
  cmdline: string,
  cmdlineSize: number,
): CmdlinePlacement {
  const bytes = encodeCmdline(cmdline, cmdlineSize);
  mem.write(CMDLINE_ADDR, bytes, "kernel command line");
  return { addr: CMDLINE_ADDR, length: bytes.length - 1 };
}
