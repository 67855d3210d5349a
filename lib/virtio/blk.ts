// Placeholder replaced by the virtio-blk implementation.
import type { VirtioDevice } from "./device.ts";

/** Options for {@link BlockDevice.open}. */
export interface BlockOptions {
  /** Offer VIRTIO_BLK_F_RO and refuse writes. */
  readOnly?: boolean;
}

/** virtio-blk backed by a file. */
export abstract class BlockDevice implements VirtioDevice {
  abstract readonly name: string;
  abstract readonly deviceId: number;
  abstract readonly features: bigint;
  abstract readonly queueSizes: readonly number[];
  abstract readonly config: Uint8Array;
  abstract activate(): void;
  abstract notify(): void;
  abstract reset(): void;
  abstract close(): void;
  /** Opens `path` as a disk. */
  static open(path: string, _options: BlockOptions = {}): BlockDevice {
    throw new Error(`--block=${path}: virtio-blk is not implemented yet`);
  }
}
