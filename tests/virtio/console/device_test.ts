/*T:610 The console device, driven by a TypeScript driver through the real
 * transport, with a real socket as its stdout. Output must leave in order,
 * from guest memory, with each chain returned only once its bytes are out;
 * a full stdout must hold chains back without ever blocking the caller, and
 * a vanished one must not hang the guest. Input must fill the oldest buffer
 * first, say exactly how much it wrote, and push back when the driver has
 * lent nothing. Rules a driver breaks must end as DEVICE_NEEDS_RESET naming
 * the queue and the rule. :*/

import assert from "node:assert/strict";
import { setNonBlocking } from "../../../lib/sys/calls.ts";
import { MMIO_REG } from "../../../lib/virtio/mmio/regs.ts";
import {
  CONSOLE_CONFIG,
  CONSOLE_RX,
  CONSOLE_TX,
  ConsoleDevice,
  VIRTIO_CONSOLE_F,
} from "../../../lib/virtio/console/device.ts";
import { OUTPUT_CHUNK } from "../../../lib/virtio/console/output.ts";
import { bit } from "../../../lib/virtio/device.ts";
import { ConsoleRig } from "./rig.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function withRig(body: (rig: ConsoleRig) => void | Promise<void>, options = {}): () => Promise<void> {
  return async () => {
    const rig = new ConsoleRig(options);
    try {
      await body(rig);
    } finally {
      await rig.close();
    }
  };
}

function pattern(n: number, seed = 1): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);
}

Deno.test(
  "console: output chains reach stdout in order and come back used with length 0",
  withRig((rig) => {
    const a = rig.send(enc.encode("hello "));
    const b = rig.send(enc.encode("from the guest\n"), [3, 5, 7]);
    const c = rig.tx.add([enc.encode("indirect"), enc.encode("!")], [], { indirect: true });
    rig.notify(CONSOLE_TX);
    assert.equal(dec.decode(rig.output()), "hello from the guest\nindirect!");
    assert.deepEqual(rig.tx.used(), [{ id: a, len: 0 }, { id: b, len: 0 }, { id: c, len: 0 }]);
    assert.ok(rig.interrupts >= 1);
    assert.equal(rig.failed, false);
  }),
);

Deno.test(
  "console: output larger than one write is split across writes without loss",
  withRig((rig) => {
    const big = pattern(3 * OUTPUT_CHUNK + 123);
    rig.send(big, [1000, 5000, 100, big.length - 6100]);
    rig.send(pattern(10, 7));
    rig.notify(CONSOLE_TX);
    assert.deepEqual(rig.output(), Uint8Array.from([...big, ...pattern(10, 7)]));
    assert.equal(rig.tx.used().length, 2);
  }),
);

/*T:611 Back-pressure on output. With the socket full, the doorbell must
 * return at once with nothing used; once the reader drains it, the event
 * loop (EPOLLOUT) finishes the job and every byte follows the filler, in
 * order. The same must hold when someone made the descriptor non-blocking
 * (EAGAIN instead of a poll that says no). :*/
for (const nonBlocking of [false, true]) {
  Deno.test(
    `console: a full stdout holds chains back and resumes when it drains${nonBlocking ? " (O_NONBLOCK)" : ""}`,
    withRig(async (rig) => {
      if (nonBlocking) setNonBlocking(rig.outFd);
      const filler = rig.fillOutput();
      assert.ok(filler > 0);
      const data = pattern(20000, 3);
      const heads = [rig.send(data.subarray(0, 7000), [3000, 4000]), rig.send(data.subarray(7000))];
      rig.notify(CONSOLE_TX);
      assert.deepEqual(rig.tx.used(), [], "nothing is returned before it is written");
      const used: number[] = [];
      await rig.runUntil(() => {
        rig.output();
        used.push(...rig.tx.used().map((u) => u.id));
        return used.length === 2;
      });
      assert.deepEqual(used, heads);
      const out = rig.output();
      assert.equal(out.length, filler + data.length);
      assert.ok(out.subarray(0, filler).every((b) => b === 0x2e));
      assert.deepEqual(out.subarray(filler), data);
      assert.equal(rig.failed, false);
    }),
  );
}

Deno.test(
  "console: a reset drops blocked output and leaves nothing watching stdout",
  withRig(async (rig) => {
    const filler = rig.fillOutput();
    rig.send(enc.encode("never printed"));
    rig.notify(CONSOLE_TX);
    rig.transport.reset();
    let turns = 0;
    await rig.runUntil(() => ++turns > 20);
    const out = rig.output();
    assert.equal(out.length, filler, "only the filler came out");
    assert.deepEqual(rig.tx.used(), []);
  }),
);

Deno.test(
  "console: when stdout goes away the chains still come back and the device carries on",
  withRig((rig) => {
    rig.closePeer();
    const a = rig.send(enc.encode("lost"));
    rig.notify(CONSOLE_TX);
    const b = rig.send(enc.encode("also lost"));
    rig.notify(CONSOLE_TX);
    assert.deepEqual(rig.tx.used().map((u) => u.id), [a, b]);
    assert.equal(rig.logs.filter((l) => l.includes("output failed")).length, 1, rig.logs.join("\n"));
    assert.equal(rig.failed, false);
  }),
);

/*T:612 Input. Nothing lent: nothing taken, and the space listener stays
 * quiet until the driver rings the receiveq. Then the oldest buffer fills
 * first, each is returned with exactly what went into it, and a short
 * offer is remembered so the next doorbell calls the listener again. :*/
Deno.test(
  "console: input fills lent buffers oldest first and pushes back when there are none",
  withRig((rig) => {
    let spaces = 0;
    rig.device.onSpace(() => spaces++);
    const input = enc.encode("0123456789abcdefghij");
    assert.equal(rig.device.receive(input), 0, "no buffers lent yet");
    assert.equal(spaces, 0);
    const h1 = rig.rx.add([], [4]);
    const h2 = rig.rx.add([], [2, 3]);
    rig.notify(CONSOLE_RX);
    assert.equal(spaces, 1, "lent buffers: the pump hears of it");
    assert.equal(rig.device.receive(input), 9);
    assert.deepEqual(rig.rx.used(), [{ id: h1, len: 4 }, { id: h2, len: 5 }]);
    assert.equal(dec.decode(rig.rx.writableData(h1)), "0123");
    assert.equal(dec.decode(rig.rx.writableData(h2)), "45678");
    const h3 = rig.rx.add([], [64]);
    rig.notify(CONSOLE_RX);
    assert.equal(spaces, 2);
    assert.equal(rig.device.receive(input.subarray(9)), 11);
    assert.deepEqual(rig.rx.used(), [{ id: h3, len: 11 }]);
    assert.equal(dec.decode(rig.rx.writableData(h3)), "9abcdefghij");
    const h4 = rig.rx.add([], [8]);
    rig.notify(CONSOLE_RX);
    assert.equal(spaces, 2, "nobody is waiting: no call");
    assert.deepEqual(rig.rx.used(), [], "an unused buffer stays lent");
    assert.ok(h4 >= 0);
  }),
);

Deno.test(
  "console: a receive chain of zero-length buffers goes straight back and takes no input",
  withRig((rig) => {
    const h = rig.rx.add([], [0, 0]);
    rig.notify(CONSOLE_RX);
    assert.deepEqual(rig.rx.used(), [{ id: h, len: 0 }]);
    assert.equal(rig.device.receive(enc.encode("x")), 0);
  }),
);

Deno.test(
  "console: a driver re-posting one head gets each posting filled and used once, in turn",
  withRig((rig) => {
    const head = rig.rx.add([], [1]);
    for (let i = 1; i < rig.rx.size; i++) rig.rx.publish(head);
    rig.notify(CONSOLE_RX);
    for (let i = 0; i < rig.rx.size; i++) rig.rx.publish(head);
    rig.notify(CONSOLE_RX);
    const taken = rig.device.receive(new Uint8Array(10 * rig.rx.size));
    assert.equal(taken, 2 * rig.rx.size, "one byte per posting, each posting used once");
    assert.equal(rig.rx.usedIdx(), 2 * rig.rx.size);
    assert.equal(rig.failed, false);
  }),
);

/*T:613 The console's own two rules, on top of the ring's: readable
 * buffers on the receiveq, writable ones on the transmitq. :*/
Deno.test(
  "console: a readable buffer on the receiveq fails the device naming queue and rule",
  withRig((rig) => {
    rig.rx.add([enc.encode("bad")], [4]);
    rig.notify(CONSOLE_RX);
    assert.equal(rig.failed, true);
    assert.match(rig.logs.join("\n"), /virtio-console queue 0: .*\[rx-readable\]/);
    assert.equal(rig.device.receive(enc.encode("x")), 0, "a failed device takes no input");
  }),
);

Deno.test(
  "console: a writable buffer on the transmitq fails the device, after printing what came before",
  withRig((rig) => {
    rig.send(enc.encode("good "));
    rig.tx.add([enc.encode("bad")], [8]);
    rig.notify(CONSOLE_TX);
    assert.equal(rig.failed, true);
    assert.match(rig.logs.join("\n"), /virtio-console queue 1: .*\[tx-writable\]/);
    assert.equal(dec.decode(rig.output()), "good ");
  }),
);

Deno.test(
  "console: a transmit buffer outside guest RAM fails the device with out-of-ram",
  withRig((rig) => {
    rig.tx.writeDesc(0, { addr: 2 * 1024 * 1024 - 2, len: 4, flags: 0, next: 0 });
    rig.tx.publish(0);
    rig.notify(CONSOLE_TX);
    assert.equal(rig.failed, true);
    assert.match(rig.logs.join("\n"), /queue 1: .*\[out-of-ram\]/);
    assert.equal(rig.output().length, 0);
  }),
);

/*T:614 The config space: one port, no size without a terminal, and the
 * emergency write register printing one byte, queued behind other output. :*/
Deno.test(
  "console: config space and the emergency write",
  withRig((rig) => {
    assert.equal(rig.transport.read(MMIO_REG.CONFIG + CONSOLE_CONFIG.MAX_NR_PORTS, 4), 1);
    assert.equal(rig.device.features & bit(VIRTIO_CONSOLE_F.SIZE), 0n, "a socket has no window size");
    assert.notEqual(rig.device.features & bit(VIRTIO_CONSOLE_F.EMERG_WRITE), 0n);
    rig.send(enc.encode("abc"));
    rig.notify(CONSOLE_TX);
    rig.transport.write(MMIO_REG.CONFIG + CONSOLE_CONFIG.EMERG_WR, 4, 0x44);
    rig.transport.write(MMIO_REG.CONFIG + CONSOLE_CONFIG.COLS, 2, 0x45);
    rig.transport.reset();
    rig.transport.write(MMIO_REG.CONFIG + CONSOLE_CONFIG.EMERG_WR, 1, 0x21);
    assert.equal(dec.decode(rig.output()), "abcD!");
  }),
);

Deno.test("console: a device that never went live takes no input and closes twice", () => {
  const d = new ConsoleDevice({ outputFd: 2 });
  assert.equal(d.receive(enc.encode("x")), 0);
  d.notify(CONSOLE_RX);
  d.close();
  d.close();
});
