/*L:195 Every way a boot image can be wrong ends in one BootError, whose
 * message is a single line that names the file and says what is wrong with
 * it. The person reading it has a kernel that will not boot and a prompt in
 * front of them; "Malformed elf header" tells them nothing, while "vmlinux:
 * not an x86_64 ELF (e_machine 3)" tells them they built the wrong kernel.
 * The two little formatters below keep those messages uniform: addresses in
 * hex, sizes in the largest unit that reads naturally. :*/

/** A kernel, initrd or command line that cannot be booted, explained in one line. */
export class BootError extends Error {
  /**
   * Creates the error.
   * @param message one line naming the file and the problem
   */
  constructor(message: string) {
    super(message);
    this.name = "BootError";
  }
}

/** Formats an address or length as lower-case hex with a `0x` prefix. */
export function hex(value: number | bigint): string {
  return `0x${value.toString(16)}`;
}

/** Formats a range as `start+length` in hex, the way the messages name guest ranges. */
export function span(start: number | bigint, length: number | bigint): string {
  return `${hex(start)}+${hex(length)}`;
}

const UNITS: readonly [string, number][] = [
  ["GiB", 1024 ** 3],
  ["MiB", 1024 ** 2],
  ["KiB", 1024],
];

/** Formats a byte count for people: "16 MiB", "1.5 GiB", "300 bytes". */
export function sizeText(bytes: number | bigint): string {
  const n = Number(bytes);
  for (const [unit, scale] of UNITS) {
    if (n >= scale) {
      const value = Math.round((n / scale) * 10) / 10;
      return `${value} ${unit}`;
    }
  }
  return n === 1 ? "1 byte" : `${n} bytes`;
}
