/** Giving things back when one of them may fail: every step runs, the first failure is kept. */

import type { VirtioDevice } from "../virtio/device.ts";

/** A failure kept while releasing the rest (boxed, so that a thrown `undefined` still counts). */
export interface Failure {
  /** What was thrown. */
  readonly error: unknown;
}

/**
 * Runs every step in order, even after one throws.
 * @returns the first failure, or undefined if every step returned
 */
export function releaseAll(steps: Iterable<() => void>): Failure | undefined {
  let failure: Failure | undefined;
  for (const step of steps) {
    try {
      step();
    } catch (e) {
      failure ??= { error: e };
    }
  }
  return failure;
}

/**
 * Closes every device, even if one fails.
 * @throws the first device's failure, after closing the others
 */
export function closeDevices(devices: readonly VirtioDevice[]): void {
  const failure = releaseAll(devices.map((d) => () => d.close()));
  if (failure !== undefined) throw failure.error;
}
