/*T:670 The entropy device without KVM, through the real transport: a
 * TestDriver posts chains, the driver's register writes bring the device
 * up, and what comes back is read from the used ring. Each writable buffer
 * must be filled with bytes from getrandom (not zeros, not the same twice),
 * the used length must be exactly what was filled, and a request must stop
 * at RNG_MAX_PER_REQUEST bytes with the rest of its buffers untouched. The
 * device's rule for readable buffers (the spec has the driver post none) is
 * to neither read nor write them and to count them for nothing. :*/

import assert from "node:assert/strict";
import fc from "fast-check";
import { GuestMemory } from "../../lib/memory.ts";
import { EventLoop } from "../../lib/eventloop.ts";
import { bit, VIRTIO_F, VIRTIO_STATUS } from "../../lib/virtio/device.ts";
import { MMIO_INT, MMIO_REG } from "../../lib/virtio/mmio/regs.ts";
import { type Segment, VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE } from "../../lib/virtio/queue.ts";
import { RNG_MAX_PER_REQUEST } from "../../lib/virtio/rng.ts";
import { type RawDesc, ringLayout, TestDriver } from "./driver.ts";
import { MmioRig } from "./mmio/rig.ts";

const S = VIRTIO_STATUS;

function withRig(body: (rig: MmioRig, d: TestDriver) => void): () => void {
  return () => {
    const rig = new MmioRig({ ram: 1024 * 1024 });
    try {
      body(rig, new TestDriver(rig.mem, { base: 0x1000, size: 16, eventIdx: true }));
    } finally {
      rig.close();
    }
  };
}

function allZero(bytes: Uint8Array): boolean {
  return bytes.every((b) => b === 0);
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test(
  "rng: posted writable chains come back filled with random bytes, each different, used with their length",
  withRig((rig, d) => {
    const heads = [d.add([], [64]), d.add([], [16, 48]), d.add([], [32, 32], { indirect: true })];
    assert.equal(rig.bringUp(d), S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK | S.DRIVER_OK);
    assert.deepEqual(d.used().map((u) => [u.id, u.len]), heads.map((h) => [h, 64]));
    assert.equal(rig.interrupts, 1, "one interrupt for the batch");
    const seen = new Set<string>();
    for (const h of heads) {
      for (const s of d.posted(h)!.writable) {
        assert.ok(!allZero(rig.mem.slice(s.addr, s.len)), `buffer at 0x${s.addr.toString(16)} was filled`);
      }
      seen.add(hex(d.writableData(h)));
    }
    assert.equal(seen.size, 3, "three requests, three different answers");

    const later = d.add([], [32]);
    rig.w(MMIO_REG.QUEUE_NOTIFY, 0);
    assert.deepEqual(d.used().map((u) => [u.id, u.len]), [[later, 32]], "a doorbell serves a new request");
    assert.ok(!seen.has(hex(d.writableData(later))));
    assert.ok(!allZero(d.writableData(later)));
  }),
);

Deno.test(
  "rng: a request is capped at RNG_MAX_PER_REQUEST bytes and the rest of its buffers stay untouched",
  withRig((rig, d) => {
    assert.equal(RNG_MAX_PER_REQUEST, 65536);
    const one = d.add([], [100_000]);
    const two = d.add([], [40_000, 40_000]);
    rig.bringUp(d);
    assert.deepEqual(d.used().map((u) => [u.id, u.len]), [[one, RNG_MAX_PER_REQUEST], [two, RNG_MAX_PER_REQUEST]]);
    const big = d.posted(one)!.writable[0]!;
    const filled = rig.mem.slice(big.addr, big.len);
    assert.ok(!allZero(filled.subarray(RNG_MAX_PER_REQUEST - 32, RNG_MAX_PER_REQUEST)), "filled up to the cap");
    assert.ok(allZero(filled.subarray(RNG_MAX_PER_REQUEST)), "and not a byte past it");
    const [a, b] = d.posted(two)!.writable;
    const second = rig.mem.slice(b!.addr, b!.len);
    const rest = RNG_MAX_PER_REQUEST - a!.len;
    assert.ok(!allZero(rig.mem.slice(a!.addr + a!.len - 32, 32)), "the first buffer is full");
    assert.ok(!allZero(second.subarray(rest - 32, rest)), "the second up to the cap");
    assert.ok(allZero(second.subarray(rest)));
  }),
);

Deno.test(
  "rng: readable buffers are neither read nor written and count for nothing in the used length",
  withRig((rig, d) => {
    const request = Uint8Array.from({ length: 32 }, (_, i) => i + 1);
    const mixed = d.add([request], [16]);
    const readOnly = d.add([request], []);
    const empty = d.add([], [0]);
    rig.bringUp(d);
    assert.deepEqual(d.used().map((u) => [u.id, u.len]), [[mixed, 16], [readOnly, 0], [empty, 0]]);
    for (const h of [mixed, readOnly]) {
      const r = d.posted(h)!.readable[0]!;
      assert.deepEqual(rig.mem.slice(r.addr, r.len), request, "the readable buffer is as the driver left it");
    }
    assert.ok(!allZero(d.writableData(mixed)));
    assert.equal(rig.status & S.NEEDS_RESET, 0);
  }),
);

Deno.test(
  "rng: a buffer outside RAM fails the device after the requests before it were served",
  withRig((rig, d) => {
    const good = d.add([], [16]);
    rig.bringUp(d);
    d.used();
    const next = d.add([], [16]);
    d.writeDesc(3, { addr: rig.mem.size - 4, len: 8, flags: VRING_DESC_F_WRITE, next: 0 });
    d.publish(3);
    rig.w(MMIO_REG.QUEUE_NOTIFY, 0);
    assert.deepEqual(d.used().map((u) => u.id), [next], "the good request was served");
    assert.notEqual(good, 3);
    assert.equal(rig.status & S.NEEDS_RESET, S.NEEDS_RESET);
    assert.match(rig.logText(), /^virtio-rng: virtio-rng queue 0: .*\[out-of-ram\]; device needs reset$/m);
    assert.ok(allZero(rig.mem.slice(rig.mem.size - 4, 4)), "the last bytes of RAM were not written");
  }),
);

/*T:671 The entropy device against a hostile driver: every descriptor,
 * indirect table, avail slot and index is random, with addresses and
 * lengths near the edges of a 192 KiB guest, and the features may or may
 * not include indirect tables. Whatever the device pops, it must fill
 * exactly the first min(writable bytes, cap) bytes of the chain's writable
 * buffers and report that many; guest memory may change nowhere else but
 * the used ring; and a broken rule must end as DEVICE_NEEDS_RESET, never
 * as an exception. :*/

const RAM = 192 * 1024;
const BASE = 0x1000;
const TABLES = [0x8000, 0x9000, RAM - 32];

const address = fc.oneof(
  { weight: 24, arbitrary: fc.integer({ min: 0x10000, max: RAM - 1 }) },
  { weight: 2, arbitrary: fc.constantFrom(0, 0x10000, RAM - 1, RAM - 16, RAM, 2 ** 32, 2 ** 53) },
  { weight: 1, arbitrary: fc.constantFrom(...TABLES) },
  { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }) },
);
const length = fc.oneof(
  { weight: 24, arbitrary: fc.nat(300) },
  { weight: 3, arbitrary: fc.constantFrom(0, 16, 32, 48, 4096, 0x8000, 0x10001, RAM) },
  { weight: 1, arbitrary: fc.nat(0xffffffff) },
);
const flags = fc.oneof(
  { weight: 16, arbitrary: fc.constantFrom(VRING_DESC_F_WRITE, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 0) },
  { weight: 2, arbitrary: fc.constantFrom(VRING_DESC_F_NEXT, VRING_DESC_F_INDIRECT) },
  { weight: 1, arbitrary: fc.nat(0xffff) },
);
const desc = (entries: number): fc.Arbitrary<RawDesc> =>
  fc.record({
    addr: address,
    len: length,
    flags,
    next: fc.oneof({ weight: 19, arbitrary: fc.nat(entries - 1) }, { weight: 1, arbitrary: fc.nat(0xffff) }),
  });

const scenario = fc.constantFrom(1, 2, 4, 8, 16).chain((size) =>
  fc.record({
    size: fc.constant(size),
    ring: fc.array(desc(size), { minLength: size, maxLength: size }),
    tables: fc.array(fc.array(desc(4), { minLength: 1, maxLength: 4 }), { minLength: 3, maxLength: 3 }),
    heads: fc.array(fc.oneof({ weight: 20, arbitrary: fc.nat(size - 1) }, { weight: 1, arbitrary: fc.nat(0xffff) }), {
      minLength: 1,
      maxLength: size,
    }),
    extra: fc.oneof({ weight: 19, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.nat(0xffff) }),
    indirect: fc.boolean(),
    eventIdx: fc.boolean(),
    kicks: fc.nat(3),
  })
);

Deno.test("rng fuzz: hostile chains never throw and get random bytes only where the driver asked", () => {
  const mem = GuestMemory.create(RAM);
  const loop = new EventLoop();
  try {
    fc.assert(
      fc.property(scenario, (sc) => {
        mem.bytes.fill(0);
        const d = new TestDriver(mem, { base: BASE, size: sc.size, eventIdx: sc.eventIdx });
        sc.ring.forEach((x, i) => d.writeDesc(i, x));
        sc.tables.forEach((t, k) => d.writeTable(TABLES[k]!, t.slice(0, (RAM - TABLES[k]!) / 16)));
        sc.heads.forEach((h) => d.publish(h));
        if (sc.extra) d.setAvailIdx(d.availIdx + sc.extra);
        const before = mem.bytes.slice();
        const popped: Popped[] = [];
        const rig = new MmioRig({
          shared: { mem, loop },
          recorder: { onPop: (_q, c) => popped.push({ head: c.head, writable: c.writable, bytes: c.writableBytes }) },
        });
        try {
          const features = bit(VIRTIO_F.VERSION_1) | (sc.indirect ? bit(VIRTIO_F.INDIRECT_DESC) : 0n) |
            (sc.eventIdx ? bit(VIRTIO_F.EVENT_IDX) : 0n);
          rig.bringUp(d, features);
          for (let k = 0; k < sc.kicks; k++) rig.w(MMIO_REG.QUEUE_NOTIFY, 0);
          const clobbered = check(mem, d, before, popped);
          if (rig.status & S.NEEDS_RESET) {
            assert.match(rig.logText(), /^virtio-rng: virtio-rng queue 0: .* \[[a-z-]+\]; device needs reset$/m);
          } else if (!clobbered) {
            assert.equal(popped.length, (sc.heads.length + sc.extra) & 0xffff, "every posted chain was served");
          }
        } finally {
          rig.close();
        }
      }),
      { numRuns: 10_000 },
    );
  } finally {
    loop.close();
    mem.close();
  }
});

type Popped = { head: number; writable: Segment[]; bytes: number };

/**
 * Used ring = popped chains in order, each filled by exactly its capped length; nothing else changed.
 * @returns whether a chain's buffers covered the rings (its random bytes then rewrote them, so the
 * used ring's old entries and the avail ring are no longer what the driver wrote)
 */
function check(mem: GuestMemory, d: TestDriver, before: Uint8Array, popped: Popped[]): boolean {
  const ringEnd = Number(d.layout.used) + 6 + 8 * d.size;
  const clobbered = popped.some((p) => p.writable.some((s) => s.addr < ringEnd && s.addr + s.len > BASE));
  if (!clobbered) {
    assert.deepEqual(
      d.used().map((u) => [u.id, u.len]),
      popped.map((p) => [p.head, Math.min(p.bytes, RNG_MAX_PER_REQUEST)]),
    );
  }
  const allowed: Segment[] = [{ addr: Number(d.layout.used), len: 6 + 8 * d.size }];
  for (const p of popped) {
    let left = RNG_MAX_PER_REQUEST;
    for (const s of p.writable) {
      if (left <= 0) break;
      allowed.push({ addr: s.addr, len: Math.min(s.len, left) });
      left -= s.len;
    }
  }
  const now = mem.bytes;
  const nowWords = new BigUint64Array(now.buffer, now.byteOffset, now.length / 8);
  const beforeWords = new BigUint64Array(before.buffer, before.byteOffset, before.length / 8);
  for (let i = 0; i < nowWords.length; i++) {
    if (nowWords[i] === beforeWords[i]) continue;
    for (let b = 8 * i; b < 8 * i + 8; b++) {
      if (now[b] === before[b]) continue;
      assert.ok(allowed.some((s) => b >= s.addr && b < s.addr + s.len), `byte 0x${b.toString(16)} written`);
    }
  }
  return clobbered;
}

/*T:672 The entropy device as Linux 6.1 drives it. The freestanding test
 * guest rings the doorbell after every buffer; Linux does not. Its
 * virtio_rng (drivers/char/hw_random/virtio-rng.c) keeps exactly one buffer
 * posted, its 64-byte vi->data, and posts it again from copy_data() once it
 * has handed out what the device wrote there (or finds its index past it).
 * virtio_ring.c rings only if virtqueue_kick_prepare() says so, which with
 * EVENT_IDX (Linux always accepts it) means only if avail.idx stepped over
 * avail_event, and it asks for the next interrupt by writing used_event in
 * virtqueue_get_buf(). The hwrng core reads 32 bytes without waiting when the
 * driver registers (add_early_randomness), then its fill thread and every
 * reader of /dev/hwrng read 64 bytes at a time and wait for them.
 *
 * LinuxVirtioRng plays those functions one for one against the real
 * transport, from zeroed rings as Linux allocates them. The device answers
 * synchronously, so a read that has to wait and finds no completion after
 * its doorbell is one the guest would wait on forever: the test fails there,
 * which is how /init's `dd if=/dev/hwrng` came to read 0 bytes before
 * `timeout` killed it. :*/

/** sizeof(vi->data): SMP_CACHE_BYTES on x86-64. */
const LINUX_DATA = 64;
/** Where the model keeps vi->data in guest RAM (past the TestDriver's rings for a 256-entry queue). */
const LINUX_DATA_GPA = 0x8000;

/** Linux 6.1's virtio-rng.c over virtio_ring.c's split ring and virtio_mmio.c's interrupt handler. */
class LinuxVirtioRng {
  /** request_entropy() calls. */
  requests = 0;
  /** Doorbells rung (kicks that virtqueue_kick_prepare() let through). */
  kicks = 0;
  readonly #rig: MmioRig;
  readonly #d: TestDriver;
  readonly #features: bigint;
  /** vi->data_avail, vi->data_idx. */
  #dataAvail = 0;
  #dataIdx = 0;
  /** vi->have_data's done count. */
  #done = 0;
  /** Interrupts handled so far, and the driver's last_used_idx. */
  #irqs = 0;
  #lastUsed = 0;

  constructor(rig: MmioRig, d: TestDriver, features: bigint) {
    this.#rig = rig;
    this.#d = d;
    this.#features = features;
  }

  /** probe_common(): virtio_find_single_vq(), virtio_device_ready() (DRIVER_OK), then the first request. */
  probe(): void {
    assert.equal(this.#rig.bringUp(this.#d, this.#features), S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK | S.DRIVER_OK);
    this.#requestEntropy();
  }

  /** virtio_read(): what is left of the last answer, then (if `wait`) whole new ones until `size` bytes. */
  read(size: number, wait: boolean): Uint8Array {
    const parts: Uint8Array[] = [];
    const copy = () => {
      const chunk = this.#copyData(size);
      parts.push(chunk);
      size -= chunk.length;
    };
    if (this.#dataAvail) copy();
    while (wait && size !== 0) {
      // wait_for_completion_killable(&vi->have_data)
      assert.ok(
        this.#done > 0,
        `virtio_read would wait forever: request ${this.requests} posted (avail.idx ${this.#d.availIdx}, ` +
          `avail_event ${this.#d.readAvailEvent()}), ${this.kicks} doorbells for ${this.requests} requests, ` +
          `used.idx ${this.#d.usedIdx()}`,
      );
      this.#done--;
      if (this.#dataAvail === 0) break;
      copy();
    }
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
    return out;
  }

  /** copy_data(), as 6.1 has it: the bound is data_avail (what is left), compared with data_idx. */
  #copyData(size: number): Uint8Array {
    const avail = Math.min(this.#dataAvail, LINUX_DATA);
    if (this.#dataIdx >= avail) {
      this.#dataAvail = 0;
      this.#requestEntropy();
      return new Uint8Array(0);
    }
    size = Math.min(size, avail - this.#dataIdx);
    const out = this.#rig.mem.slice(LINUX_DATA_GPA + this.#dataIdx, size).slice();
    this.#dataIdx += size;
    this.#dataAvail -= size;
    if (this.#dataAvail === 0) this.#requestEntropy();
    return out;
  }

  /** request_entropy(): reinit the completion, post vi->data (descriptor 0 again: one buffer in flight), kick. */
  #requestEntropy(): void {
    this.#done = 0;
    this.#dataIdx = 0;
    this.requests++;
    this.#d.writeDesc(0, { addr: LINUX_DATA_GPA, len: LINUX_DATA, flags: VRING_DESC_F_WRITE, next: 1 });
    this.#d.publish(0);
    if (this.#d.needsNotify()) {
      this.kicks++;
      this.#rig.w(MMIO_REG.QUEUE_NOTIFY, 0);
    }
    this.#interrupts();
  }

  /** vm_interrupt() for each interrupt raised: read and ack InterruptStatus, then vring_interrupt(). */
  #interrupts(): void {
    while (this.#irqs < this.#rig.interrupts) {
      this.#irqs = this.#rig.interrupts;
      const status = this.#rig.r(MMIO_REG.INTERRUPT_STATUS);
      this.#rig.w(MMIO_REG.INTERRUPT_ACK, status);
      if (status & MMIO_INT.VRING && this.#d.usedIdx() !== this.#lastUsed) this.#recvDone();
    }
  }

  /** random_recv_done(): virtqueue_get_buf() (which moves used_event on), then complete(). */
  #recvDone(): void {
    const used = this.#d.used();
    assert.equal(used.length, 1, "one buffer was in flight");
    assert.equal(used[0]!.id, 0);
    this.#lastUsed = (this.#lastUsed + 1) & 0xffff;
    if (this.#d.eventIdx) this.#d.setUsedEvent(this.#lastUsed);
    this.#dataAvail = used[0]!.len;
    this.#done++;
  }
}

for (const eventIdx of [true, false]) {
  Deno.test(
    `rng: Linux 6.1 virtio_rng gets every read it waits for, ${eventIdx ? "with" : "without"} EVENT_IDX`,
    () => {
      const rig = new MmioRig({ ram: 1024 * 1024 });
      try {
        const d = new TestDriver(rig.mem, { base: 0x1000, size: 256, eventIdx });
        assert.ok(ringLayout(0x1000, 256).end <= LINUX_DATA_GPA);
        const features = bit(VIRTIO_F.VERSION_1) | bit(VIRTIO_F.INDIRECT_DESC) |
          (eventIdx ? bit(VIRTIO_F.EVENT_IDX) : 0n);
        const linux = new LinuxVirtioRng(rig, d, features);
        linux.probe();
        assert.equal(d.usedIdx(), 1, "the probe's buffer came back");

        // hwrng_register() -> add_early_randomness(): 32 bytes, no waiting.
        const early = linux.read(32, false);
        assert.equal(early.length, 32);
        assert.ok(!allZero(early));

        // The hwrng fill thread, then /init's dd (rng_dev_read): 64 bytes at a time, waiting. Enough rounds to
        // wrap the 256-entry rings.
        const seen = new Set<string>([hex(early)]);
        for (let round = 0; round < 300; round++) {
          const got = linux.read(LINUX_DATA, true);
          assert.equal(got.length, LINUX_DATA, `read ${round} got ${got.length} bytes`);
          seen.add(hex(got));
        }
        assert.equal(seen.size, 301, "every answer was new");
        assert.equal(linux.read(LINUX_DATA, true).length, LINUX_DATA, "and dd gets its 16 and more");

        assert.equal(linux.kicks, linux.requests, "each request rang the doorbell");
        assert.equal(rig.device.notifies.length, linux.kicks);
        assert.equal(d.usedIdx(), linux.requests & 0xffff, "and was served");
        assert.equal(rig.interrupts, linux.requests, "with one interrupt each");
        if (eventIdx) assert.equal(d.readAvailEvent(), d.availIdx, "avail_event asks for the next buffer");
        else assert.equal(d.usedFlags(), 0, "NO_NOTIFY stays clear");
        assert.equal(rig.status & S.NEEDS_RESET, 0);
      } finally {
        rig.close();
      }
    },
  );
}

Deno.test(
  "rng: a buffer posted while the device finishes a drain, without a doorbell, is served in the same turn",
  withRig((rig, d) => {
    rig.bringUp(d);
    assert.equal(d.readAvailEvent(), 0);
    // The guest's vCPU runs while we serve: let it post between our last look at avail.idx and our write of
    // avail_event. It reads the old avail_event, so it does not ring.
    const vq = rig.device.queues[0]!;
    const pop = vq.pop.bind(vq);
    let late: number | undefined;
    vq.pop = () => {
      const chain = pop();
      if (chain === undefined && late === undefined) {
        late = d.add([], [32]);
        assert.equal(d.needsNotify(), false, "avail_event not yet moved: no doorbell");
      }
      return chain;
    };
    const first = d.add([], [32]);
    assert.ok(d.needsNotify());
    rig.w(MMIO_REG.QUEUE_NOTIFY, 0);
    assert.notEqual(late, undefined);
    assert.deepEqual(d.used().map((u) => [u.id, u.len]), [[first, 32], [late, 32]]);
    assert.equal(rig.interrupts, 1, "one interrupt for both");
    assert.equal(d.readAvailEvent(), d.availIdx, "the next buffer rings");
    assert.ok(!allZero(d.writableData(late!)));
  }),
);
