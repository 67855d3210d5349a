/*T:403 The reference model: the rules as the spec states them, read
 * straight from guest memory through its checked accessors, in BigInt, one
 * descriptor at a time. It is deliberately naive (no offsets, no 32-bit
 * halves, no early exits), so that it shares as little as possible with the
 * code it checks, apart from the order in which the rules are tried. :*/

import type { GuestMemory } from "../../lib/memory.ts";
import {
  type QueueFeatures,
  type QueueLayout,
  VRING_DESC_F_INDIRECT,
  VRING_DESC_F_NEXT,
  VRING_DESC_F_WRITE,
} from "../../lib/virtio/queue.ts";

/** Every rule a pop can break (the constructor's three are not among them). */
export const RULES = new Set([
  "avail-index",
  "desc-index",
  "loop",
  "indirect-feature",
  "indirect-next",
  "nested-indirect",
  "indirect-size",
  "out-of-ram",
  "write-before-read",
  "too-long",
]);

/** What the reference model expects from one pop. */
export type Expected =
  | { kind: "empty" }
  | { kind: "error"; rule: string }
  | { kind: "chain"; head: number; segs: Array<{ addr: number; len: number; write: boolean }> };

/** What a pop at `last` must do with the rings as they are in `mem`. */
export function model(mem: GuestMemory, layout: QueueLayout, features: QueueFeatures, last: number): Expected {
  const size = layout.size;
  const idx = mem.readU16(layout.avail + 2n);
  const pending = (idx - last + 0x10000) % 0x10000;
  if (pending === 0) return { kind: "empty" };
  if (pending > size) return { kind: "error", rule: "avail-index" };
  const head = mem.readU16(layout.avail + 4n + 2n * BigInt(last % size));
  if (head >= size) return { kind: "error", rule: "desc-index" };
  const fail = (rule: string): Expected => ({ kind: "error", rule });
  const segs: Array<{ addr: number; len: number; write: boolean }> = [];
  let table = layout.desc;
  let entries = size;
  let inIndirect = false;
  let steps = 0;
  let i = head;
  let seenWrite = false;
  let total = 0n;
  for (;;) {
    steps++;
    if (steps > entries) return fail("loop");
    const at = table + 16n * BigInt(i);
    const addr = mem.readU64(at);
    const len = mem.readU32(at + 8n);
    const flags = mem.readU16(at + 12n);
    const next = mem.readU16(at + 14n);
    if (flags & VRING_DESC_F_INDIRECT) {
      if (!features.indirect) return fail("indirect-feature");
      if (inIndirect) return fail("nested-indirect");
      if (flags & VRING_DESC_F_NEXT) return fail("indirect-next");
      if (len === 0 || len % 16 !== 0 || len / 16 > 65536) return fail("indirect-size");
      if (!mem.contains(addr, len)) return fail("out-of-ram");
      table = addr;
      entries = len / 16;
      inIndirect = true;
      steps = 0;
      i = 0;
      continue;
    }
    const write = (flags & VRING_DESC_F_WRITE) !== 0;
    if (!write && seenWrite) return fail("write-before-read");
    if (write) seenWrite = true;
    if (len > 0) {
      if (!mem.contains(addr, len)) return fail("out-of-ram");
      segs.push({ addr: Number(addr), len, write });
    }
    total += BigInt(len);
    if (total > 0xffffffffn) return fail("too-long");
    if (!(flags & VRING_DESC_F_NEXT)) break;
    if (next >= entries) return fail("desc-index");
    i = next;
  }
  return { kind: "chain", head, segs };
}
