/** Shared setup and assertions for the virtqueue tests (queue_*_test.ts). */

import assert from "node:assert/strict";
import { GuestMemory } from "../../lib/memory.ts";
import {
  type Chain,
  type Virtqueue,
  VirtqueueError,
  VRING_DESC_F_INDIRECT,
  VRING_DESC_F_NEXT,
  VRING_DESC_F_WRITE,
} from "../../lib/virtio/queue.ts";
import { TestDriver, type TestDriverOptions } from "./driver.ts";

/** A kibibyte. */
export const KiB = 1024;
/** A mebibyte: the usual guest here. */
export const MiB = 1024 * KiB;
/** A gibibyte. */
export const GiB = 1024 * MiB;
/** The name every queue under test carries, so errors can be checked to name it. */
export const NAME = "vq-under-test";
/** Descriptor flags, short: no flag, a device-readable buffer. */
export const R = 0;
/** Descriptor flag: device-writable. */
export const W = VRING_DESC_F_WRITE;
/** Descriptor flag: the chain continues. */
export const N = VRING_DESC_F_NEXT;
/** Descriptor flag: an indirect table. */
export const I = VRING_DESC_F_INDIRECT;

/** Runs `body` with fresh guest RAM, always unmapping it. */
export function withMem(size: number, body: (mem: GuestMemory) => void): void {
  const mem = GuestMemory.create(size);
  try {
    body(mem);
  } finally {
    mem.close();
  }
}

/** A 1 MiB guest with a driver at 0x1000 and its queue. */
export function setup(
  opts: Partial<TestDriverOptions> = {},
  body: (d: TestDriver, q: Virtqueue, mem: GuestMemory) => void,
  features: { indirect?: boolean } = {},
): void {
  withMem(MiB, (mem) => {
    const d = new TestDriver(mem, { base: 0x1000, size: 8, ...opts });
    body(d, d.queue(NAME, features), mem);
  });
}

/** The bytes given, as a Uint8Array. */
export function bytes(...values: number[]): Uint8Array {
  return Uint8Array.from(values);
}

/** Asserts that `fn` throws a VirtqueueError for `rule` naming the queue. */
export function assertRule(fn: () => unknown, rule: string, queue = NAME): VirtqueueError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof VirtqueueError, `expected VirtqueueError(${rule}), got ${String(caught)}`);
  assert.equal(caught.rule, rule, caught.message);
  assert.equal(caught.queue, queue);
  assert.ok(caught.message.includes(queue), `message names the queue: ${caught.message}`);
  assert.ok(caught.message.includes(rule), `message names the rule: ${caught.message}`);
  assert.equal(caught.name, "VirtqueueError");
  return caught;
}

/** Asserts a refused pop changed neither the queue's state nor guest memory, and refuses again. */
export function assertRefused(q: Virtqueue, mem: GuestMemory, rule: string): VirtqueueError {
  const before = mem.bytes.slice();
  const last = q.lastAvailIdx;
  const err = assertRule(() => q.pop(), rule);
  assert.equal(q.lastAvailIdx, last, "lastAvailIdx not advanced");
  assert.ok(mem.bytes.every((b, i) => b === before[i]), "pop wrote nothing");
  assertRule(() => q.pop(), rule);
  return err;
}

/** Pops and asserts that a chain came. */
export function popOk(q: Virtqueue): Chain {
  const c = q.pop();
  assert.ok(c !== undefined, "a chain is available");
  return c;
}
