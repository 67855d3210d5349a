/*T:620 The keyboard pump, with a real socket standing in for stdin and the
 * real event loop. Which console gets the keys follows the last console=.
 * When the console takes only part of what was read, the pump must leave
 * stdin alone (out of the epoll set) and keep the rest, and resume() must
 * deliver it, in order, before anything newer. Wired to the virtio console,
 * every byte typed must land in the guest's buffers in order, however few
 * buffers the driver lends at a time. :*/

import assert from "node:assert/strict";
import { AbortCounter, ConsoleInput, consoleInputTarget } from "../lib/console_input.ts";
import { EventLoop } from "../lib/eventloop.ts";
import { close, socketpair, writeAll } from "../lib/sys/calls.ts";
import { CONSOLE_RX } from "../lib/virtio/console/device.ts";
import { ConsoleRig } from "./virtio/console/rig.ts";

const AF_UNIX = 1;
const SOCK_STREAM = 1;

Deno.test("console input: the last console= decides", () => {
  assert.equal(consoleInputTarget(""), "serial");
  assert.equal(consoleInputTarget("console=hvc0"), "hvc0");
  assert.equal(consoleInputTarget("root=/dev/vda console=hvc0,115200 quiet"), "hvc0");
  assert.equal(consoleInputTarget("console=hvc0 console=ttyS0"), "serial");
  assert.equal(consoleInputTarget("console=ttyS0 console=hvc0"), "hvc0");
  assert.equal(consoleInputTarget("console=hvc01 xconsole=hvc0"), "serial");
  assert.equal(consoleInputTarget("earlycon=hvc0"), "serial");
});

Deno.test("console input: three Ctrl-C within a second, and nothing between, is an abort", () => {
  const c = new AbortCounter();
  assert.equal(c.feed(Uint8Array.of(3, 3), 0), false);
  assert.equal(c.feed(Uint8Array.of(3), 500), true);
  assert.equal(c.feed(Uint8Array.of(3, 3, 0x78, 3), 0), false, "a key between resets the count");
  assert.equal(c.feed(Uint8Array.of(3), 100), false);
  assert.equal(c.feed(Uint8Array.of(3), 1200), false, "more than a second since the first");
});

/** Runs `loop` while `body` waits on conditions with the `until` it is given. */
async function looping(loop: EventLoop, body: (until: (done: () => boolean) => Promise<void>) => Promise<void>) {
  const running = loop.run();
  const until = async (done: () => boolean) => {
    const start = Date.now();
    while (!done()) {
      if (Date.now() - start > 5000) throw new Error("condition not reached");
      await new Promise((r) => setTimeout(r, 2));
    }
  };
  try {
    await body(until);
  } finally {
    loop.stop();
    await running;
  }
}

type Until = (done: () => boolean) => Promise<void>;

/** A pump on a fresh socket "stdin", run in a live loop; `body` types into `typist`. */
async function withPump(
  sink: (b: Uint8Array) => number,
  onAbort: () => void,
  body: (input: ConsoleInput, typist: number, until: Until) => Promise<void>,
): Promise<void> {
  const loop = new EventLoop();
  const [stdin, typist] = socketpair(AF_UNIX, SOCK_STREAM);
  const input = new ConsoleInput(loop, stdin, sink, onAbort);
  try {
    await looping(loop, (until) => body(input, typist, until));
  } finally {
    input.close();
    loop.close();
    close(stdin);
    close(typist);
  }
}

Deno.test("console input: a console that takes nothing stops the reading; resume() delivers in order", async () => {
  let room = 3;
  const got: number[] = [];
  const sink = (b: Uint8Array) => {
    const n = Math.min(room, b.length);
    got.push(...b.subarray(0, n));
    room -= n;
    return n;
  };
  await withPump(sink, () => assert.fail("no abort"), async (input, typist, until) => {
    writeAll(typist, new TextEncoder().encode("abcdefgh"));
    await until(() => got.length === 3);
    assert.equal(input.watching, false, "stdin left the epoll set");
    assert.equal(input.held, 5);
    room = 2;
    input.resume();
    assert.equal(input.held, 3);
    assert.equal(input.watching, false);
    room = 100;
    input.resume();
    assert.equal(input.held, 0);
    assert.equal(input.watching, true, "reading again");
    writeAll(typist, new TextEncoder().encode("ij"));
    await until(() => got.length === 10);
  });
  assert.equal(new TextDecoder().decode(Uint8Array.from(got)), "abcdefghij");
});

Deno.test("console input: three Ctrl-C call onAbort and reach no console", async () => {
  let aborted = false;
  let delivered = 0;
  await withPump((b) => (delivered += b.length, b.length), () => aborted = true, async (_input, typist, until) => {
    writeAll(typist, Uint8Array.of(3, 3, 3));
    await until(() => aborted);
  });
  assert.equal(delivered, 0);
});

/*T:621 The pump and the virtio console together: 3000 bytes typed, the
 * driver lending two 16-byte buffers at a time and lending again only when
 * it has read one back, as the test guest does. Every byte must arrive, in
 * order, and stdin must have been dropped from the epoll set on the way. :*/
Deno.test("console input: back-pressure through the virtio console loses and reorders nothing", async () => {
  const rig = new ConsoleRig();
  const [stdin, typist] = socketpair(AF_UNIX, SOCK_STREAM);
  const input = new ConsoleInput(rig.loop, stdin, (b) => rig.device.receive(b), () => assert.fail("no abort"));
  rig.device.onSpace(() => input.resume());
  const typed = Uint8Array.from({ length: 3000 }, (_, i) => (i * 7 + (i >> 8)) & 0xff);
  const got: number[] = [];
  let sawPushBack = false;
  try {
    for (let i = 0; i < 2; i++) rig.rx.add([], [16]);
    await rig.kick(CONSOLE_RX);
    writeAll(typist, typed);
    await rig.runUntil(() => {
      if (!input.watching) sawPushBack = true;
      const used = rig.rx.used();
      for (const u of used) got.push(...rig.rx.writableData(u.id));
      for (const _ of used) rig.rx.add([], [16]);
      if (used.length > 0) rig.ring(CONSOLE_RX);
      return got.length >= typed.length;
    }, 20_000);
    assert.equal(sawPushBack, true, "stdin was taken out of the epoll set while the guest had no buffers");
    assert.deepEqual(Uint8Array.from(got), typed);
    assert.equal(rig.failed, false);
  } finally {
    input.close();
    await rig.close();
    close(stdin);
    close(typist);
  }
});
