/*V:148 A popped chain is a list of guest buffers, and most devices want
 * one of three things from it: the request bytes gathered into one array,
 * the reply scattered across the writable buffers, or host iovecs for a
 * zero-copy readv/writev/preadv straight into guest memory. These helpers
 * do exactly that, each going back through GuestMemory for every buffer (a
 * chain's segments were checked when popped; checking again costs little
 * and keeps GuestMemory the only door). They take a `skip` so a device can
 * step over a header it has already parsed, and never go past the end of
 * the chain: a short chain yields a short count, never an overrun. :*/

import type { GuestMemory } from "../memory.ts";
import type { IoVecs } from "../sys/iovec.ts";
import type { Chain, Segment } from "./queue.ts";

/**
 * Copies readable bytes of `chain`, starting `skip` bytes in, into `dst`.
 * @returns how many bytes were copied (at most dst.length)
 */
export function readChain(mem: GuestMemory, chain: Chain, dst: Uint8Array, skip = 0): number {
  let copied = 0;
  forEachPiece(chain.readable, skip, dst.length, (addr, len) => {
    dst.set(mem.slice(addr, len, "virtqueue readable buffer"), copied);
    copied += len;
  });
  return copied;
}

/**
 * The readable bytes of `chain` (from `skip`, at most `max` of them) as a new array.
 * @returns a copy, so later guest writes do not change it
 */
export function readableData(mem: GuestMemory, chain: Chain, skip = 0, max = Infinity): Uint8Array {
  const n = Math.max(0, Math.min(max, chain.readableBytes - skip));
  const out = new Uint8Array(n);
  readChain(mem, chain, out, skip);
  return out;
}

/**
 * Copies `data` into the writable buffers of `chain`, starting `skip` bytes in.
 * @returns how many bytes were written (less than data.length if the chain is too short)
 */
export function writeChain(mem: GuestMemory, chain: Chain, data: Uint8Array, skip = 0): number {
  let written = 0;
  forEachPiece(chain.writable, skip, data.length, (addr, len) => {
    mem.write(addr, data.subarray(written, written + len), "virtqueue writable buffer");
    written += len;
  });
  return written;
}

/**
 * Appends host iovecs for `segments` (from `skip`, at most `max` bytes) to `iov`, for zero-copy syscalls.
 * @returns how many bytes the added entries cover
 */
export function chainIoVecs(
  mem: GuestMemory,
  segments: readonly Segment[],
  iov: IoVecs,
  skip = 0,
  max = Infinity,
): number {
  let total = 0;
  forEachPiece(segments, skip, max, (addr, len) => {
    iov.push(mem.hostAddr(addr, len, "virtqueue buffer"), len);
    total += len;
  });
  return total;
}

/** Calls `piece` for each part of `segments` inside the byte window [skip, skip + max). */
function forEachPiece(
  segments: readonly Segment[],
  skip: number,
  max: number,
  piece: (addr: number, len: number) => void,
): void {
  let toSkip = Math.max(0, skip);
  let left = max;
  for (const s of segments) {
    if (left <= 0) return;
    if (toSkip >= s.len) {
      toSkip -= s.len;
      continue;
    }
    const len = Math.min(s.len - toSkip, left);
    piece(s.addr + toSkip, len);
    left -= len;
    toSkip = 0;
  }
}
