/* The Recorder of the mmio rig (T:650): a real device with every call the
 * transport makes counted, and the sessions it was given kept, so a test
 * can tell what the transport did without looking inside it. */

import { bit, type DeviceContext, type QueueSession, VIRTIO_F, type VirtioDevice } from "../../../lib/virtio/device.ts";

/** The features a polite driver accepts: VERSION_1 and both ring features. */
export const DRIVER_FEATURES: bigint = bit(VIRTIO_F.VERSION_1) | bit(VIRTIO_F.EVENT_IDX) |
  bit(VIRTIO_F.INDIRECT_DESC);

/** How a {@link Recorder} departs from the device it wraps. */
export interface RecorderOptions {
  /** Decides FEATURES_OK instead of the device. */
  accept?: (features: bigint) => boolean;
  /** A config space to show instead of the device's (the Recorder then takes config writes itself). */
  config?: Uint8Array;
}

/** A real device, with every call the transport makes counted. */
export class Recorder implements VirtioDevice {
  /** The wrapped device. */
  readonly inner: VirtioDevice;
  /** The wrapped device's name. */
  readonly name: string;
  /** The wrapped device's id. */
  readonly deviceId: number;
  /** The wrapped device's features. */
  readonly features: bigint;
  /** The wrapped device's queue sizes. */
  readonly queueSizes: readonly number[];
  /** The config space the transport shows. */
  readonly config: Uint8Array;
  /** activate() calls. */
  activations = 0;
  /** reset() calls. */
  resets = 0;
  /** Between activate() and reset(). */
  live = false;
  /** Config writes that reached the device. */
  readonly configWrites: { offset: number; bytes: number[] }[] = [];
  /** Features offered to acceptFeatures, in order. */
  readonly asked: bigint[] = [];
  /** The sessions of every activation, in order. */
  readonly activated: ReadonlyArray<QueueSession | undefined>[] = [];
  /** The context of the latest activation (kept after reset, to test stale use). */
  ctx: DeviceContext | undefined;
  /** The sessions of the latest activation (kept after reset). */
  sessions: ReadonlyArray<QueueSession | undefined> = [];
  readonly #options: RecorderOptions;

  /**
   * @param inner the real device
   * @param options what to do differently
   */
  constructor(inner: VirtioDevice, options: RecorderOptions = {}) {
    this.inner = inner;
    this.name = inner.name;
    this.deviceId = inner.deviceId;
    this.features = inner.features;
    this.queueSizes = inner.queueSizes;
    this.config = options.config ?? inner.config;
    this.#options = options;
  }

  /** Counts, then passes on (config writes go to the inner device only if it owns the config shown). */
  writeConfig(offset: number, bytes: Uint8Array): void {
    this.configWrites.push({ offset, bytes: [...bytes] });
    if (this.#options.config === undefined) this.inner.writeConfig?.(offset, bytes);
  }

  /** The option's answer, else the device's, else yes. */
  acceptFeatures(features: bigint): boolean {
    this.asked.push(features);
    const accept = this.#options.accept;
    if (accept !== undefined) return accept(features);
    return this.inner.acceptFeatures?.(features) ?? true;
  }

  /** Counts and keeps the sessions, then passes on. */
  activate(ctx: DeviceContext, queues: ReadonlyArray<QueueSession | undefined>): void {
    this.activations++;
    this.live = true;
    this.ctx = ctx;
    this.sessions = queues;
    this.activated.push(queues);
    this.inner.activate(ctx, queues);
  }

  /** Counts, then passes on. */
  reset(): void {
    this.resets++;
    this.live = false;
    this.inner.reset();
  }

  /** Passes on. */
  close(): void {
    this.inner.close();
  }
}
