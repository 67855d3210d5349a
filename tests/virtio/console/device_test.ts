/*T:610 The console device, driven by a TypeScript driver through the real
 * transport, with a real socket as its stdout; doorbells are real eventfds
 * the device watches on the rig's running loop, and interrupts are read off
 * the real irqfd and the InterruptStatus bits. Output must leave in order,
 * from guest memory, with each chain returned only once its bytes are out;
 * a full stdout must hold chains back without ever blocking the caller, and
 * a vanished one must not hang the guest. Input must fill the oldest buffer
 * first, say exactly how much it wrote, and push back when the driver has
 * lent nothing. Rules a driver breaks must end as DEVICE_NEEDS_RESET naming
 * the queue and the rule. :*/

import assert from "node:assert/strict";
import { close, ioctl, O, open, setNonBlocking } from "../../../lib/sys/calls.ts";
import { MMIO_REG } from "../../../lib/virtio/mmio/regs.ts";
import {
  BUDGET_RINGS,
  CONSOLE_CONFIG,
  CONSOLE_RX,
  CONSOLE_TX,
  ConsoleDevice,
  VIRTIO_CONSOLE_F,
} from "../../../lib/virtio/console/device.ts";
import { OUTPUT_CHUNK } from "../../../lib/virtio/console/output.ts";
import { bit, INTERRUPT_CAUSE } from "../../../lib/virtio/device.ts";
import { hookPops } from "../pop_hook.ts";
import { ConsoleRig } from "./rig.ts";

const enc = new TextEncoder();
const TIOCSWINSZ = 0x5414;
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
  withRig(async (rig) => {
    const a = rig.send(enc.encode("hello "));
    const b = rig.send(enc.encode("from the guest\n"), [3, 5, 7]);
    const c = rig.tx.add([enc.encode("indirect"), enc.encode("!")], [], { indirect: true });
    assert.equal(rig.interrupts, 0);
    await rig.kick(CONSOLE_TX);
    assert.equal(dec.decode(rig.output()), "hello from the guest\nindirect!");
    assert.deepEqual(rig.tx.used(), [{ id: a, len: 0 }, { id: b, len: 0 }, { id: c, len: 0 }]);
    assert.equal(rig.interrupts, 1, "one interrupt for the batch, on the irqfd");
    assert.equal(rig.interruptStatus, INTERRUPT_CAUSE.USED, "with its cause set first");
    rig.tx.setNoInterrupt(true);
    rig.send(enc.encode("quiet"));
    await rig.kick(CONSOLE_TX);
    assert.equal(dec.decode(rig.output()).slice(-5), "quiet");
    assert.equal(rig.interrupts, 1, "the driver asked for none");
    assert.equal(rig.failed, false);
  }),
);

Deno.test(
  "console: the output listener (--timings' first console byte) hears of output once it is written",
  withRig(async (rig) => {
    let heard = 0;
    rig.device.onOutput(() => heard++);
    await rig.kick(CONSOLE_TX);
    assert.equal(heard, 0, "no output, no call");
    rig.send(enc.encode("x"));
    await rig.kick(CONSOLE_TX);
    assert.equal(heard, 1, "called once the byte was written");
    assert.equal(dec.decode(rig.output()), "x");
    rig.device.onOutput(undefined);
    rig.send(enc.encode("y"));
    await rig.kick(CONSOLE_TX);
    assert.equal(heard, 1);
  }),
);

Deno.test(
  "console: output larger than one write is split across writes without loss",
  withRig(async (rig) => {
    const big = pattern(3 * OUTPUT_CHUNK + 123);
    rig.send(big, [1000, 5000, 100, big.length - 6100]);
    rig.send(pattern(10, 7));
    await rig.kick(CONSOLE_TX);
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
      await rig.kick(CONSOLE_TX);
      assert.deepEqual(rig.tx.used(), [], "nothing is returned before it is written");
      assert.equal(rig.interrupts, 0);
      await rig.kick(CONSOLE_TX);
      assert.deepEqual(rig.tx.used(), [], "a doorbell while stdout is full changes nothing");
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
    await rig.kick(CONSOLE_TX);
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
  withRig(async (rig) => {
    rig.closePeer();
    const a = rig.send(enc.encode("lost"));
    await rig.kick(CONSOLE_TX);
    const b = rig.send(enc.encode("also lost"));
    await rig.kick(CONSOLE_TX);
    assert.deepEqual(rig.tx.used().map((u) => u.id), [a, b]);
    assert.equal(rig.logs.filter((l) => l.includes("output failed")).length, 1, rig.logs.join("\n"));
    assert.equal(rig.failed, false);
  }),
);

/*T:615 The budget. A driver that re-posts each chain the moment the
 * device pops it keeps the ring full for ever: output on the transmitq, or
 * on the receiveq empty buffers, which go straight back. Each turn must
 * still end after BUDGET_RINGS rings' worth, and the next one must come on
 * a zero timer, behind the test's own timers: between two of them, never
 * more than one turn's worth of chains is taken. :*/
for (const queue of [CONSOLE_TX, CONSOLE_RX]) {
  Deno.test(
    `console: a driver that keeps queue ${queue} full gets a budget per turn, and the loop runs between turns`,
    withRig(async (rig) => {
      const d = queue === CONSOLE_TX ? rig.tx : rig.rx;
      const budget = BUDGET_RINGS * d.size;
      let reposts = 5 * budget;
      let popped = 0;
      const head = queue === CONSOLE_TX ? rig.send(enc.encode("x")) : d.add([], [0]);
      const restore = hookPops((vq, chain) => {
        if (chain === undefined || !vq.name.endsWith(`queue ${queue}`)) return;
        popped++;
        if (reposts-- > 0) d.publish(head);
      });
      const perTick: number[] = [];
      try {
        rig.ring(queue);
        for (let last = 0; !(reposts < 0 && d.usedIdx() === popped);) {
          if (perTick.length > 10_000) throw new Error("the flood was never served");
          await new Promise((r) => setTimeout(r, 0));
          perTick.push(popped - last);
          last = popped;
          rig.output();
        }
      } finally {
        restore();
      }
      assert.equal(popped, 5 * budget + 1);
      assert.ok(Math.max(...perTick) <= budget, `at most ${budget} chains between two timers: ${perTick}`);
      assert.ok(perTick.filter((n) => n > 0).length >= 5, "the flood was served over several turns");
      assert.equal(rig.output().length, queue === CONSOLE_TX ? popped : 0);
      assert.equal(rig.failed, false);
    }),
  );
}

/*T:612 Input. Nothing lent: nothing taken, and the space listener stays
 * quiet until the driver rings the receiveq. Then the oldest buffer fills
 * first, each is returned with exactly what went into it, and a short
 * offer is remembered so the next doorbell calls the listener again. :*/
Deno.test(
  "console: input fills lent buffers oldest first and pushes back when there are none",
  withRig(async (rig) => {
    let spaces = 0;
    rig.device.onSpace(() => spaces++);
    const input = enc.encode("0123456789abcdefghij");
    assert.equal(rig.device.receive(input), 0, "no buffers lent yet");
    assert.equal(spaces, 0);
    const h1 = rig.rx.add([], [4]);
    const h2 = rig.rx.add([], [2, 3]);
    await rig.kick(CONSOLE_RX);
    assert.equal(spaces, 1, "lent buffers: the pump hears of it");
    assert.equal(rig.interrupts, 0, "lending alone interrupts nobody");
    assert.equal(rig.device.receive(input), 9);
    assert.deepEqual(rig.rx.used(), [{ id: h1, len: 4 }, { id: h2, len: 5 }]);
    assert.equal(rig.interrupts, 1, "one interrupt per receive()");
    assert.equal(dec.decode(rig.rx.writableData(h1)), "0123");
    assert.equal(dec.decode(rig.rx.writableData(h2)), "45678");
    const h3 = rig.rx.add([], [64]);
    await rig.kick(CONSOLE_RX);
    assert.equal(spaces, 2);
    assert.equal(rig.device.receive(input.subarray(9)), 11);
    assert.deepEqual(rig.rx.used(), [{ id: h3, len: 11 }]);
    assert.equal(dec.decode(rig.rx.writableData(h3)), "9abcdefghij");
    const h4 = rig.rx.add([], [8]);
    await rig.kick(CONSOLE_RX);
    assert.equal(spaces, 2, "nobody is waiting: no call");
    assert.deepEqual(rig.rx.used(), [], "an unused buffer stays lent");
    assert.ok(h4 >= 0);
  }),
);

Deno.test(
  "console: a receive chain of zero-length buffers goes straight back and takes no input",
  withRig(async (rig) => {
    const h = rig.rx.add([], [0, 0]);
    await rig.kick(CONSOLE_RX);
    assert.deepEqual(rig.rx.used(), [{ id: h, len: 0 }]);
    assert.equal(rig.interrupts, 1);
    assert.equal(rig.device.receive(enc.encode("x")), 0);
  }),
);

Deno.test(
  "console: a driver re-posting one head gets each posting filled and used once, in turn",
  withRig(async (rig) => {
    const head = rig.rx.add([], [1]);
    for (let i = 1; i < rig.rx.size; i++) rig.rx.publish(head);
    await rig.kick(CONSOLE_RX);
    for (let i = 0; i < rig.rx.size; i++) rig.rx.publish(head);
    await rig.kick(CONSOLE_RX);
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
  withRig(async (rig) => {
    rig.rx.add([enc.encode("bad")], [4]);
    await rig.kick(CONSOLE_RX);
    assert.equal(rig.failed, true);
    assert.match(rig.logs.join("\n"), /virtio-console queue 0: .*\[rx-readable\]/);
    assert.equal(rig.device.receive(enc.encode("x")), 0, "a failed device takes no input");
  }),
);

Deno.test(
  "console: a writable buffer on the transmitq fails the device, after printing what came before",
  withRig(async (rig) => {
    rig.send(enc.encode("good "));
    rig.tx.add([enc.encode("bad")], [8]);
    await rig.kick(CONSOLE_TX);
    assert.equal(rig.failed, true);
    assert.match(rig.logs.join("\n"), /virtio-console queue 1: .*\[tx-writable\]/);
    assert.equal(dec.decode(rig.output()), "good ");
  }),
);

Deno.test(
  "console: a transmit buffer outside guest RAM fails the device with out-of-ram",
  withRig(async (rig) => {
    rig.tx.writeDesc(0, { addr: 2 * 1024 * 1024 - 2, len: 4, flags: 0, next: 0 });
    rig.tx.publish(0);
    await rig.kick(CONSOLE_TX);
    assert.equal(rig.failed, true);
    assert.match(rig.logs.join("\n"), /queue 1: .*\[out-of-ram\]/);
    assert.equal(rig.output().length, 0);
  }),
);

/*T:614 The config space: one port, no size without a terminal, and the
 * emergency write register printing one byte, queued behind other output. :*/
Deno.test(
  "console: config space and the emergency write",
  withRig(async (rig) => {
    assert.equal(rig.transport.read(MMIO_REG.CONFIG + CONSOLE_CONFIG.MAX_NR_PORTS, 4), 1);
    assert.equal(rig.device.features & bit(VIRTIO_CONSOLE_F.SIZE), 0n, "a socket has no window size");
    assert.notEqual(rig.device.features & bit(VIRTIO_CONSOLE_F.EMERG_WRITE), 0n);
    rig.send(enc.encode("abc"));
    await rig.kick(CONSOLE_TX);
    rig.transport.write(MMIO_REG.CONFIG + CONSOLE_CONFIG.EMERG_WR, 4, 0x44);
    rig.transport.write(MMIO_REG.CONFIG + CONSOLE_CONFIG.COLS, 2, 0x45);
    rig.transport.reset();
    rig.transport.write(MMIO_REG.CONFIG + CONSOLE_CONFIG.EMERG_WR, 1, 0x21);
    assert.equal(dec.decode(rig.output()), "abcD!");
  }),
);

/*T:616 The window size. With a terminal to ask (a pseudo-terminal here)
 * the device offers SIZE and fills cols and rows; a new size reaches a
 * driver that took SIZE as a config change: new bytes published between two
 * generation steps, the CONFIG cause bit, and one interrupt on the irqfd. A
 * driver that did not take SIZE is told nothing: no new bytes, no new
 * generation, no interrupt. :*/
for (const negotiated of [true, false]) {
  Deno.test(`console: a resized terminal ${negotiated ? "interrupts" : "does not interrupt"} the driver`, async () => {
    const pty = open("/dev/ptmx", O.RDWR | O.NOCTTY);
    const setSize = (rows: number, cols: number) =>
      ioctl(pty, TIOCSWINSZ, Uint16Array.of(rows, cols, 0, 0), "TIOCSWINSZ");
    setSize(24, 80);
    const features = negotiated ? bit(VIRTIO_CONSOLE_F.SIZE) : 0n;
    const rig = new ConsoleRig({ sizeFd: pty, features });
    try {
      const cfg = (at: number) => rig.transport.read(MMIO_REG.CONFIG + at, 2);
      assert.notEqual(rig.device.features & bit(VIRTIO_CONSOLE_F.SIZE), 0n);
      assert.deepEqual([cfg(CONSOLE_CONFIG.COLS), cfg(CONSOLE_CONFIG.ROWS)], [80, 24]);
      const generation = rig.transport.read(MMIO_REG.CONFIG_GENERATION, 4);
      rig.device.refreshSize();
      assert.equal(rig.interrupts, 0, "the same size is no change");
      setSize(50, 132);
      rig.device.refreshSize();
      const now = negotiated ? [132, 50] : [80, 24];
      assert.deepEqual([cfg(CONSOLE_CONFIG.COLS), cfg(CONSOLE_CONFIG.ROWS)], now);
      assert.equal(rig.transport.read(MMIO_REG.CONFIG_GENERATION, 4), generation + (negotiated ? 2 : 0));
      assert.equal(rig.interrupts, negotiated ? 1 : 0);
      assert.equal(rig.interruptStatus, negotiated ? INTERRUPT_CAUSE.CONFIG : 0);
    } finally {
      await rig.close();
      close(pty);
    }
  });
}

Deno.test("console: a device that never went live takes no input and closes twice", () => {
  const d = new ConsoleDevice({ outputFd: 2 });
  assert.equal(d.receive(enc.encode("x")), 0);
  d.close();
  d.close();
});
