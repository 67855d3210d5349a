/*T:510 A reference model of virtio-blk and a judge for one run of the
 * device. The model reads the spec's rules the slow and obvious way: all
 * readable bytes concatenated, numbers in BigInt, one rule after another in
 * the order the device documents. It knows nothing of iovecs or threads.
 *
 * The judge gets the chains a separate probe queue popped before the device
 * ran (pop writes nothing, so both see the same chains), the model's answer
 * for each, and what the device left behind: used entries, failures, guest
 * memory, the file. A hostile driver can make buffers overlap, so a chain's
 * answer is compared byte for byte only when nothing another request wrote
 * could have changed what the device read or what we read back; the safety
 * rules (the device writes only writable buffers and the used ring, the
 * file changes only inside ranges some valid write named, and never grows,
 * every answered chain was popped, a failure names its rule) hold always. :*/

import assert from "node:assert/strict";
import type { GuestMemory } from "../../../lib/memory.ts";
import { type Chain, type Virtqueue, VirtqueueError } from "../../../lib/virtio/queue.ts";
import type { UsedElem } from "../driver.ts";

/** The disk as the model sees it. */
export interface ModelDisk {
  /** Capacity in sectors. */
  sectors: number;
  /** Writes refused. */
  readOnly: boolean;
  /** The advertised seg_max. */
  segMax: number;
  /** The GET_ID bytes (20). */
  id: Uint8Array;
}

/** What the model says a chain must get. */
export interface Outcome {
  /** "broken": the device must fail; "answer": it must write `status`. */
  kind: "broken" | "answer";
  /** Expected status byte. */
  status: number;
  /** Expected used length. */
  written: number;
  /** A successful read: the file range whose bytes the driver must receive. */
  read?: { offset: number; length: number };
  /** A successful write: the file range and the bytes. */
  write?: { offset: number; data: Uint8Array };
  /** A successful GET_ID: the serial bytes the driver must receive. */
  id?: Uint8Array;
}

const OK = 0;
const IOERR = 1;
const UNSUPP = 2;

/** Bytes of each buffer, and the readable bytes concatenated. */
export interface ChainBytes {
  /** Lengths of the readable buffers. */
  readLens: number[];
  /** Lengths of the writable buffers. */
  writeLens: number[];
  /** All readable bytes in order. */
  readable: Uint8Array;
}

/** The bytes of `chain` as they are in `mem` now. */
export function chainBytes(mem: GuestMemory, chain: Chain): ChainBytes {
  const parts = chain.readable.map((s) => mem.slice(s.addr, s.len).slice());
  const readable = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    readable.set(p, at);
    at += p.length;
  }
  return { readLens: chain.readable.map((s) => s.len), writeLens: chain.writable.map((s) => s.len), readable };
}

function pieces(lens: number[], skip: number, length: number): number {
  let n = 0;
  let start = 0;
  for (const len of lens) {
    if (start + len > skip && start < skip + length) n++;
    start += len;
  }
  return n;
}

/** The model: what one request must get. */
export function modelRequest(c: ChainBytes, disk: ModelDisk): Outcome {
  const W = c.writeLens.reduce((n, l) => n + l, 0);
  const R = c.readable.length;
  if (W === 0) return { kind: "broken", status: -1, written: 0 };
  const err = (status: number): Outcome => ({ kind: "answer", status, written: W === 1 ? 1 : 0 });
  if (R < 16) return err(IOERR);
  const h = new DataView(c.readable.buffer, c.readable.byteOffset, 16);
  const type = h.getUint32(0, true);
  const sector = h.getBigUint64(8, true);
  const end = BigInt(disk.sectors) * 512n;
  if (type === 0) {
    const len = W - 1;
    if (R > 16 || len % 512 !== 0 || sector * 512n + BigInt(len) > end) return err(IOERR);
    if (pieces(c.writeLens, 0, len) > disk.segMax) return err(IOERR);
    if (len === 0) return { kind: "answer", status: OK, written: 1 };
    return { kind: "answer", status: OK, written: W, read: { offset: Number(sector) * 512, length: len } };
  }
  if (type === 1) {
    const len = R - 16;
    if (disk.readOnly || W > 1 || len % 512 !== 0 || sector * 512n + BigInt(len) > end) return err(IOERR);
    if (pieces(c.readLens, 16, len) > disk.segMax) return err(IOERR);
    if (len === 0) return { kind: "answer", status: OK, written: 1 };
    return {
      kind: "answer",
      status: OK,
      written: 1,
      write: { offset: Number(sector) * 512, data: c.readable.slice(16) },
    };
  }
  if (type === 4) return { kind: "answer", status: OK, written: W === 1 ? 1 : 0 };
  if (type === 8) {
    return { kind: "answer", status: OK, written: W - 1 <= 20 ? W : 20, id: disk.id.subarray(0, Math.min(W - 1, 20)) };
  }
  return err(UNSUPP);
}

/** What a probe queue popped: the chains, and the rule that stopped it, if any. */
export interface Probe {
  /** Chains in pop order. */
  chains: Chain[];
  /** Their bytes before the device ran. */
  bytes: ChainBytes[];
  /** The VirtqueueError rule that ended the pops, if one did. */
  queueRule: string | undefined;
}

/** Pops everything from `q` (a second queue over the same rings), recording the bytes. */
export function probe(mem: GuestMemory, q: Virtqueue): Probe {
  const chains: Chain[] = [];
  let queueRule: string | undefined;
  try {
    for (let c = q.pop(); c !== undefined; c = q.pop()) chains.push(c);
  } catch (e) {
    if (!(e instanceof VirtqueueError)) throw e;
    queueRule = e.rule;
  }
  return { chains, bytes: chains.map((c) => chainBytes(mem, c)), queueRule };
}

interface Interval {
  chain: number;
  lo: number;
  hi: number;
  write: boolean;
}

const overlaps = (a: { lo: number; hi: number }, b: { lo: number; hi: number }) => a.lo < b.hi && b.lo < a.hi;

/** What the device left behind, for {@link judge}. */
export interface RunResult {
  /** Used entries published during the run. */
  used: UsedElem[];
  /** Failure reasons reported during the run. */
  failures: string[];
  /** Guest RAM before the run (a copy) and now. */
  memBefore: Uint8Array;
  /** The file before the run and now. */
  fileBefore: Uint8Array;
  /** The file now. */
  fileAfter: Uint8Array;
  /** The used ring's guest range (the device may write all of it). */
  usedRing: { lo: number; hi: number };
}

/**
 * Checks one run against the model; throws an AssertionError on any difference.
 * @returns how many answers were compared byte for byte
 */
export function judge(mem: GuestMemory, p: Probe, outcomes: Outcome[], r: RunResult): number {
  const intervals: Interval[] = [];
  p.chains.forEach((c, i) => {
    for (const s of c.readable) intervals.push({ chain: i, lo: s.addr, hi: s.addr + s.len, write: false });
    for (const s of c.writable) intervals.push({ chain: i, lo: s.addr, hi: s.addr + s.len, write: true });
  });
  const precise = p.chains.map((_, i) =>
    intervals.every((x) => x.chain !== i || intervals.every((y) => y === x || !(x.write || y.write) || !overlaps(x, y)))
  );
  const headersStable = p.chains.every((_, k) =>
    intervals.every((x) =>
      x.chain !== k || x.write || intervals.every((y) => !y.write || y.chain >= k || !overlaps(x, y))
    )
  );

  const broken = outcomes.findIndex((o) => o.kind === "broken");
  const rule = broken >= 0 ? "blk-no-status" : p.queueRule;
  if (rule === undefined) assert.deepEqual(r.failures, [], "no rule broken, no failure");
  else {
    assert.equal(r.failures.length, 1, `one failure for [${rule}]: ${r.failures.join(" | ")}`);
    assert.ok(r.failures[0]!.endsWith(`[${rule}]`), `${r.failures[0]} names [${rule}]`);
  }
  const limit = broken >= 0 ? broken : p.chains.length;
  if (rule === undefined) assert.equal(r.used.length, limit, "every chain answered");
  else assert.ok(r.used.length <= limit, "only chains before the failure answered");

  const matched = new Array<boolean>(p.chains.length).fill(false);
  const writes = outcomes.slice(0, limit).filter((o) => o.write !== undefined).map((o) => o.write!);
  const writeRanges = writes.map((w) => ({ lo: w.offset, hi: w.offset + w.data.length }));
  let exact = 0;
  for (const u of r.used) {
    const i = p.chains.findIndex((c, k) => k < limit && !matched[k] && c.head === u.id);
    assert.ok(i >= 0, `used id ${u.id} was never popped (or answered twice)`);
    matched[i] = true;
    if (!precise[i] || !headersStable) continue;
    const c = p.chains[i]!;
    const o = outcomes[i]!;
    const last = c.writable[c.writable.length - 1]!;
    assert.equal(mem.readU8(last.addr + last.len - 1), o.status, `status of chain ${i}`);
    assert.equal(u.len, o.written, `used length of chain ${i}`);
    const got = () => {
      const out = new Uint8Array(c.writableBytes);
      let at = 0;
      for (const s of c.writable) {
        out.set(mem.slice(s.addr, s.len), at);
        at += s.len;
      }
      return out;
    };
    if (o.read && !writeRanges.some((w) => overlaps(w, { lo: o.read!.offset, hi: o.read!.offset + o.read!.length }))) {
      const want = r.fileBefore.subarray(o.read.offset, o.read.offset + o.read.length);
      assert.deepEqual(got().subarray(0, o.read.length), want, `data of read chain ${i}`);
    }
    if (o.id) assert.deepEqual(got().subarray(0, o.id.length), o.id, `GET_ID of chain ${i}`);
    const w = o.write;
    if (w && writeRanges.filter((x) => overlaps(x, { lo: w.offset, hi: w.offset + w.data.length })).length === 1) {
      assert.deepEqual(r.fileAfter.subarray(w.offset, w.offset + w.data.length), w.data, `file after write chain ${i}`);
    }
    exact++;
  }

  assert.equal(r.fileAfter.length, r.fileBefore.length, "the file never changes size");
  if (headersStable) {
    for (let b = 0; b < r.fileBefore.length; b++) {
      if (r.fileAfter[b] === r.fileBefore[b] || writeRanges.some((w) => b >= w.lo && b < w.hi)) continue;
      assert.fail(`file byte ${b} changed outside every valid write`);
    }
  }

  const written = intervals.filter((x) => x.write).concat([{ chain: -1, ...r.usedRing, write: true }]);
  const before = new Uint32Array(r.memBefore.buffer, r.memBefore.byteOffset, r.memBefore.length >> 2);
  const now = new Uint32Array(mem.bytes.buffer, mem.bytes.byteOffset, r.memBefore.length >> 2);
  for (let w = 0; w < before.length; w++) {
    if (before[w] === now[w]) continue;
    for (let b = 4 * w; b < 4 * w + 4; b++) {
      if (mem.bytes[b] === r.memBefore[b] || written.some((x) => b >= x.lo && b < x.hi)) continue;
      assert.fail(`guest byte 0x${b.toString(16)} written outside every writable buffer and the used ring`);
    }
  }
  return exact;
}
