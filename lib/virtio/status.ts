/*V:250 The rules of the status byte and of feature negotiation are the
 * same whatever transport carries them (virtio spec 2.1 and 3.1), so they
 * live here, apart from the mmio registers, for virtio-pci to share.
 *
 * The status byte only ever gains bits, in the spec's order, until the
 * driver writes 0. A bit the driver tries to clear stays set (so a live
 * device cannot be activated a second time behind its own back), and
 * DEVICE_NEEDS_RESET is ours to set, not the driver's. FEATURES_OK needs
 * ACKNOWLEDGE and DRIVER and a feature set we accept; DRIVER_OK needs
 * FEATURES_OK. Once the device has failed, or the driver has said FAILED,
 * neither is granted again: only a reset brings the device back. A bit we
 * refuse is simply not kept, and the driver sees that on reading back. :*/

import { bit, VIRTIO_F, VIRTIO_STATUS } from "./device.ts";
import type { QueueFeatures } from "./queue.ts";

/** Ring features every device gets from its transport. */
export const TRANSPORT_FEATURES: bigint = bit(VIRTIO_F.VERSION_1) | bit(VIRTIO_F.EVENT_IDX) |
  bit(VIRTIO_F.INDIRECT_DESC);

/**
 * The status after the driver writes `written` (non-zero) over `old`.
 * @param featuresAcceptable asked only when FEATURES_OK is rising and could be granted
 * @returns the status to keep, and the bits that rose
 */
export function nextStatus(
  old: number,
  written: number,
  featuresAcceptable: () => boolean,
): { next: number; rising: number } {
  const S = VIRTIO_STATUS;
  const rising = written & ~old & ~S.NEEDS_RESET & 0xff;
  let next = old | rising;
  const broken = (next & (S.NEEDS_RESET | S.FAILED)) !== 0;
  const ready = S.ACKNOWLEDGE | S.DRIVER;
  if (rising & S.FEATURES_OK && (broken || (next & ready) !== ready || !featuresAcceptable())) {
    next &= ~S.FEATURES_OK;
  }
  if (rising & S.DRIVER_OK && (broken || !(next & S.FEATURES_OK))) next &= ~S.DRIVER_OK;
  return { next, rising };
}

/**
 * What is wrong with the features a driver accepted, before the device is asked.
 * @returns a line for the log, or undefined if the transport accepts them
 */
export function featureProblem(accepted: bigint, offered: bigint): string | undefined {
  if ((accepted & ~offered) !== 0n) return `driver asked for features we do not offer (0x${accepted.toString(16)})`;
  if ((accepted & bit(VIRTIO_F.VERSION_1)) === 0n) {
    return "driver did not accept VERSION_1 (legacy drivers are not supported)";
  }
  return undefined;
}

/** The ring features a queue runs with, from the features the driver accepted. */
export function ringFeatures(accepted: bigint): QueueFeatures {
  return {
    eventIdx: (accepted & bit(VIRTIO_F.EVENT_IDX)) !== 0n,
    indirect: (accepted & bit(VIRTIO_F.INDIRECT_DESC)) !== 0n,
  };
}
