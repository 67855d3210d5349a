/*T:656 Interrupt status and the device's config space. InterruptStatus
 * holds a bit per cause until the driver acknowledges it; config bytes read
 * and write at any width, little-endian; and a config change is published
 * so that a driver on another thread never takes a half-written config for
 * a whole one: the last test has a real Worker read the config the way a
 * vCPU does (generation, every byte, generation), as fast as it can, while
 * the main thread flips the whole config between two patterns. A read that
 * saw the same generation twice must have seen one pattern, whole. :*/

import assert from "node:assert/strict";
import { VIRTIO_STATUS } from "../../../lib/virtio/device.ts";
import { MMIO_INT, MMIO_REG } from "../../../lib/virtio/mmio/regs.ts";
import { TestDriver } from "../driver.ts";
import { MmioRig } from "./rig.ts";

const R = MMIO_REG;
const S = VIRTIO_STATUS;

Deno.test("mmio: InterruptStatus bit 1 for used buffers, bit 2 for config changes; InterruptACK clears what it names", async () => {
  await using rig = new MmioRig();
  const d = new TestDriver(rig.mem, { base: 0x1000, size: 16, eventIdx: true });
  rig.bringUp(d);
  assert.equal(rig.r(R.INTERRUPT_STATUS), 0);
  d.add([], [8]);
  await rig.kick(0);
  assert.equal(rig.interrupts, 1);
  assert.equal(rig.r(R.INTERRUPT_STATUS), MMIO_INT.VRING);
  const generation = rig.r(R.CONFIG_GENERATION);
  rig.device.ctx!.configChanged();
  assert.equal(rig.interrupts, 2);
  assert.equal(rig.r(R.INTERRUPT_STATUS), MMIO_INT.VRING | MMIO_INT.CONFIG);
  assert.notEqual(rig.r(R.CONFIG_GENERATION), generation);
  rig.transport.write(R.INTERRUPT_ACK, 1, MMIO_INT.CONFIG);
  assert.equal(rig.r(R.INTERRUPT_STATUS), MMIO_INT.VRING | MMIO_INT.CONFIG, "a byte-wide ACK is ignored");
  rig.w(R.INTERRUPT_ACK, MMIO_INT.CONFIG);
  assert.equal(rig.r(R.INTERRUPT_STATUS), MMIO_INT.VRING);
  rig.w(R.INTERRUPT_ACK, MMIO_INT.VRING);
  assert.equal(rig.r(R.INTERRUPT_STATUS), 0);
  rig.w(R.INTERRUPT_STATUS, 3);
  assert.equal(rig.r(R.INTERRUPT_STATUS), 0, "InterruptStatus is read-only");
  assert.equal(rig.interrupts, 2);
});

Deno.test("mmio: config space reads and writes at byte, word and dword widths; ConfigGeneration follows changes", async () => {
  const config = Uint8Array.from({ length: 16 }, (_, i) => 0x10 + i);
  await using rig = new MmioRig({ recorder: { config } });
  const c = R.CONFIG;
  assert.equal(rig.transport.read(c + 3, 1), 0x13);
  assert.equal(rig.transport.read(c + 2, 2), 0x1312);
  assert.equal(rig.transport.read(c + 4, 4), 0x17161514);
  assert.equal(rig.transport.read(c + 14, 4), 0x1f1e, "bytes past the device's config read 0");
  const generation = rig.r(R.CONFIG_GENERATION);
  rig.transport.write(c + 1, 1, 0x1aa);
  rig.transport.write(c + 2, 2, 0xbeef);
  rig.transport.write(c + 4, 4, 0xdeadbeef);
  rig.transport.write(c + 8, 8, 0x12_3456_789a_bcde);
  rig.transport.write(c + 14, 4, 0xffffffff);
  assert.deepEqual(rig.device.configWrites, [
    { offset: 1, bytes: [0xaa] },
    { offset: 2, bytes: [0xef, 0xbe] },
    { offset: 4, bytes: [0xef, 0xbe, 0xad, 0xde] },
    { offset: 8, bytes: [0xde, 0xbc, 0x9a, 0x78, 0x56, 0x34, 0x12, 0x00] },
  ], "little-endian, and nothing past the end of the config");
  assert.equal(rig.transport.read(c + 2, 2), 0x1312, "the device decides what its config holds");
  assert.equal(rig.r(R.CONFIG_GENERATION), generation, "writes the device ignored change nothing");

  config[0] = 0x99;
  rig.transport.configChanged();
  const second = rig.r(R.CONFIG_GENERATION);
  assert.notEqual(second, generation);
  assert.equal(rig.transport.read(c, 1), 0x99, "the new bytes are published");
  assert.equal(rig.interrupts, 0, "no interrupt before DRIVER_OK");
  assert.equal(rig.r(R.INTERRUPT_STATUS), 0);
  rig.bringUp(new TestDriver(rig.mem, { base: 0x1000, size: 16, eventIdx: true }));
  assert.equal(rig.status & S.DRIVER_OK, S.DRIVER_OK);
  assert.equal(rig.r(R.CONFIG_GENERATION), second, "a reset and a bring-up change no config");
  config[1] = 0x77;
  rig.device.ctx!.configChanged();
  assert.notEqual(rig.r(R.CONFIG_GENERATION), second);
  assert.equal(rig.transport.read(c, 2), 0x7799);
  assert.equal(rig.r(R.INTERRUPT_STATUS), MMIO_INT.CONFIG);
  assert.equal(rig.interrupts, 1);
});

const CONFIG_BYTES = 64;
/* Slots of the shared control words. */
const STOP = 0;
const READS = 1;
const OVERLAPPED = 2;

const READER = `
import { MailboxClient, MmioProxy } from "${new URL("../../../lib/virtio/mmio/proxy.ts", import.meta.url).href}";
self.onmessage = (e) => {
  const { image, control } = e.data;
  const c = new Int32Array(control);
  const proxy = new MmioProxy("vcpu", 0, image, new MailboxClient(new SharedArrayBuffer(32), -1));
  const widths = [4, 2, 1, 1];
  const seen = { aa: 0, x55: 0, torn: 0, example: undefined };
  while (Atomics.load(c, ${STOP}) === 0) {
    const before = proxy.read(${R.CONFIG_GENERATION}, 4);
    const bytes = [];
    for (let at = 0, k = 0; at < ${CONFIG_BYTES}; k++) {
      const size = widths[k % widths.length];
      const v = proxy.read(${R.CONFIG} + at, size);
      for (let i = 0; i < size; i++) bytes.push((v >>> (8 * i)) & 0xff);
      at += size;
    }
    const after = proxy.read(${R.CONFIG_GENERATION}, 4);
    Atomics.add(c, ${READS}, 1);
    if (before !== after) {
      Atomics.add(c, ${OVERLAPPED}, 1);
    } else if (bytes.every((b) => b === 0xaa)) {
      seen.aa++;
    } else if (bytes.every((b) => b === 0x55)) {
      seen.x55++;
    } else {
      seen.torn++;
      seen.example ??= { generation: before, bytes };
    }
  }
  self.postMessage(seen);
};
`;

Deno.test("mmio: a vCPU reading generation, config, generation never sees a half-written config under one generation", async () => {
  const config = new Uint8Array(CONFIG_BYTES).fill(0xaa);
  await using rig = new MmioRig({ recorder: { config } });
  const control = new SharedArrayBuffer(16);
  const c = new Int32Array(control);
  const url = URL.createObjectURL(new Blob([READER], { type: "application/javascript" }));
  const worker = new Worker(url, { type: "module" });
  try {
    const result = new Promise<{ aa: number; x55: number; torn: number; example?: unknown }>((resolve, reject) => {
      worker.onmessage = (e) => resolve(e.data);
      worker.onerror = (e) => {
        e.preventDefault();
        reject(new Error(e.message));
      };
    });
    result.catch(() => {}); // awaited below; a worker that fails early must not go unhandled meanwhile
    worker.postMessage({ image: rig.image, control });
    const start = Date.now();
    while (Atomics.load(c, READS) === 0 && Date.now() - start < 10_000) await new Promise((r) => setTimeout(r, 5));
    let changes = 0;
    const deadline = Date.now() + 10_000;
    while ((Atomics.load(c, OVERLAPPED) < 500 || changes < 20_000) && Date.now() < deadline) {
      config.fill(changes % 2 === 0 ? 0x55 : 0xaa);
      rig.transport.configChanged();
      changes++;
    }
    Atomics.store(c, STOP, 1);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stuck = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("the reader did not stop within 10 s")), 10_000);
    });
    const seen = await Promise.race([result, stuck]).finally(() => clearTimeout(timer));
    const overlapped = Atomics.load(c, OVERLAPPED);
    const summary = `${changes} changes, ${Atomics.load(c, READS)} reads, ${overlapped} overlapped a change`;
    assert.equal(seen.torn, 0, `${summary}; torn reads under one generation: ${JSON.stringify(seen)}`);
    assert.ok(overlapped > 500, summary);
    assert.ok(seen.aa > 0 && seen.x55 > 0, `${summary}; whole reads of each pattern: ${seen.aa}, ${seen.x55}`);
  } finally {
    worker.terminate();
    URL.revokeObjectURL(url);
  }
});
