/*T:400 To test a device we need a driver, and the real one lives in the
 * guest kernel. TestDriver plays its part in TypeScript: it lays out a split
 * virtqueue in a GuestMemory (descriptor table, available ring and used ring
 * one after the other, then a data area), hands out descriptors from a free
 * list and buffers from a bump allocator, posts chains (direct or through an
 * indirect table), and reads back what the device used. It can also start
 * the ring indices anywhere, so that a test crosses the 16-bit wrap after a
 * few requests instead of 65536.
 *
 * For adversarial tests it has raw writers too: any descriptor, any table,
 * any avail ring slot or index, with nothing checked. Device tests use the
 * polite half; the queue's own tests use both. :*/

import type { GuestMemory } from "../../lib/memory.ts";
import {
  type QueueFeatures,
  type QueueLayout,
  type QueueStart,
  type Segment,
  Virtqueue,
  VRING_AVAIL_F_NO_INTERRUPT,
  VRING_DESC_F_INDIRECT,
  VRING_DESC_F_NEXT,
  VRING_DESC_F_WRITE,
  VRING_USED_F_NO_NOTIFY,
} from "../../lib/virtio/queue.ts";

/** Where and how {@link TestDriver} lays out its queue. */
export interface TestDriverOptions {
  /** Page-aligned guest address of the descriptor table; avail and used rings follow it. */
  base: number;
  /** Queue size (the constructor does not check it, so bad sizes can be tested). */
  size: number;
  /** Lay out (and honour) the EVENT_IDX fields. Default false. */
  eventIdx?: boolean;
  /** Initial avail and used index, e.g. 65533 to cross the 16-bit wrap quickly. Default 0. */
  startIndex?: number;
  /** Guest address of the data area for buffers and indirect tables. Default: the page after the used ring. */
  dataBase?: number;
  /** Size of the data area. Default: up to 1 MiB, clipped to the end of the RAM region holding it. */
  dataSize?: number;
}

/** A raw descriptor, as written into a table. */
export interface RawDesc {
  /** Buffer address (a bigint for values past 2^53). */
  addr: number | bigint;
  /** Buffer length (u32). */
  len: number;
  /** VRING_DESC_F_* bits (u16). */
  flags: number;
  /** Next descriptor index (u16). */
  next: number;
}

/** One used ring element. */
export interface UsedElem {
  /** The chain's head descriptor. */
  id: number;
  /** Bytes the device says it wrote. */
  len: number;
}

/** A chain the driver posted with {@link TestDriver.add}. */
export interface PostedChain {
  /** Head descriptor index. */
  head: number;
  /** Ring descriptors it occupies (one if indirect). */
  descriptors: number[];
  /** Guest address of its indirect table, if any. */
  table: number | undefined;
  /** Readable buffers with a non-zero length, as the device should see them. */
  readable: Segment[];
  /** Writable buffers with a non-zero length, as the device should see them. */
  writable: Segment[];
  /** The used length, once the device has returned the chain. */
  usedLen: number | undefined;
}

/** Options for {@link TestDriver.add}. */
export interface AddOptions {
  /** Put the buffers in an indirect table (one ring descriptor). Default false. */
  indirect?: boolean;
  /** Make the chain available (avail ring + idx). Default true. */
  publish?: boolean;
}

const PAGE = 4096;

/** The kernel's vring_need_event: did the index move from `old` to `now` cross `event`? */
export function vringNeedEvent(event: number, now: number, old: number): boolean {
  return ((now - event - 1) & 0xffff) < ((now - old) & 0xffff);
}

/** Ring placement for a queue of `size` at `base`: desc, then avail (2-aligned), then used (4-aligned). */
export function ringLayout(base: number, size: number): QueueLayout & { end: number } {
  const avail = base + 16 * size;
  const used = (avail + 6 + 2 * size + 3) & ~3;
  return { size, desc: BigInt(base), avail: BigInt(avail), used: BigInt(used), end: used + 6 + 8 * size };
}

/** The guest side of one split virtqueue, for tests. */
export class TestDriver {
  /** Guest RAM the queue lives in. */
  readonly mem: GuestMemory;
  /** Queue size. */
  readonly size: number;
  /** Whether the EVENT_IDX fields are used. */
  readonly eventIdx: boolean;
  /** The initial avail and used index. */
  readonly startIndex: number;
  /** Ring addresses, to give to a {@link Virtqueue}. */
  readonly layout: QueueLayout;
  /** Initial indices, to give to a {@link Virtqueue}. */
  readonly start: QueueStart;
  /** First byte of the data area. */
  readonly dataBase: number;
  /** One past the last byte of the data area. */
  readonly dataEnd: number;
  readonly #desc: number;
  readonly #avail: number;
  readonly #used: number;
  #free: number[] = [];
  #bump: number;
  #availIdx: number;
  #lastUsed: number;
  #kicked: number;
  #chains = new Map<number, PostedChain>();

  /**
   * Lays out an empty queue: zeroes the rings and sets both indices (and both event fields) to startIndex.
   * @param mem guest RAM
   * @param options placement, size, features
   */
  constructor(mem: GuestMemory, options: TestDriverOptions) {
    const { base, size } = options;
    if (base % PAGE !== 0) throw new RangeError(`TestDriver base 0x${base.toString(16)} is not page aligned`);
    this.mem = mem;
    this.size = size;
    this.eventIdx = options.eventIdx ?? false;
    this.startIndex = (options.startIndex ?? 0) & 0xffff;
    const l = ringLayout(base, size);
    this.layout = { size, desc: l.desc, avail: l.avail, used: l.used };
    this.start = { lastAvailIdx: this.startIndex, usedIdx: this.startIndex };
    this.#desc = base;
    this.#avail = Number(l.avail);
    this.#used = Number(l.used);
    this.dataBase = options.dataBase ?? Math.ceil(l.end / PAGE) * PAGE;
    const region = mem.regions.find((r) => this.dataBase >= r.gpa && this.dataBase < r.gpa + r.size);
    const regionEnd = region ? region.gpa + region.size : this.dataBase;
    this.dataEnd = this.dataBase + (options.dataSize ?? Math.min(1024 * 1024, regionEnd - this.dataBase));
    this.#bump = this.dataBase;
    mem.fill(base, l.end - base, 0, "TestDriver rings");
    for (let i = size - 1; i >= 0; i--) this.#free.push(i);
    this.#availIdx = this.startIndex;
    this.#lastUsed = this.startIndex;
    this.#kicked = this.startIndex;
    mem.writeU16(this.#avail + 2, this.startIndex);
    mem.writeU16(this.#used + 2, this.startIndex);
    mem.writeU16(this.#avail + 4 + 2 * size, this.startIndex);
    mem.writeU16(this.#used + 4 + 8 * size, this.startIndex);
  }

  /**
   * A device-side queue over this layout, starting at this driver's indices.
   * @param name the queue's name in error messages
   * @param features ring features (default: this driver's eventIdx, indirect on)
   */
  queue(name = "test queue", features: Partial<QueueFeatures> = {}): Virtqueue {
    return new Virtqueue(
      this.mem,
      this.layout,
      {
        eventIdx: features.eventIdx ?? this.eventIdx,
        indirect: features.indirect ?? true,
      },
      name,
      this.start,
    );
  }

  /** Descriptors not currently in a posted chain. */
  get freeCount(): number {
    return this.#free.length;
  }

  /** The driver's avail index (the next slot it will fill). */
  get availIdx(): number {
    return this.#availIdx;
  }

  /**
   * Takes `len` bytes from the data area (never reused).
   * @param len bytes
   * @param align alignment of the returned address
   * @returns the guest address
   */
  alloc(len: number, align = 8): number {
    const at = Math.ceil(this.#bump / align) * align;
    if (at + len > this.dataEnd) {
      throw new RangeError(`TestDriver data area full (${len} bytes wanted at 0x${at.toString(16)})`);
    }
    this.#bump = at + len;
    return at;
  }

  /**
   * Posts a chain: readable buffers (copied into the data area) then writable ones (zeroed).
   * @param readable the request bytes, one buffer each
   * @param writableLens the sizes of the reply buffers
   * @param opts indirect table, or leave unpublished
   * @returns the head descriptor index
   */
  add(readable: Uint8Array[], writableLens: number[], opts: AddOptions = {}): number {
    const bufs: RawDesc[] = [];
    const posted: Pick<PostedChain, "readable" | "writable"> = { readable: [], writable: [] };
    for (const data of readable) {
      const addr = this.alloc(data.length);
      this.mem.write(addr, data);
      bufs.push({ addr, len: data.length, flags: 0, next: 0 });
      if (data.length) posted.readable.push({ addr, len: data.length });
    }
    for (const len of writableLens) {
      const addr = this.alloc(len);
      this.mem.fill(addr, len, 0);
      bufs.push({ addr, len, flags: VRING_DESC_F_WRITE, next: 0 });
      if (len) posted.writable.push({ addr, len });
    }
    if (bufs.length === 0) throw new RangeError("TestDriver.add: a chain needs at least one buffer");
    let descriptors: number[];
    let table: number | undefined;
    if (opts.indirect) {
      if (this.#free.length < 1) throw new RangeError("TestDriver.add: no free descriptor");
      table = this.alloc(16 * bufs.length, 16);
      this.writeTable(table, bufs.map((b, k) => k < bufs.length - 1 ? chained(b, k + 1) : b));
      descriptors = [this.#free.pop()!];
      this.writeDesc(descriptors[0]!, { addr: table, len: 16 * bufs.length, flags: VRING_DESC_F_INDIRECT, next: 0 });
    } else {
      if (this.#free.length < bufs.length) {
        throw new RangeError(`TestDriver.add: ${bufs.length} descriptors wanted, ${this.#free.length} free`);
      }
      descriptors = bufs.map(() => this.#free.pop()!);
      bufs.forEach((b, k) =>
        this.writeDesc(descriptors[k]!, k < bufs.length - 1 ? chained(b, descriptors[k + 1]!) : b)
      );
    }
    const head = descriptors[0]!;
    this.#chains.set(head, { head, descriptors, table, ...posted, usedLen: undefined });
    if (opts.publish ?? true) this.publish(head);
    return head;
  }

  /** What was posted under `head` (kept after it is used, until the head is reused). */
  posted(head: number): PostedChain | undefined {
    return this.#chains.get(head);
  }

  /**
   * Collects the used elements published since the last call, freeing their descriptors.
   * @throws Error if the device moved used.idx more than a ring ahead
   */
  used(): UsedElem[] {
    const idx = this.usedIdx();
    const n = (idx - this.#lastUsed) & 0xffff;
    if (n > this.size) throw new Error(`device moved used.idx from ${this.#lastUsed} to ${idx}`);
    const out: UsedElem[] = [];
    for (let k = 0; k < n; k++) {
      const slot = this.#used + 4 + 8 * ((this.#lastUsed + k) % this.size);
      const elem = { id: this.mem.readU32(slot), len: this.mem.readU32(slot + 4) };
      out.push(elem);
      const chain = this.#chains.get(elem.id);
      if (chain !== undefined && chain.usedLen === undefined) {
        chain.usedLen = elem.len;
        for (let d = chain.descriptors.length - 1; d >= 0; d--) this.#free.push(chain.descriptors[d]!);
      }
    }
    this.#lastUsed = idx;
    return out;
  }

  /** The bytes in chain `head`'s writable buffers, concatenated; cut to the used length once it is known. */
  writableData(head: number): Uint8Array {
    const chain = this.#chains.get(head);
    if (chain === undefined) throw new RangeError(`TestDriver: no chain was posted at head ${head}`);
    const total = chain.writable.reduce((n, s) => n + s.len, 0);
    const out = new Uint8Array(Math.min(total, chain.usedLen ?? total));
    let at = 0;
    for (const s of chain.writable) {
      if (at >= out.length) break;
      const n = Math.min(s.len, out.length - at);
      out.set(this.mem.slice(s.addr, n), at);
      at += n;
    }
    return out;
  }

  /**
   * Should the driver ring the doorbell for what it published since the last call? Honours
   * VRING_USED_F_NO_NOTIFY, or with EVENT_IDX avail_event (as the Linux driver does).
   */
  needsNotify(): boolean {
    const old = this.#kicked;
    const now = this.#availIdx;
    this.#kicked = now;
    if (this.eventIdx) return vringNeedEvent(this.readAvailEvent(), now, old);
    return old !== now && (this.usedFlags() & VRING_USED_F_NO_NOTIFY) === 0;
  }

  // ---- raw access, for adversarial tests: nothing below checks anything ----

  /** Writes descriptor `i` of the ring's table (i may be out of range: it is not checked). */
  writeDesc(i: number, d: RawDesc): void {
    writeRawDesc(this.mem, this.#desc + 16 * i, d);
  }

  /** Reads descriptor `i` of the ring's table. */
  readDesc(i: number): RawDesc {
    const at = this.#desc + 16 * i;
    return {
      addr: this.mem.readU64(at),
      len: this.mem.readU32(at + 8),
      flags: this.mem.readU16(at + 12),
      next: this.mem.readU16(at + 14),
    };
  }

  /** Writes `descs` as a descriptor table at guest address `gpa` (e.g. an indirect table). */
  writeTable(gpa: number, descs: RawDesc[]): void {
    descs.forEach((d, k) => writeRawDesc(this.mem, gpa + 16 * k, d));
  }

  /** Writes avail.ring[slot % size] = value (value need not be a valid head). */
  setAvailRing(slot: number, value: number): void {
    this.mem.writeU16(this.#avail + 4 + 2 * (slot % this.size), value & 0xffff);
  }

  /** Makes `head` available: avail.ring[availIdx % size] = head, then avail.idx++. */
  publish(head: number): void {
    this.setAvailRing(this.#availIdx, head);
    this.setAvailIdx(this.#availIdx + 1);
  }

  /** Sets avail.idx (and the driver's own copy) to n (mod 2^16). */
  setAvailIdx(n: number): void {
    this.#availIdx = n & 0xffff;
    this.mem.writeU16(this.#avail + 2, this.#availIdx);
  }

  /** Sets avail.flags. */
  setAvailFlags(flags: number): void {
    this.mem.writeU16(this.#avail, flags & 0xffff);
  }

  /** Sets or clears VRING_AVAIL_F_NO_INTERRUPT in avail.flags. */
  setNoInterrupt(on: boolean): void {
    const flags = this.mem.readU16(this.#avail);
    this.setAvailFlags(on ? flags | VRING_AVAIL_F_NO_INTERRUPT : flags & ~VRING_AVAIL_F_NO_INTERRUPT);
  }

  /** Writes used_event (avail.ring[size]). */
  setUsedEvent(n: number): void {
    this.mem.writeU16(this.#avail + 4 + 2 * this.size, n & 0xffff);
  }

  /** Reads avail_event (after the used ring's elements). */
  readAvailEvent(): number {
    return this.mem.readU16(this.#used + 4 + 8 * this.size);
  }

  /** Reads used.flags. */
  usedFlags(): number {
    return this.mem.readU16(this.#used);
  }

  /** Reads used.idx. */
  usedIdx(): number {
    return this.mem.readU16(this.#used + 2);
  }
}

function chained(d: RawDesc, next: number): RawDesc {
  return { ...d, flags: d.flags | VRING_DESC_F_NEXT, next };
}

/** Writes one 16-byte descriptor at `gpa`, little-endian, values truncated to their field widths. */
export function writeRawDesc(mem: GuestMemory, gpa: number, d: RawDesc): void {
  mem.writeU64(gpa, BigInt.asUintN(64, BigInt(d.addr)));
  mem.writeU32(gpa + 8, d.len >>> 0);
  mem.writeU16(gpa + 12, d.flags & 0xffff);
  mem.writeU16(gpa + 14, d.next & 0xffff);
}
