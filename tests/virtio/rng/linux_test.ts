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
 * transport, from zeroed rings as Linux allocates them. After each doorbell
 * it waits until the rig's loop has served it, so a read that has to wait
 * and finds no completion then is one the guest would wait on forever: the
 * test fails there, which is how /init's `dd if=/dev/hwrng` came to read 0
 * bytes before `timeout` killed it. :*/

import assert from "node:assert/strict";
import { bit, VIRTIO_F, VIRTIO_STATUS } from "../../../lib/virtio/device.ts";
import { MMIO_INT, MMIO_REG } from "../../../lib/virtio/mmio/regs.ts";
import { VRING_DESC_F_WRITE } from "../../../lib/virtio/queue.ts";
import { ringLayout, TestDriver } from "../driver.ts";
import { MmioRig } from "../mmio/rig.ts";

const S = VIRTIO_STATUS;

function allZero(bytes: Uint8Array): boolean {
  return bytes.every((b) => b === 0);
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

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
  async probe(): Promise<void> {
    assert.equal(this.#rig.bringUp(this.#d, this.#features), S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK | S.DRIVER_OK);
    await this.#requestEntropy();
  }

  /** virtio_read(): what is left of the last answer, then (if `wait`) whole new ones until `size` bytes. */
  async read(size: number, wait: boolean): Promise<Uint8Array> {
    const parts: Uint8Array[] = [];
    const copy = async () => {
      const chunk = await this.#copyData(size);
      parts.push(chunk);
      size -= chunk.length;
    };
    if (this.#dataAvail) await copy();
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
      await copy();
    }
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
    return out;
  }

  /** copy_data(), as 6.1 has it: the bound is data_avail (what is left), compared with data_idx. */
  async #copyData(size: number): Promise<Uint8Array> {
    const avail = Math.min(this.#dataAvail, LINUX_DATA);
    if (this.#dataIdx >= avail) {
      this.#dataAvail = 0;
      await this.#requestEntropy();
      return new Uint8Array(0);
    }
    size = Math.min(size, avail - this.#dataIdx);
    const out = this.#rig.mem.slice(LINUX_DATA_GPA + this.#dataIdx, size).slice();
    this.#dataIdx += size;
    this.#dataAvail -= size;
    if (this.#dataAvail === 0) await this.#requestEntropy();
    return out;
  }

  /** request_entropy(): reinit the completion, post vi->data (descriptor 0 again: one buffer in flight), kick. */
  async #requestEntropy(): Promise<void> {
    this.#done = 0;
    this.#dataIdx = 0;
    this.requests++;
    this.#d.writeDesc(0, { addr: LINUX_DATA_GPA, len: LINUX_DATA, flags: VRING_DESC_F_WRITE, next: 1 });
    this.#d.publish(0);
    if (this.#d.needsNotify()) {
      this.kicks++;
      await this.#rig.kick(0);
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
    async () => {
      await using rig = new MmioRig({ ram: 1024 * 1024 });
      {
        const d = new TestDriver(rig.mem, { base: 0x1000, size: 256, eventIdx });
        assert.ok(ringLayout(0x1000, 256).end <= LINUX_DATA_GPA);
        const features = bit(VIRTIO_F.VERSION_1) | bit(VIRTIO_F.INDIRECT_DESC) |
          (eventIdx ? bit(VIRTIO_F.EVENT_IDX) : 0n);
        const linux = new LinuxVirtioRng(rig, d, features);
        await linux.probe();
        assert.equal(d.usedIdx(), 1, "the probe's buffer came back");

        // hwrng_register() -> add_early_randomness(): 32 bytes, no waiting.
        const early = await linux.read(32, false);
        assert.equal(early.length, 32);
        assert.ok(!allZero(early));

        // The hwrng fill thread, then /init's dd (rng_dev_read): 64 bytes at a time, waiting. Enough rounds to
        // wrap the 256-entry rings.
        const seen = new Set<string>([hex(early)]);
        for (let round = 0; round < 300; round++) {
          const got = await linux.read(LINUX_DATA, true);
          assert.equal(got.length, LINUX_DATA, `read ${round} got ${got.length} bytes`);
          seen.add(hex(got));
        }
        assert.equal(seen.size, 301, "every answer was new");
        assert.equal((await linux.read(LINUX_DATA, true)).length, LINUX_DATA, "and dd gets its 16 and more");

        assert.equal(linux.kicks, linux.requests, "each request rang the doorbell");
        assert.equal(d.usedIdx(), linux.requests & 0xffff, "and was served");
        assert.equal(rig.interrupts, linux.requests, "with one interrupt each");
        if (eventIdx) assert.equal(d.readAvailEvent(), d.availIdx, "avail_event asks for the next buffer");
        else assert.equal(d.usedFlags(), 0, "NO_NOTIFY stays clear");
        assert.equal(rig.status & S.NEEDS_RESET, 0);
      }
    },
  );
}
