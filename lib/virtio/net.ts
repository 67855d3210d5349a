// Placeholder replaced by the virtio-net implementation.
import type { VirtioDevice } from "./device.ts";

/** virtio-net backed by a tap device. */
export abstract class NetDevice implements VirtioDevice {
  abstract readonly name: string;
  abstract readonly deviceId: number;
  abstract readonly features: bigint;
  abstract readonly queueSizes: readonly number[];
  abstract readonly config: Uint8Array;
  abstract activate(): void;
  abstract notify(): void;
  abstract reset(): void;
  abstract close(): void;
  /** Creates a tap for `spec` (`<ipv4>` or `bridge:<name>`). */
  static open(spec: string): NetDevice {
    throw new Error(`--tunnet=${spec}: virtio-net is not implemented yet`);
  }
}
