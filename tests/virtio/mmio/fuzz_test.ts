/*T:660 The transport against a random driver, judged by an independent
 * model (T:665). Each run is a sequence of register writes anywhere in the
 * window (aligned or not, 1 to 8 bytes, selectors out of range, status
 * bytes with random bits, whole bring-ups with good and bad rings), mixed
 * with things the device does on its own: fail, change its config, use
 * buffers. A real Worker plays the vCPU: every write goes through the real
 * MmioProxy, so InterruptACK is applied in place and everything else
 * crosses the real shared mailbox, whose eventfd wakes the rig's loop,
 * which applies it to the transport while the vCPU waits. The device's own
 * actions take the same road, posted to a second window the main thread
 * serves with the device's hand (so they land exactly between two writes).
 *
 * After every step the Worker reads the whole register window back through
 * the proxy, as the guest would, and each value must be what the model
 * says; after every forwarded write the main thread notes what the guest
 * cannot read (accepted features, irqfd count, the device's activations
 * and resets), and those must agree too. At the end, the device must have
 * been given exactly the queues the model expects, and guest memory may
 * have changed only inside their used rings. :*/

import assert from "node:assert/strict";
import fc from "fast-check";
import { close, eventfd } from "../../../lib/sys/calls.ts";
import { raiseInterrupt, VIRTIO_ID } from "../../../lib/virtio/device.ts";
import { MMIO_REG, MMIO_VENDOR, MMIO_WINDOW } from "../../../lib/virtio/mmio/regs.ts";
import { type ForwardedWrite, MailboxServer } from "../../../lib/virtio/mmio/proxy.ts";
import { FEATURE, MmioModel } from "./model.ts";
import { MmioRig } from "./rig.ts";
import { type Op, ops } from "./fuzz_ops.ts";

const RAM = 0x10000;
const R = MMIO_REG;
const HOOKS = { fail: 0, config: 4, used: 8 } as const;
const OFFERED = FEATURE.VERSION_1 | FEATURE.EVENT_IDX | FEATURE.INDIRECT_DESC;

/** Every read the vCPU makes after each step: the control registers, odd accesses, the config at 1, 2, 4 bytes. */
const PROBES: [number, number][] = [
  ...Array.from({ length: 64 }, (_, i): [number, number] => [4 * i, 4]),
  [R.STATUS, 1],
  [R.STATUS, 2],
  [R.STATUS + 1, 4],
  [R.INTERRUPT_STATUS, 1],
  [R.MAGIC + 2, 2],
  [R.QUEUE_READY, 8],
  ...Array.from({ length: 18 }, (_, i): [number, number] => [R.CONFIG + 4 * i, 4]),
  [R.CONFIG + 1, 1],
  [R.CONFIG + 3, 2],
  [R.CONFIG + 62, 2],
  [R.CONFIG + 61, 4],
  [R.CONFIG + 63, 1],
  [MMIO_WINDOW - 4, 4],
  [MMIO_WINDOW - 2, 4],
  [MMIO_WINDOW - 1, 1],
];
const GENERATION = PROBES.findIndex(([o]) => o === R.CONFIG_GENERATION);

function pattern(flipped: boolean): Uint8Array {
  return Uint8Array.from({ length: 64 }, (_, i) => (flipped ? ~(7 * i + 1) : 7 * i + 1) & 0xff);
}

const VCPU = `
import { MailboxClient, MmioProxy } from "${new URL("../../../lib/virtio/mmio/proxy.ts", import.meta.url).href}";
let client;
self.onmessage = (e) => {
  const m = e.data;
  if (m.mailbox !== undefined) {
    client = new MailboxClient(m.mailbox, m.fd);
    return;
  }
  const vcpu = new MmioProxy("vcpu", 0, m.image, client);
  const device = new MmioProxy("device", 1, m.image, client);
  const snapshots = [];
  for (const op of m.ops) {
    if (op.k === "write") vcpu.write(op.offset, op.size, op.value);
    else device.write(op.hook, 4, 0);
    snapshots.push(m.probes.map(([offset, size]) => vcpu.read(offset, size)));
  }
  self.postMessage(snapshots);
};
`;

/** What the guest cannot read, noted on the main thread after each forwarded write. */
interface Unseen {
  features: bigint;
  interrupts: number;
  activations: number;
  resets: number;
  live: boolean;
}

function show(op: Op): string {
  if (op.k !== "write") return `device ${op.what}`;
  return `write 0x${op.offset.toString(16)}/${op.size} = 0x${op.value.toString(16)}`;
}

/** One run: the transport behind a Worker vCPU, then every step replayed on the model and compared. */
async function check(vcpu: VcpuWorker, refuses: boolean, run: Op[]): Promise<void> {
  const config = pattern(false);
  await using rig = new MmioRig({ ram: RAM, recorder: { config, accept: () => !refuses } });
  const model = new MmioModel({
    deviceId: VIRTIO_ID.RNG,
    vendorId: MMIO_VENDOR,
    offered: OFFERED,
    queueSizes: [256],
    ram: BigInt(RAM),
    accepts: () => !refuses,
  }, config);
  const unseen: Unseen[] = [];
  const thrown: unknown[] = [];
  let flips = 0;
  const serve = (w: ForwardedWrite) => {
    try {
      if (w.device === 0) rig.transport.write(w.offset, w.size, w.value);
      else if (w.offset === HOOKS.fail) rig.device.ctx?.fail("fuzz [fuzz-rule]");
      else if (w.offset === HOOKS.config) {
        config.set(pattern(++flips % 2 === 1));
        rig.transport.configChanged();
      } else {
        const session = rig.device.sessions.find((s) => s !== undefined);
        if (rig.device.live && session !== undefined) raiseInterrupt(session.interrupt);
      }
    } catch (e) {
      thrown.push(e);
    }
    const { activations, resets, live } = rig.device;
    unseen.push({ features: rig.transport.features, interrupts: rig.interrupts, activations, resets, live });
  };
  rig.serveMailbox(vcpu.mailbox, vcpu.fd, serve);
  let snapshots: number[][];
  try {
    snapshots = await vcpu.run(rig.image, run);
  } finally {
    rig.loop.remove(vcpu.fd);
  }
  assert.deepEqual(thrown, [], "nothing throws out of the transport");
  const generations = new Map<number, number>();
  let forwarded = 0;
  for (const [i, op] of run.entries()) {
    const where = `after step ${i} (${show(op)}): `;
    if (op.k === "write") model.write(op.offset, op.size, op.value);
    else if (op.what === "fail") model.deviceFailed();
    else if (op.what === "config") model.configChanged(pattern((model.configVersion + 1) % 2 === 1));
    else model.usedBuffers();
    if (op.k !== "write" || op.offset !== R.INTERRUPT_ACK || op.size !== 4) {
      const seen = unseen[forwarded++];
      const { activations, stops: resets, live, interrupts, features } = model;
      assert.deepEqual(seen, { features, interrupts, activations: activations.length, resets, live }, where);
    }
    const snapshot = snapshots[i]!;
    for (const [p, [offset, size]] of PROBES.entries()) {
      if (p === GENERATION) continue;
      const what = `${where}read 0x${offset.toString(16)}/${size}`;
      assert.equal(`0x${snapshot[p]!.toString(16)}`, `0x${model.read(offset, size).toString(16)}`, what);
    }
    const generation = snapshot[GENERATION]!;
    const known = generations.get(model.configVersion);
    if (known === undefined) {
      assert.ok(![...generations.values()].includes(generation), `${where}generation ${generation} reused`);
      generations.set(model.configVersion, generation);
    } else assert.equal(generation, known, `${where}ConfigGeneration moved without a config change`);
  }
  assert.equal(forwarded, unseen.length, "every forwarded write reached the main thread once");
  if (model.status & 0x40) assert.match(rig.logText(), /^virtio-rng: .*; device needs reset$/m);
  assert.deepEqual(rig.device.asked, model.asked, "the device was asked about these feature sets");
  assert.deepEqual(rig.device.configWrites, model.configWrites, "config writes reached the device");
  checkActivations(rig, model);
}

function checkActivations(rig: MmioRig, model: MmioModel): void {
  const allowed: [number, number][] = [];
  assert.equal(rig.device.activated.length, model.activations.length);
  for (const [a, expected] of model.activations.entries()) {
    const sessions = rig.device.activated[a]!;
    assert.equal(sessions.length, expected.queues.length);
    for (const [index, q] of expected.queues.entries()) {
      const s = sessions[index];
      if (q === undefined) {
        assert.equal(s, undefined, `activation ${a}: queue ${index} was not ready`);
        continue;
      }
      assert.ok(s !== undefined, `activation ${a}: queue ${index} was ready`);
      assert.deepEqual(s.layout, { size: q.num, desc: q.desc, avail: q.driver, used: q.device });
      const f = expected.features;
      assert.deepEqual(s.features, {
        eventIdx: (f & FEATURE.EVENT_IDX) !== 0n,
        indirect: (f & FEATURE.INDIRECT_DESC) !== 0n,
      });
      assert.deepEqual(s.start, { lastAvailIdx: 0, usedIdx: 0 });
      assert.equal(s.doorbell, rig.doorbells[index]);
      assert.deepEqual(s.interrupt, { irqfd: rig.irqfd, status: rig.image, word: R.INTERRUPT_STATUS >> 2 });
      allowed.push([Number(q.device), 6 + 8 * q.num]);
    }
  }
  const bytes = rig.mem.bytes;
  for (let b = 0; b < bytes.length; b++) {
    if (bytes[b] === 0) continue;
    assert.ok(allowed.some(([at, len]) => b >= at && b < at + len), `guest byte 0x${b.toString(16)} changed`);
  }
}

/** The vCPU: a Worker that runs a list of steps through MmioProxy and answers with what it read after each. */
class VcpuWorker {
  readonly mailbox: SharedArrayBuffer = MailboxServer.shared();
  readonly fd: number = eventfd();
  readonly #url = URL.createObjectURL(new Blob([VCPU], { type: "application/javascript" }));
  readonly #worker = new Worker(this.#url, { type: "module" });
  #answer: { resolve: (s: number[][]) => void; reject: (e: Error) => void } | undefined;

  constructor() {
    this.#worker.onmessage = (e: MessageEvent<number[][]>) => this.#answer?.resolve(e.data);
    this.#worker.onerror = (e) => {
      e.preventDefault();
      this.#answer?.reject(new Error(e.message));
    };
    this.#worker.postMessage({ mailbox: this.mailbox, fd: this.fd });
  }

  /** Runs `ops` against the window whose registers are `image` (bounded: a lost write fails, not hangs). */
  run(image: SharedArrayBuffer, ops: Op[]): Promise<number[][]> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    return new Promise<number[][]>((resolve, reject) => {
      this.#answer = { resolve, reject };
      timer = setTimeout(() => reject(new Error("the vCPU did not finish its steps within 20 s")), 20_000);
      this.#worker.postMessage({ image, ops, probes: PROBES });
    }).finally(() => clearTimeout(timer));
  }

  close(): void {
    this.#worker.terminate();
    URL.revokeObjectURL(this.#url);
    close(this.fd);
  }
}

/** Now and then the device refuses every feature set. */
const refusals = fc.oneof({ weight: 5, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) });

Deno.test("mmio fuzz: through a real vCPU Worker and mailbox, every register reads what the spec's model says", async () => {
  const vcpu = new VcpuWorker();
  try {
    await fc.assert(
      fc.asyncProperty(refusals, ops(RAM, HOOKS), async (refuses, run) => await check(vcpu, refuses, run)),
      { numRuns: 300 },
    );
  } finally {
    vcpu.close();
  }
});
