/*T:515 The block device against random drivers, judged by the model in
 * model.ts. First requests that are well-formed chains but random in
 * everything the device must check: type, sector (near the end of the disk,
 * past it, 2^64 - 1), length (whole sectors or not), how header, data and
 * status are cut into buffers or merged, stray extra bytes, a missing status
 * byte, direct or indirect, on a read-write or a read-only disk, several at
 * once. Then hostile rings: well-formed requests laid out by hand in the
 * ring and in indirect tables, then a few descriptor fields overwritten at
 * random, among descriptors that are random from the start, with addresses
 * at the edges of RAM and beyond, random avail slots and indices, and random
 * bytes around the planted headers. The well-formed start is what lets many
 * chains get as far as the disk before something is wrong with them. Either
 * way no exception other than a VirtqueueError may escape, the device must
 * settle, and the judge must agree with everything it did. Each case is
 * posted in full before the device (on its own thread) is activated, so it
 * sees the finished rings, as the probe does. The read-write disk does its
 * I/O on the queue's thread, the read-only one through I/O threads. :*/

import assert from "node:assert/strict";
import fc from "fast-check";
import { VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE } from "../../../lib/virtio/queue.ts";
import { ID_BYTES } from "../../../lib/virtio/blk/request.ts";
import { BlkBench, cut, header } from "./harness.ts";
import { judge, type ModelDisk, modelRequest, probe } from "./model.ts";
import type { RawDesc, TestDriver, TestDriverOptions } from "../driver.ts";

const RAM = 128 * 1024;
const RING = 0x1000;
const TABLES = [0x3000, 0x3800];
const ZONE = 0x6000;
const SECTORS = 64;

function modelDisk(b: BlkBench): ModelDisk {
  const id = new Uint8Array(ID_BYTES);
  new TextEncoder().encodeInto(b.dev.serial, id);
  return { sectors: b.dev.sectors, readOnly: b.dev.readOnly, segMax: 254, id };
}

/** One run: lay out a queue, let `setup` post, probe, run the device, judge. Returns exact comparisons. */
async function runCase(b: BlkBench, opts: Partial<TestDriverOptions>, setup: (d: TestDriver) => void): Promise<number> {
  const d = b.prepare({ base: RING, dataBase: ZONE, dataSize: RAM - ZONE, ...opts });
  setup(d);
  const p = probe(b.mem, d.queue("probe"));
  const disk = modelDisk(b);
  const outcomes = p.bytes.map((c) => modelRequest(c, disk));
  const memBefore = b.mem.bytes.slice();
  const fileBefore = b.file();
  const failed = b.failures.length;
  b.start();
  await b.settle();
  const used = Number(d.layout.used);
  return judge(b.mem, p, outcomes, {
    used: d.used(),
    failures: b.failures.slice(failed),
    memBefore,
    fileBefore,
    fileAfter: b.file(),
    usedRing: { lo: used, hi: used + 6 + 8 * d.size },
  });
}

async function withBenches(body: (rw: BlkBench, ro: BlkBench) => Promise<void>): Promise<void> {
  const rw = BlkBench.create({ diskBytes: SECTORS * 512, ramBytes: RAM });
  const ro = BlkBench.create({ diskBytes: SECTORS * 512, ramBytes: RAM, readOnly: true, ioThreads: 2 });
  try {
    await rw.ready();
    await ro.ready();
    await body(rw, ro);
  } finally {
    await rw.close();
    await ro.close();
  }
}

// ---------------------------------------------------------------- (a) random requests

const weighted = <T>(common: fc.Arbitrary<T>, rare: fc.Arbitrary<T>, odds = 6) =>
  fc.oneof({ weight: odds, arbitrary: common }, { weight: 1, arbitrary: rare });

const requestArb = fc.record({
  type: weighted(fc.constantFrom(0, 1, 1, 0, 4, 8), fc.oneof(fc.constantFrom(2, 11, 13), fc.nat())),
  sector: weighted(
    fc.bigInt({ min: 0n, max: BigInt(SECTORS + 2) }),
    fc.constantFrom(BigInt(SECTORS - 1), BigInt(SECTORS), 2n ** 64n - 1n, 2n ** 55n, 2n ** 54n - 1n),
    3,
  ),
  sectors: fc.nat(4),
  misalign: weighted(fc.constant(0), fc.integer({ min: 1, max: 511 })),
  headerLen: weighted(fc.constant(16), fc.nat(15), 12),
  pieces: fc.integer({ min: 1, max: 4 }),
  merge: fc.boolean(),
  dataWritable: fc.boolean(),
  extraR: weighted(fc.constant(0), fc.integer({ min: 1, max: 600 }), 10),
  extraW: weighted(fc.constant(0), fc.integer({ min: 1, max: 600 }), 10),
  statusLen: weighted(fc.constant(1), fc.constantFrom(0, 2, 3), 10),
  indirect: fc.boolean(),
  seed: fc.nat(255),
});
type RequestSpec = typeof requestArb extends fc.Arbitrary<infer R> ? R : never;

function postRequest(d: TestDriver, r: RequestSpec): void {
  const len = r.sectors * 512 + r.misalign;
  const h = header(r.type, r.sector).subarray(0, r.headerLen);
  const writesData = r.type === 0 || r.type === 8 || (r.type !== 1 && r.dataWritable);
  const payload = new Uint8Array(writesData ? 0 : len).map((_, i) => (i * 3 + r.seed) & 0xff);
  const readable = r.merge
    ? cut(new Uint8Array([...h, ...payload]), r.pieces)
    : [...cut(h, r.pieces), ...cut(payload, r.pieces)];
  if (r.extraR) readable.push(new Uint8Array(r.extraR).fill(r.seed));
  const writable = writesData ? cut(new Uint8Array(len), r.pieces).map((p) => p.length) : [];
  if (r.extraW) writable.push(r.extraW);
  if (r.statusLen) writable.push(r.statusLen);
  if (readable.length + writable.length === 0) readable.push(header(r.type, r.sector));
  d.add(readable, writable, { indirect: r.indirect });
}

Deno.test("fuzz: random requests get exactly the model's answers, the file exactly the model's writes", async () => {
  await withBenches(async (rw, ro) => {
    let exact = 0;
    let runs = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(requestArb, { minLength: 1, maxLength: 4 }),
        fc.boolean(),
        fc.boolean(),
        weighted(fc.constant(0), fc.integer({ min: 0xfff8, max: 0xffff }), 3),
        async (requests, readOnly, eventIdx, startIndex) => {
          runs++;
          exact += await runCase(readOnly ? ro : rw, { size: 64, eventIdx, startIndex }, (d) => {
            for (const r of requests) postRequest(d, r);
          });
        },
      ),
      { numRuns: 6000 },
    );
    assert.ok(exact > runs, `most answers were compared byte for byte (${exact} in ${runs} runs)`);
  });
});

// ---------------------------------------------------------------- (b) hostile rings

const addrArb = weighted(
  fc.integer({ min: ZONE, max: RAM - 1 }),
  fc.constantFrom<number | bigint>(RAM - 1, RAM - 16, RAM - 512, RAM, 0x1_0000_0000, 2n ** 64n - 16n),
  5,
);
const lenArb = fc.oneof(
  fc.constantFrom(0, 1, 15, 16, 17, 511, 512, 513, 1024, 2048, 0xffff_ffff),
  fc.nat(4096),
);
const bufferDesc = (entries: number): fc.Arbitrary<RawDesc> =>
  fc.record({
    addr: addrArb,
    len: lenArb,
    flags: weighted(
      fc.constantFrom(0, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE),
      fc.oneof(fc.constantFrom(VRING_DESC_F_INDIRECT, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT), fc.nat(0xffff)),
      12,
    ),
    next: weighted(fc.nat(entries - 1), fc.nat(0xffff), 10),
  });
const indirectDesc: fc.Arbitrary<RawDesc> = fc.record({
  addr: weighted(fc.constantFrom(...TABLES), addrArb),
  len: weighted(fc.integer({ min: 1, max: 8 }).map((n) => 16 * n), lenArb),
  flags: weighted(fc.constant(VRING_DESC_F_INDIRECT), fc.nat(0xffff), 8),
  next: fc.nat(0xffff),
});

/** A well-formed request (header, data, status) to lay out in a table before the mutations. */
const templateArb = fc.record({
  type: weighted(fc.constantFrom(0, 1, 4, 8), fc.nat()),
  sector: weighted(fc.bigInt({ min: 0n, max: BigInt(SECTORS) }), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), 8),
  sectors: fc.integer({ min: 0, max: 3 }),
  split: fc.boolean(),
  addrs: fc.array(fc.integer({ min: ZONE, max: RAM - 2048 }), { minLength: 4, maxLength: 4 }),
});
type Template = typeof templateArb extends fc.Arbitrary<infer T> ? T : never;

const mutationArb = fc.record({
  where: fc.nat(),
  field: fc.constantFrom("addr", "len", "flags", "next"),
  addr: addrArb,
  len: lenArb,
  flags: fc.nat(0xffff),
  next: weighted(fc.nat(16), fc.nat(0xffff)),
});

const hostileArb = fc.constantFrom(4, 8, 16).chain((size) =>
  fc.record({
    size: fc.constant(size),
    templates: fc.array(templateArb, { maxLength: 5 }),
    inTables: fc.array(templateArb, { maxLength: 2 }),
    wild: fc.array(weighted(bufferDesc(size), indirectDesc, 5), { minLength: size, maxLength: size }),
    tables: fc.tuple(
      fc.array(bufferDesc(8), { minLength: 8, maxLength: 8 }),
      fc.array(bufferDesc(8), { minLength: 8, maxLength: 8 }),
    ),
    mutations: fc.array(mutationArb, { maxLength: 3 }),
    extraHeads: fc.array(weighted(fc.nat(size - 1), fc.nat(0xffff), 12), { maxLength: 3 }),
    count: weighted(fc.constant(-1), fc.nat(0xffff), 12),
    startIndex: weighted(fc.constant(0), fc.integer({ min: 0xfff0, max: 0xffff }), 2),
    eventIdx: fc.boolean(),
    seed: fc.integer({ min: 1, max: 0x7fff_ffff }),
  })
);
type Hostile = typeof hostileArb extends fc.Arbitrary<infer H> ? H : never;

/** Lays `t` out in `table` from index `at`; returns the descriptors used (0 if it does not fit). */
function layOut(t: Template, table: RawDesc[], at: number, headers: Array<[number, Uint8Array]>): number {
  const [a0, a1, a2, a3] = t.addrs as [number, number, number, number];
  const device = t.type === 0 || t.type === 8;
  const dataLen = t.type === 8 ? 20 : t.sectors * 512;
  const data = dataLen === 0 ? [] : t.split && dataLen >= 1024 ? [[a1, 512], [a2, dataLen - 512]] : [[a1, dataLen]];
  const descs: RawDesc[] = [
    { addr: a0, len: 16, flags: VRING_DESC_F_NEXT, next: 0 },
    ...data.map(([addr, len]) => ({
      addr: addr!,
      len: len!,
      flags: VRING_DESC_F_NEXT | (device ? VRING_DESC_F_WRITE : 0),
      next: 0,
    })),
    { addr: a3, len: 1, flags: VRING_DESC_F_WRITE, next: 0 },
  ];
  if (at + descs.length > table.length) return 0;
  descs.forEach((d, k) => table[at + k] = { ...d, next: at + k + 1 });
  headers.push([a0, header(t.type, t.sector)]);
  return descs.length;
}

/* The model pops every chain before the device runs, so a descriptor table
 * must not sit where a read may write: an indirect descriptor that points
 * into the data zone is pointed at one of TABLES instead (tables of random
 * descriptors), keeping its length and flags. */
function outOfZone(desc: RawDesc, i: number): RawDesc {
  if (!(desc.flags & VRING_DESC_F_INDIRECT)) return desc;
  const a = BigInt(desc.addr);
  return a >= BigInt(ZONE) && a < BigInt(RAM) ? { ...desc, addr: TABLES[i % 2]! } : desc;
}

function plant(b: BlkBench, d: TestDriver, h: Hostile): void {
  const ring = h.wild.slice();
  const tables = [h.tables[0].slice(), h.tables[1].slice()];
  const headers: Array<[number, Uint8Array]> = [];
  const heads: number[] = [];
  let at = 0;
  for (const t of h.templates) {
    const n = layOut(t, ring, at, headers);
    if (n === 0) break;
    heads.push(at);
    at += n;
  }
  h.inTables.forEach((t, k) => {
    const n = layOut(t, tables[k]!, 0, headers);
    if (n === 0 || at >= ring.length) return;
    ring[at] = { addr: TABLES[k]!, len: 16 * n, flags: VRING_DESC_F_INDIRECT, next: 0 };
    heads.push(at++);
  });
  const all = [...ring.map((_, i) => [ring, i] as const), ...tables.flatMap((t) => t.map((_, i) => [t, i] as const))];
  for (const m of h.mutations) {
    const [table, i] = all[m.where % all.length]!;
    table[i] = { ...table[i]!, [m.field]: m[m.field as keyof typeof m] };
  }
  let x = h.seed;
  const zone = b.mem.bytes.subarray(ZONE, RAM);
  for (let i = 0; i < zone.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    zone[i] = x & 0xff;
  }
  for (const [addr, bytes] of headers) b.mem.write(addr, bytes);
  ring.forEach((desc, i) => d.writeDesc(i, outOfZone(desc, i)));
  d.writeTable(TABLES[0]!, tables[0]!.map(outOfZone));
  d.writeTable(TABLES[1]!, tables[1]!.map(outOfZone));
  heads.push(...h.extraHeads);
  heads.forEach((head, k) => d.setAvailRing(d.availIdx + k, head));
  d.setAvailIdx(d.availIdx + (h.count === -1 ? heads.length : h.count));
}

Deno.test("fuzz: hostile rings never get past the device's checks", async () => {
  await withBenches(async (rw, ro) => {
    await fc.assert(
      fc.asyncProperty(hostileArb, fc.boolean(), async (h, readOnly) => {
        const b = readOnly ? ro : rw;
        await runCase(b, { size: h.size, eventIdx: h.eventIdx, startIndex: h.startIndex }, (d) => plant(b, d, h));
      }),
      { numRuns: 4000 },
    );
  });
});
